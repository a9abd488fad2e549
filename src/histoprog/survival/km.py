"""Kaplan-Meier curves, log-rank tests and median follow-up (thin wrappers on lifelines).

lifelines gives the Kaplan-Meier estimate, the event table and the log-rank statistics;
this module adds what R reports and lifelines does not, computed the way R does:

* :func:`kaplan_meier` -> ``survfit(Surv(time, event) ~ 1)`` with ``summary(fit, times)``:
  survival, ``std.err`` (= S x Greenwood SE of log S), the ``conf.type = "log"`` (default)
  or ``"log-log"`` 95 % interval, numbers at risk, and the median with R's CI
  (``quantile.survfit``: first time the curve is <= 0.5, midpoint on a flat 0.5 section).
* :func:`logrank` -> ``survdiff(Surv(time, event) ~ group)`` (two or more groups): chi-squared,
  p, and per-group n / observed / expected.
* :func:`median_followup` -> reverse Kaplan-Meier ``survfit(Surv(time, 1 - event) ~ 1)``
  median with its 95 % CI.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test, multivariate_logrank_test
from scipy import stats

from histoprog.errors import InputError
from histoprog.survival._data import check_time_event

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["KMResult", "LogrankResult", "kaplan_meier", "logrank", "median_followup"]

_TOL = np.sqrt(np.finfo(float).eps)


def _findq(x: np.ndarray, y: np.ndarray, p: float, xmax: float) -> float:
    """``survival:::findq`` for one probability: x = (0, times), y = (0, 1 - S)."""
    ok = ~np.isnan(y)
    x, y = x[ok], y[ok]
    if len(y) == 0 or y.max() < p:
        return float("nan")
    _, first = np.unique(y, return_index=True)
    keep = np.sort(first)
    x, y = x[keep], y[keep]
    i1 = np.flatnonzero(y + _TOL >= p)
    i2 = np.flatnonzero(y - _TOL >= p)
    if len(i1) == 0 or len(i2) == 0:
        q = float("nan")
    else:
        q = (x[i1[0]] + x[i2[0]]) / 2
    if abs(p - y[-1]) < _TOL and len(i1):
        q = (x[i1[0]] + xmax) / 2
    return float(q)


@dataclass(frozen=True)
class KMResult:
    """A Kaplan-Meier curve with Greenwood CI; ``table`` has one row per distinct time."""

    table: pd.DataFrame
    conf_type: str
    median: float
    median_lower: float
    median_upper: float
    label: str = "all"

    def at(self, times: Sequence[float]) -> pd.DataFrame:
        """``summary(fit, times)``: survival, std_err, CI and numbers at risk at ``times``."""
        tab = self.table
        t = np.asarray(times, float)
        idx = np.searchsorted(tab["time"].to_numpy(), t, side="right") - 1
        rows = []
        for ti, i in zip(t, idx, strict=True):
            later = tab["time"].to_numpy() >= ti
            n_risk = int(tab["n_risk"].to_numpy()[later][0]) if later.any() else 0
            if i < 0:
                rows.append(
                    dict(time=ti, n_risk=n_risk, surv=1.0, std_err=0.0, lower=1.0, upper=1.0)
                )
            else:
                r = tab.iloc[i]
                rows.append(
                    dict(
                        time=ti,
                        n_risk=n_risk,
                        surv=r["surv"],
                        std_err=r["std_err"],
                        lower=r["lower"],
                        upper=r["upper"],
                    )
                )
        out = pd.DataFrame(rows)
        prev = np.r_[-np.inf, t[:-1]]
        tt, ev = self.table["time"].to_numpy(), self.table["n_event"].to_numpy()
        out["n_event"] = [int(ev[(tt > a) & (tt <= b)].sum()) for a, b in zip(prev, t, strict=True)]
        return out

    @property
    def summary(self) -> pd.DataFrame:
        """One-row table: n, events, median and its 95 % CI."""
        return pd.DataFrame(
            [
                dict(
                    group=self.label,
                    n=int(self.table["n_risk"].iloc[0]),
                    events=int(self.table["n_event"].sum()),
                    median=self.median,
                    median_lower=self.median_lower,
                    median_upper=self.median_upper,
                )
            ]
        )

    def plot(self, ax: Axes | None = None, **kwargs: object) -> Axes:
        """Step plot of the curve with its CI band; returns the Axes."""
        import matplotlib.pyplot as plt

        ax = ax or plt.gca()
        t = np.r_[0.0, self.table["time"].to_numpy()]
        s = np.r_[1.0, self.table["surv"].to_numpy()]
        (line,) = ax.step(t, s, where="post", label=self.label, **kwargs)
        lo = np.r_[1.0, self.table["lower"].to_numpy()]
        hi = np.r_[1.0, self.table["upper"].to_numpy()]
        ax.fill_between(t, lo, hi, step="post", alpha=0.15, color=line.get_color())
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("time")
        ax.set_ylabel("survival probability")
        return ax


def _km_arrays(
    time: np.ndarray, event: np.ndarray, conf_type: str, level: float, label: str
) -> KMResult:
    kmf = KaplanMeierFitter().fit(time, event)
    et = kmf.event_table
    et = et[et.index > 0] if (time > 0).all() else et
    tab = pd.DataFrame(
        {
            "time": et.index.to_numpy(float),
            "n_risk": et["at_risk"].to_numpy(int),
            "n_event": et["observed"].to_numpy(int),
            "n_censor": et["censored"].to_numpy(int),
        }
    )
    tab["surv"] = kmf.survival_function_at_times(tab["time"]).to_numpy()
    n, d = tab["n_risk"].to_numpy(float), tab["n_event"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        var_logs = np.cumsum(np.where(n > d, d / (n * (n - d)), np.inf))
        se_log = np.sqrt(var_logs)
        s = tab["surv"].to_numpy()
        z = stats.norm.ppf(0.5 + level / 2)
        if conf_type == "log":
            lo = np.exp(np.log(s) - z * se_log)
            hi = np.minimum(1.0, np.exp(np.log(s) + z * se_log))
        else:  # log-log as survfit's conf.type = "log-log"
            ll = np.log(-np.log(s))
            w = z * se_log / np.log(s)
            lo = np.exp(-np.exp(ll - w))
            hi = np.exp(-np.exp(ll + w))
        bad = (s == 0) | ~np.isfinite(se_log)
        if conf_type != "log":
            bad |= s == 1
        lo = np.where(bad, np.nan, lo)
        hi = np.where(bad, np.nan, hi)
        if conf_type != "log":
            lo = np.where(s == 1, 1.0, lo)
            hi = np.where(s == 1, 1.0, hi)
    tab["std_err"] = s * se_log
    tab["lower"], tab["upper"] = lo, hi
    x = np.r_[0.0, tab["time"].to_numpy()]
    xmax = float(x[-1])
    med = _findq(x, np.r_[0.0, 1 - s], 0.5, xmax)
    # as doquant(): the lower CI of the median comes from the lower curve
    med_lo = _findq(x, np.r_[0.0, 1 - lo], 0.5, xmax)
    med_hi = _findq(x, np.r_[0.0, 1 - hi], 0.5, xmax)
    return KMResult(tab, conf_type, med, med_lo, med_hi, label)


def kaplan_meier(
    data: pd.DataFrame,
    time: str,
    event: str,
    *,
    conf_type: Literal["log", "log-log"] = "log",
    level: float = 0.95,
    id_col: str | None = None,
    label: str = "all",
) -> KMResult:
    """Kaplan-Meier estimate as ``survfit(Surv(time, event) ~ 1, conf.type = conf_type)``.

    Raises:
        InputError: bad time or event column, or an unknown ``conf_type``.
    """
    if conf_type not in ("log", "log-log"):
        raise InputError("conf_type", f"unknown value {conf_type!r}", "use 'log' or 'log-log'")
    t, e = check_time_event(data, time, event, id_col)
    return _km_arrays(t, e, conf_type, level, label)


def median_followup(
    data: pd.DataFrame, time: str, event: str, *, id_col: str | None = None
) -> KMResult:
    """Median follow-up by reverse Kaplan-Meier (``survfit(Surv(time, 1 - event) ~ 1)``).

    The returned curve is the censoring distribution; its ``median`` and CI are the
    median follow-up and its 95 % CI.
    """
    t, e = check_time_event(data, time, event, id_col)
    if (e == 1).all():
        raise InputError(
            f"column '{event}'",
            "no patient is censored, so the reverse Kaplan-Meier is undefined",
            "report the observation times instead",
        )
    return _km_arrays(t, 1 - e, "log", 0.95, "follow-up")


@dataclass(frozen=True)
class LogrankResult:
    """A log-rank test (``survdiff``); ``table`` has per-group n, observed, expected."""

    chisq: float
    df: int
    p: float
    table: pd.DataFrame = field(repr=False)

    @property
    def summary(self) -> pd.DataFrame:
        """Per-group table with the test's chisq, df and p repeated on every row."""
        return self.table.assign(chisq=self.chisq, df=self.df, p=self.p)


def logrank(
    data: pd.DataFrame, time: str, event: str, group: str, *, id_col: str | None = None
) -> LogrankResult:
    """Log-rank test of two or more groups, as ``survdiff(Surv(time, event) ~ group)``.

    Raises:
        InputError: bad time/event columns, missing group values or fewer than 2 groups.
    """
    t, e = check_time_event(data, time, event, id_col)
    if group not in data.columns:
        raise InputError(f"column '{group}'", "is not in the table", "check the group column")
    g = data[group]
    if g.isna().any():
        raise InputError(
            f"column '{group}'", f"{int(g.isna().sum())} missing group labels", "drop them"
        )
    levels = np.sort(g.unique())
    if len(levels) < 2:
        raise InputError(
            f"column '{group}'", "has a single group", "a log-rank test needs >= 2 groups"
        )
    g = g.to_numpy()
    if len(levels) == 2:
        a, b = g == levels[0], g == levels[1]
        res = logrank_test(t[a], t[b], e[a], e[b])
    else:
        res = multivariate_logrank_test(t, g, e)
    # observed / expected per group (hypergeometric expectation at each event time)
    ut = np.unique(t[e == 1])
    n_at = (t[None, :] >= ut[:, None]).sum(axis=1)
    d_at = ((t[None, :] == ut[:, None]) & (e[None, :] == 1)).sum(axis=1)
    rows = []
    for lev in levels:
        m = g == lev
        n_g = (t[m][None, :] >= ut[:, None]).sum(axis=1)
        rows.append(
            dict(
                group=lev,
                n=int(m.sum()),
                observed=int(e[m].sum()),
                expected=float(np.sum(d_at * n_g / n_at)),
            )
        )
    df = len(levels) - 1
    return LogrankResult(float(res.test_statistic), df, float(res.p_value), pd.DataFrame(rows))
