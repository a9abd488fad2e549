"""Settings of the CRLM analysis (config ``crlm.*``), checked when built from config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from histoprog.analysis.crs import CRSColumns
from histoprog.analysis.cutoff import CUTOFF_TESTS
from histoprog.analysis.outcome import HORIZON_POLICIES, Outcome
from histoprog.defaults import check_renamed, default
from histoprog.errors import InputError

__all__ = ["CRLMSettings"]


@dataclass(frozen=True)
class CRLMSettings:
    """Settings of the CRLM analysis.

    Config ``crlm.*`` (defaults: the config schema); ``time``/``event`` come from
    ``clinical.crlm``. Each key is documented in config/README.md.
    """

    time: str = default("clinical.crlm.time")
    event: str = default("clinical.crlm.event")
    horizon_months: float | None = default("crlm.horizon_months")
    horizon_policy: str = default("crlm.horizon_policy")
    features: tuple[str, ...] | None = default("crlm.features")
    minprop: float = default("crlm.minprop")
    candidate_p: float = default("crlm.candidate_p")
    collinearity_r: float = default("crlm.collinearity_r")
    cutoff_range: tuple[float, float] = default("crlm.cutoff_range")
    cutoff_step: float = default("crlm.cutoff_step")
    cutoff_test: str = default("crlm.cutoff_test")
    survival_at: float = default("crlm.survival_at")
    roc_times: tuple[float, ...] = default("crlm.roc_times")
    roc_curve_step: float = default("crlm.roc_curve_step")
    calibration_times: tuple[float, ...] = default("crlm.calibration_times")
    calibration_bootstrap_reps: int = default("crlm.calibration_bootstrap_reps")
    calibration_group_size: int = default("crlm.calibration_group_size")
    seed: int = default("crlm.seed")
    min_events: int = default("crlm.min_events")
    clinical_factors: tuple[str, ...] = default("crlm.clinical_factors")
    crs: CRSColumns = field(default_factory=CRSColumns)
    preop_chemo: str | None = default("crlm.preop_chemo")
    adjuvant_chemo: str | None = default("crlm.adjuvant_chemo")

    @property
    def outcome(self) -> Outcome:
        """The time and event columns."""
        return Outcome(self.time, self.event)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> CRLMSettings:
        """Build from config values (unknown keys and bad values name the key)."""
        check_renamed({"crlm": values})
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
        if self.calibration_bootstrap_reps < 0:
            bad("calibration_bootstrap_reps", "must be >= 0 (0: no bootstrap)", "e.g. 1000")
        if self.calibration_group_size < 2:
            bad("calibration_group_size", "must be >= 2 patients", "e.g. 50")
        if self.horizon_months is not None and self.horizon_months <= 0:
            bad("horizon_months", "must be positive (or null for no horizon)", "e.g. 120")
