"""Maximally selected log-rank statistic cutpoints, as R's ``maxstat`` / ``survminer``.

Mirrors ``maxstat::maxstat.test(Surv(time, event) ~ x, smethod = "LogRank",
pmethod = "none", minprop = 0.1, maxprop = 0.9)`` exactly as ``survminer::surv_cutpoint``
calls it (maxstat 0.7-25, exactRankTests' ``cscores.Surv``):

* log-rank scores ``a_i = event_i - sum_{j: t_j <= t_i} event_j / (N - r_j + 1)`` with
  ``r_j`` the *maximum* rank of ``t_j`` among tied times (``irank``);
* candidate splits are the distinct values of ``x``: a split puts the ``m`` patients with
  the smallest ``x`` in the low group, ``m`` = the number of patients with ``x`` below a
  distinct value, restricted to ``max(1, floor(N minprop)) <= m <= floor(N maxprop)``;
* the standardised statistic is ``|S_m - m/N sum a| / sqrt(V_m)`` with the exact
  permutation variance ``V_m = m (N - m) / (N^2 (N - 1)) (N sum a^2 - (sum a)^2)``;
* the cutpoint is the largest ``x`` of the low group at the first maximum; the low group is
  ``x <= cutpoint``, high is ``x > cutpoint``.

``p_lau94`` is ``pmethod = "Lau94"`` (Lausen, Sauerbrei & Schumacher 1994's improved Bonferroni
bound over the same candidate set). Missing values of ``x`` are dropped (R's
``na.omit``), and the number used is reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from histoprog.errors import InputError
from histoprog.survival._data import check_time_event

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["MaxstatResult", "logrank_scores", "maxstat_cutpoint", "maxstat_cutpoints", "p_lau94"]


def logrank_scores(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Log-rank scores of censored times, as ``exactRankTests::cscores.Surv``."""
    time = np.asarray(time, float)
    event = np.asarray(event, float)
    n = len(time)
    rt = stats.rankdata(time, method="max").astype(int)
    order = np.argsort(time, kind="stable")
    fact = event / (n - rt + 1)
    cum = np.cumsum(fact[order])
    return event - cum[rt - 1]


def p_lau94(statistic: float, n: int, m: np.ndarray) -> float:
    """Lausen-Schumacher (1994) p-value bound, as ``maxstat:::pLausen94``."""
    b = float(statistic)
    m = np.asarray(m, float)
    if len(m) <= 1:
        d = 0.0
    else:
        m1, m2 = m[:-1], m[1:]
        t = np.sqrt(1 - m1 * (n - m2) / ((n - m1) * m2))
        d = float(np.sum(1 / math.pi * math.exp(-(b**2) / 2) * (t - (b**2 / 4 - 1) * t**3 / 6)))
    return 1 - (stats.norm.cdf(b) - stats.norm.cdf(-b)) + d


@dataclass(frozen=True)
class MaxstatResult:
    """A maximally selected log-rank cutpoint; low group is ``x <= cutpoint``."""

    feature: str
    cutpoint: float
    statistic: float
    p_lau94: float
    n: int
    n_low: int
    n_high: int
    cuts: np.ndarray = field(repr=False)
    stats: np.ndarray = field(repr=False)

    @property
    def summary(self) -> pd.DataFrame:
        """One-row table: feature, cutpoint, statistic, p_lau94, n, n_low, n_high."""
        return pd.DataFrame(
            [
                {
                    "feature": self.feature,
                    "cutpoint": self.cutpoint,
                    "statistic": self.statistic,
                    "p_lau94": self.p_lau94,
                    "n": self.n,
                    "n_low": self.n_low,
                    "n_high": self.n_high,
                    "n_candidates": len(self.cuts),
                }
            ]
        )

    def plot(self, ax: Axes | None = None) -> Axes:
        """Standardised statistic against candidate cutpoints; returns the Axes."""
        import matplotlib.pyplot as plt

        ax = ax or plt.gca()
        ax.step(self.cuts, self.stats, where="post")
        ax.axvline(self.cutpoint, ls="--", color="grey")
        ax.set_xlabel(self.feature)
        ax.set_ylabel("standardised log-rank statistic")
        return ax


def _maxstat_arrays(
    scores: np.ndarray, x: np.ndarray, minprop: float, maxprop: float, feature: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(x)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    y = scores[order]
    m = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])  # = which(!ties) - 1
    if minprop == 0 and maxprop == 1:
        m = m[1:-1] if len(m) > 1 else m[:0]
    else:
        if np.all(m < math.floor(n * minprop)) or np.all(m > math.floor(n * maxprop)):
            m = m[:0]
        m = m[(m >= max(1, math.floor(n * minprop))) & (m <= math.floor(n * maxprop))]
    if len(m) == 0:
        raise InputError(
            f"feature '{feature}'",
            f"has no cutpoint with at least {minprop:.0%} of the {n} patients on each side "
            f"({len(np.unique(x))} distinct values)",
            "drop this feature from the cutpoint search or lower minprop",
        )
    ss = y.sum()
    e = m / n * ss
    v = m * (n - m) / (n**2 * (n - 1)) * (n * np.sum(y**2) - ss**2)
    test = np.abs((np.cumsum(y)[m - 1] - e) / np.sqrt(v))
    return m, xs[m - 1], test


def maxstat_cutpoint(
    time: np.ndarray,
    event: np.ndarray,
    x: np.ndarray,
    *,
    feature: str = "x",
    minprop: float = 0.1,
    maxprop: float = 0.9,
) -> MaxstatResult:
    """Maximally selected log-rank cutpoint of ``x`` (``maxstat.test``, LogRank).

    Rows with missing ``x`` are dropped first (as R's model frame does).

    Raises:
        InputError: no admissible cutpoint, or a constant feature.
    """
    time = np.asarray(time, float)
    event = np.asarray(event, float)
    x = np.asarray(x, float)
    keep = np.isfinite(x)
    if keep.sum() < 2:
        raise InputError(f"feature '{feature}'", "has fewer than 2 non-missing values", "drop it")
    time, event, x = time[keep], event[keep], x[keep]
    if np.all(x == x[0]):
        raise InputError(f"feature '{feature}'", "is constant", "drop it from the cutpoint search")
    scores = logrank_scores(time, event)
    m, cuts, test = _maxstat_arrays(scores, x, minprop, maxprop, feature)
    best = int(np.argmax(test))
    cut = float(cuts[best])
    stat = float(test[best])
    n_low = int(np.sum(x <= cut))
    return MaxstatResult(
        feature=feature,
        cutpoint=cut,
        statistic=stat,
        p_lau94=float(p_lau94(stat, len(x), m)),
        n=len(x),
        n_low=n_low,
        n_high=len(x) - n_low,
        cuts=cuts,
        stats=test,
    )


def maxstat_cutpoints(
    data: pd.DataFrame,
    time: str,
    event: str,
    features: Sequence[str],
    *,
    id_col: str | None = None,
    minprop: float = 0.1,
    maxprop: float = 0.9,
) -> pd.DataFrame:
    """Cutpoints for several features (``survminer::surv_cutpoint``); one row per feature.

    Raises:
        InputError: bad time/event columns, a missing or non-numeric feature, or a feature
            with no admissible cutpoint.
    """
    t, e = check_time_event(data, time, event, id_col)
    rows = []
    for f in features:
        if f not in data.columns:
            raise InputError(f"column '{f}'", "is not in the table", "check the feature names")
        if not pd.api.types.is_numeric_dtype(data[f]):
            raise InputError(f"column '{f}'", "is not numeric", "recode it as numbers")
        res = maxstat_cutpoint(
            t, e, data[f].to_numpy(float), feature=f, minprop=minprop, maxprop=maxprop
        )
        rows.append(res.summary)
    return pd.concat(rows, ignore_index=True)
