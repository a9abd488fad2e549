"""Settings of the CRLM analysis (config ``crlm.*``), checked when built from config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from histoprog.analysis.crs import CRSColumns
from histoprog.analysis.cutoff import CUTOFF_TESTS
from histoprog.analysis.outcome import HORIZON_POLICIES, Outcome
from histoprog.errors import InputError

__all__ = ["CRLMSettings"]


@dataclass(frozen=True)
class CRLMSettings:
    """Settings of the CRLM analysis.

    Config ``crlm.*``; ``time``/``event`` come from ``clinical.crlm``. Each key is
    documented in config/README.md.
    """

    time: str = "os_months"
    event: str = "os_event"
    horizon_months: float = 120.0
    horizon_policy: str = "censor"
    features: tuple[str, ...] | None = None
    minprop: float = 0.1
    candidate_p: float = 0.05
    collinearity_r: float = 0.7
    cutoff_range: tuple[float, float] = (0.1, 0.9)
    cutoff_step: float = 1e-4
    cutoff_test: str = "wald"
    survival_at: float = 60.0
    roc_times: tuple[float, ...] = (60.0, 96.0)
    roc_curve_step: float = 6.0
    calibration_times: tuple[float, ...] = (60.0, 96.0)
    calibration_B: int = 1000  # noqa: N815
    calibration_m: int = 50
    seed: int = 0
    min_events: int = 10
    clinical_factors: tuple[str, ...] = ("crs_high", "age", "sex", "preop_chemo")
    crs: CRSColumns = field(default_factory=CRSColumns)
    preop_chemo: str = "preop_chemo"
    adjuvant_chemo: str = "adjuvant_chemo"

    @property
    def outcome(self) -> Outcome:
        """The time and event columns."""
        return Outcome(self.time, self.event)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> CRLMSettings:
        """Build from config values (unknown keys and bad values name the key)."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InputError(
                "config section crlm", f"unknown key(s) {unknown}", "see config/README.md"
            )
        kw: dict[str, Any] = {}
        for key, value in values.items():
            if key == "crs":
                kw[key] = CRSColumns.from_mapping(value)
            elif key in ("cutoff_range", "roc_times", "calibration_times", "clinical_factors"):
                kw[key] = tuple(value)
            elif key == "features":
                kw[key] = None if value is None else tuple(value)
            else:
                kw[key] = value
        settings = cls(**kw)
        settings.check()
        return settings

    def check(self) -> None:
        """Raise an InputError naming the first bad value."""

        def bad(key: str, problem: str, fix: str) -> None:
            raise InputError(f"config key crlm.{key}", problem, fix)

        if self.horizon_policy not in HORIZON_POLICIES:
            bad("horizon_policy", f"unknown value {self.horizon_policy!r}", "use censor or drop")
        if self.cutoff_test not in CUTOFF_TESTS:
            bad("cutoff_test", f"unknown value {self.cutoff_test!r}", "use wald or logrank")
        if not 0 < self.minprop < 0.5:
            bad("minprop", f"{self.minprop} is not in (0, 0.5)", "use e.g. 0.1")
        lo, hi = (self.cutoff_range + (None, None))[:2] if len(self.cutoff_range) == 2 else (1, 0)
        if lo is None or not 0 <= lo < hi <= 1:
            bad(
                "cutoff_range",
                f"{list(self.cutoff_range)} is not [lo, hi] in [0, 1]",
                "e.g. [0.1, 0.9]",
            )
        if self.cutoff_step <= 0:
            bad("cutoff_step", "must be > 0", "use e.g. 0.0001")
        if not 0 < self.collinearity_r <= 1:
            bad("collinearity_r", f"{self.collinearity_r} is not in (0, 1]", "use e.g. 0.7")
        if not 0 < self.candidate_p <= 1:
            bad("candidate_p", f"{self.candidate_p} is not in (0, 1]", "use e.g. 0.05")
        for key in ("roc_times", "calibration_times"):
            if not getattr(self, key) or min(getattr(self, key)) <= 0:
                bad(key, "must be a non-empty list of positive months", "e.g. [60, 96]")
        if self.calibration_B < 0 or self.calibration_m < 2:
            bad("calibration_B/m", "need B >= 0 and m >= 2", "e.g. B: 1000, m: 50")
        if self.horizon_months is not None and self.horizon_months <= 0:
            bad("horizon_months", "must be positive (or null for no horizon)", "e.g. 120")
