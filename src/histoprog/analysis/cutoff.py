"""The risk-score cutoff (METHODS 5.7): the grid scan of CRLM-SPA's ``opti_cut``.

The published scan (``func/optimal_cutoff.R``) tests, with ``lo``/``hi`` the type-7
quantiles of the score at ``cutoff_range`` and ``steps = 1 / cutoff_step``:

* the candidates ``c_j = lo + j / steps`` for ``j = 1, 2, ..., count`` (R's ``1:count``:
  the lower quantile itself is never a candidate, the last one is included);
* ``count = floor((signif(hi, 6) - signif(lo, 6)) / (1 / steps))``: the quantiles are
  rounded to 6 significant digits for the count only, not for the candidates;
* for each candidate the two-sided Wald p of ``coxph(Surv ~ (score >= c_j))``;
* the cutoff is the first candidate with the smallest p.

Every candidate between two neighbouring score values gives the same split and so the same
p: only the distinct splits are fitted, and each is reported with its first and last
candidate. A candidate above every score (all patients low) cannot be fitted and is left
out (R would return NA for the whole scan).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from histoprog.analysis.cox_tables import cox_or_none
from histoprog.analysis.outcome import Outcome
from histoprog.errors import InputError
from histoprog.survival import logrank
from histoprog.survival.cox import SINGULAR

__all__ = ["CUTOFF_TESTS", "CutoffGrid", "CutoffResult", "cutoff_grid", "optimal_cutoff"]

CUTOFF_TESTS: tuple[str, ...] = ("wald", "logrank")
"""Tests of a split: the published Cox Wald test, or the log-rank test."""


def r_signif(x: float, digits: int) -> float:
    """R's ``signif(x, digits)``: scale by a power of ten, round half to even, scale back."""
    if x == 0 or not math.isfinite(x):
        return x
    e10 = digits - 1 - math.floor(math.log10(abs(x)))
    if e10 > 0:
        scale = 10.0**e10
        return math.copysign(round(abs(x) * scale) / scale, x)
    scale = 10.0**-e10
    return math.copysign(round(abs(x) / scale) * scale, x)


def r_quantile(x: np.ndarray, prob: float) -> float:
    """R's default (type 7) ``quantile(x, prob)``, with R's interpolation formula."""
    s = np.sort(np.asarray(x, float))
    index = 1 + (len(s) - 1) * prob
    lo, hi = math.floor(index), math.ceil(index)
    q = float(s[lo - 1])
    if index > lo and s[hi - 1] != q:
        h = index - lo
        q = (1 - h) * q + h * float(s[hi - 1])
    return q


@dataclass(frozen=True)
class CutoffGrid:
    """The candidates ``lo + j / steps``, ``j = 1..count``, of the published scan."""

    lo: float
    hi: float
    steps: float
    count: int

    def at(self, j: np.ndarray | int) -> np.ndarray:
        """Candidate(s) ``c_j`` (R's arithmetic: ``lo + j / steps``)."""
        return self.lo + np.asarray(j, np.float64) / self.steps

    def runs(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The runs of candidates that split the sorted distinct ``values`` alike.

        Candidate j puts ``#{values < c_j}`` values low; that number only changes at the
        first candidate above a value, so the runs come from the values without building
        the grid (a score with a huge coefficient spans ~1e10 steps).

        Returns:
            (first j, last j) of each run, in order.
        """
        inside = values[(values >= self.at(1)) & (values < self.at(self.count))]
        j = np.floor((inside - self.lo) * self.steps).astype(np.int64) + 1
        while (low := self.at(j) <= inside).any():  # c_j must exceed the value ...
            j = np.where(low, j + 1, j)
        while (high := (j > 1) & (self.at(j - 1) > inside)).any():  # ... c_(j-1) must not
            j = np.where(high, j - 1, j)
        first = np.unique(np.r_[1, j])
        return first, np.r_[first[1:] - 1, self.count]


def cutoff_grid(score: np.ndarray, cutoff_range: Sequence[float], step: float) -> CutoffGrid:
    """The published grid of a score (module docstring)."""
    lo, hi = (r_quantile(score, p) for p in cutoff_range)
    steps = 1 / step
    count = math.floor((r_signif(hi, 6) - r_signif(lo, 6)) / (1 / steps))
    return CutoffGrid(lo, hi, steps, count)


@dataclass(frozen=True)
class CutoffResult:
    """The score cutoff, its p and the scanned splits."""

    cutoff: float
    p: float
    test: str
    scan: pd.DataFrame = field(repr=False)


def _split_p(data: pd.DataFrame, outcome: Outcome, high: np.ndarray, test: str) -> float:
    """The p of a split (Cox Wald or log-rank); NaN for a singular Cox fit."""
    d = pd.DataFrame(
        {
            outcome.time: data[outcome.time].to_numpy(),
            outcome.event: data[outcome.event].to_numpy(),
            "g": high,
            "patient_id": data["patient_id"].to_numpy(),
        }
    )
    if test == "wald":
        fit = cox_or_none(d, outcome, ["g"], with_concordance=False)
        return math.nan if fit is None else float(fit.p_wald[0])
    return logrank(d, outcome.time, outcome.event, "g").p


def optimal_cutoff(
    data: pd.DataFrame,
    score: str,
    outcome: Outcome,
    *,
    cutoff_range: Sequence[float],
    step: float,
    test: str,
) -> CutoffResult:
    """The first candidate cutoff c with the smallest p of a test of ``score >= c``.

    Returns:
        A :class:`CutoffResult`; ``scan`` has one row per distinct split: cutoff (its
        first candidate), last_c (its last), n_high, n_low, p.

    Raises:
        InputError: no candidate splits the patients (the score takes a single value in
            the scanned range, or the range is narrower than one step); every split's Cox
            fit is singular.
    """
    x = data[score].to_numpy(float)
    grid = cutoff_grid(x, cutoff_range, step)
    u = np.unique(x)
    rows = []
    if grid.count >= 1:
        first, last = grid.runs(u)
        for f0, f1 in zip(first, last, strict=True):
            kk = int(np.searchsorted(u, grid.at(f0), side="left"))
            if kk == 0 or kk >= len(u):
                continue
            high = (x >= u[kk]).astype(float)
            rows.append(
                {
                    "cutoff": float(grid.at(f0)),
                    "last_c": float(grid.at(f1)),
                    "n_high": int(high.sum()),
                    "n_low": int(len(x) - high.sum()),
                    "p": _split_p(data, outcome, high, test),
                }
            )
    scan = pd.DataFrame(rows, columns=["cutoff", "last_c", "n_high", "n_low", "p"])
    if scan.empty:
        raise InputError(
            "risk score",
            f"takes a single value between its {cutoff_range[0]:.0%} and "
            f"{cutoff_range[1]:.0%} quantiles (or they lie less than one step of {step:g} "
            "apart), so no cutoff splits the discovery cohort",
            "widen config key crlm.cutoff_range",
        )
    if scan["p"].isna().all():
        raise InputError("risk score", f"no split gives a usable Cox fit: {SINGULAR}", "")
    best = int(np.nanargmin(scan["p"].to_numpy()))  # first minimum, as R's which.min
    return CutoffResult(float(scan["cutoff"][best]), float(scan["p"][best]), test, scan)
