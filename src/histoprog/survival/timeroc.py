"""Time-dependent ROC AUC with IPCW, its iid standard error and comparison test (timeROC).

Mirrors ``timeROC::timeROC(T, delta, marker, cause = 1, weighting = "marginal", times,
iid = TRUE)`` (timeROC 0.4, no competing risks) and ``timeROC::compare(x, y)``:

* subjects are put in the order of ``order(T)`` (stable, so tied times keep input order);
* censoring weights come from ``pec::ipcw(method = "marginal")``, i.e. prodlim's reverse
  Kaplan-Meier, whose risk set at a time excludes the events at that time (events precede
  censoring): ``G(t)`` includes the jump at t, cases use ``G(T_i-)``;
* cases at t: ``T_i < t`` with an event, weight ``1 / (n G(T_i-))``; controls: ``T_j > t``,
  weight ``1 / (n G(t))``; a subject with ``T == t`` is neither; AUC = weighted share of
  case-control pairs with the case's marker higher, ties in the marker counting 1/2
  (timeROC's trapezoidal rule over distinct marker values);
* the iid representation is ``compute_iid_decomposition_survival`` with the censoring
  martingale term of ``Compute.iid.KM`` (whose risk sets go by sorted position, ignoring
  ties, as in timeROC), written in closed form with cumulative sums, so it costs
  O(n log n) per time instead of timeROC's O(n^2); ``se = sd(iid) / sqrt(n)``
  (``inference$vect_sd_1``);
* :func:`compare_auc` is ``compare(x, y)``: ``sd(iid_x - iid_y) / sqrt(n)`` and a two-sided
  normal test, p not adjusted for several times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from histoprog.errors import InputError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["TimeROCResult", "compare_auc", "plot_auc_curves", "time_roc"]


@dataclass(frozen=True)
class TimeROCResult:
    """Cumulative/dynamic AUC(t) of one marker; ``iid`` is n x len(times) (T order)."""

    marker: str
    times: np.ndarray
    auc: np.ndarray
    se: np.ndarray
    n_cases: np.ndarray
    n_controls: np.ndarray
    n_censored: np.ndarray
    cum_incidence: np.ndarray
    surv_prob: np.ndarray
    n: int
    iid: np.ndarray | None = field(default=None, repr=False)
    time_sorted: np.ndarray | None = field(default=None, repr=False)
    event_sorted: np.ndarray | None = field(default=None, repr=False)

    @property
    def summary(self) -> pd.DataFrame:
        """One row per time: marker, time, auc, se, 95 % CI, cases, controls, censored."""
        z = stats.norm.ppf(0.975)
        return pd.DataFrame(
            {
                "marker": self.marker,
                "time": self.times,
                "auc": self.auc,
                "se": self.se,
                "lower": self.auc - z * self.se,
                "upper": self.auc + z * self.se,
                "cases": self.n_cases,
                "controls": self.n_controls,
                "censored": self.n_censored,
                "cum_incidence": self.cum_incidence,
                "surv_prob": self.surv_prob,
            }
        )

    def plot(self, ax: Axes | None = None, ci: bool = True, **kwargs: object) -> Axes:
        """AUC(t) against t with a pointwise 95 % band; returns the Axes."""
        return plot_auc_curves([self], ax=ax, ci=ci, **kwargs)


def _reverse_km(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Censoring survival G at its jump times, prodlim ``reverse = TRUE`` convention."""
    ut, inv = np.unique(time, return_inverse=True)
    n_ge = len(time) - np.searchsorted(np.sort(time), ut, side="left")
    n_ev = np.bincount(inv, weights=event, minlength=len(ut))
    n_cens = np.bincount(inv, weights=1 - event, minlength=len(ut))
    at_risk = n_ge - n_ev
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(n_cens > 0, 1 - n_cens / at_risk, 1.0)
    return ut, np.cumprod(factor)


def _step(ut: np.ndarray, g: np.ndarray, t: np.ndarray, left: bool) -> np.ndarray:
    """G(t) (``left=False``) or G(t-) (``left=True``) of a right-continuous step function."""
    idx = np.searchsorted(ut, t, side="left" if left else "right") - 1
    return np.where(idx >= 0, g[np.maximum(idx, 0)], 1.0)


class _CensMartingale:
    """Row-weighted sums of timeROC's ``Compute.iid.KM`` matrix in O(n).

    ``M[j, l] = c_l 1(f(l) <= j) / s_f(l) - K[min(j, l)]`` with f(l) the first sorted
    position of T_l's tie block, ``s_j = (n - j + 1) / n`` and K the cumulative sum of
    ``c_u / ((n - u + 1) s_u)`` (1-based positions); ``apply(w)[l] = sum_j w_j M[j, l]``.
    """

    def __init__(self, t_sorted: np.ndarray, event_sorted: np.ndarray) -> None:
        n = len(t_sorted)
        self.n = n
        pos = np.arange(1, n + 1)
        self.c = (event_sorted == 0).astype(float)
        s = (n - pos + 1) / n
        self.k = np.cumsum(self.c / (n - pos + 1) / s)
        self.f = np.searchsorted(t_sorted, t_sorted, side="left")  # 0-based first position
        self.s_f = s[self.f]

    def apply(self, w: np.ndarray) -> np.ndarray:
        w_ge = np.cumsum(w[::-1])[::-1]  # sum_{j >= idx}
        w_gt = np.r_[w_ge[1:], 0.0]
        cwk = np.cumsum(w * self.k)
        return self.c / self.s_f * w_ge[self.f] - (cwk + self.k * w_gt)


def time_roc(
    time: np.ndarray | pd.Series,
    event: np.ndarray | pd.Series,
    marker: np.ndarray | pd.Series,
    times: Sequence[float],
    *,
    iid: bool = True,
    name: str = "marker",
) -> TimeROCResult:
    """Cumulative/dynamic AUC(t) with marginal IPCW, as ``timeROC(..., iid = TRUE)``.

    Higher marker values must mean higher risk. Rows with a missing time, event or marker
    are dropped, as timeROC does.

    Raises:
        InputError: negative times, events other than 0/1, or too few complete rows.
    """
    t = np.asarray(time, float)
    e = np.asarray(event, float)
    m = np.asarray(marker, float)
    if not (len(t) == len(e) == len(m)):
        raise InputError(name, "time, event and marker have different lengths", "align them")
    ok = np.isfinite(t) & np.isfinite(e) & np.isfinite(m)
    t, e, m = t[ok], e[ok], m[ok]
    if len(t) < 2:
        raise InputError(name, "fewer than 2 complete rows", "check the marker column")
    if (t < 0).any():
        raise InputError("time", "negative survival times", "times must be >= 0")
    if not np.isin(e, (0.0, 1.0)).all():
        raise InputError("event", "the event indicator must be 0 or 1", "recode it")
    times_arr = np.sort(np.asarray(times, float))
    order = np.argsort(t, kind="stable")
    t, e, m = t[order], e[order], m[order]
    n = len(t)
    ut, g = _reverse_km(t, e)
    w_case_all = 1.0 / (_step(ut, g, t, left=True) * n)
    mart = _CensMartingale(t, e) if iid else None
    k = len(times_arr)
    out = {key: np.full(k, np.nan) for key in ("auc", "se", "cases", "controls", "cens", "F", "S")}
    iid_mat = np.full((n, k), np.nan) if iid else None
    for q, tq in enumerate(times_arr):
        cases = (t < tq) & (e == 1)
        ctrls = t > tq
        g_t = float(_step(ut, g, np.array([tq]), left=False)[0])
        w_ctrl = 1.0 / (g_t * n)
        wc = np.where(cases, w_case_all, 0.0)
        f01 = wc.sum()
        st = ctrls.sum() * w_ctrl
        out["cases"][q], out["controls"][q] = cases.sum(), ctrls.sum()
        out["cens"][q] = n - cases.sum() - ctrls.sum()
        out["F"][q], out["S"][q] = f01, st
        if f01 == 0 or st == 0:
            continue
        m_ctrl = np.sort(m[ctrls])
        below = np.searchsorted(m_ctrl, m, side="left")
        ties = np.searchsorted(m_ctrl, m, side="right") - below
        pair = below + 0.5 * ties  # for every subject as a potential case
        auc = float(np.sum(wc * pair) / (f01 * ctrls.sum()))
        out["auc"][q] = auc
        if not iid:
            continue
        # h_ij = (1(M_i > M_j) + 1/2 1(M_i = M_j)) w_i w_ctrl n^2 for cases i, controls j
        col = np.where(cases, wc * w_ctrl * n * n * pair, 0.0)  # sum over controls j
        ci = np.flatnonzero(cases)
        oc = np.argsort(m[ci], kind="stable")
        mc, wcs = m[ci][oc], wc[ci][oc]
        cw = np.r_[0.0, np.cumsum(wcs)]
        lo = np.searchsorted(mc, m, side="left")
        hi = np.searchsorted(mc, m, side="right")
        above = cw[-1] - cw[hi]
        tie_w = cw[hi] - cw[lo]
        row = np.where(ctrls, (above + 0.5 * tie_w) * w_ctrl * n * n, 0.0)
        hstar = col.sum() / (n * n)
        dit = n * wc
        t_sup = ctrls / (ctrls.sum() / n)
        a_col = mart.apply(col)
        a_dit = mart.apply(dit)
        sum_k = (col.sum() + a_col) / n - hstar / f01 * (dit.sum() + a_dit)
        fs = f01 * st
        term_k = sum_k / fs
        term_j = (row - n * hstar) / fs
        term_i = (col - n * hstar * (t_sup + (dit - f01) / f01)) / fs
        ifun = (term_k + term_j + term_i) / n
        iid_mat[:, q] = ifun
        out["se"][q] = np.std(ifun, ddof=1) / np.sqrt(n)
    return TimeROCResult(
        marker=name,
        times=times_arr,
        auc=out["auc"],
        se=out["se"],
        n_cases=out["cases"].astype(int),
        n_controls=out["controls"].astype(int),
        n_censored=out["cens"].astype(int),
        cum_incidence=out["F"],
        surv_prob=out["S"],
        n=n,
        iid=iid_mat,
        time_sorted=t,
        event_sorted=e,
    )


def compare_auc(a: TimeROCResult, b: TimeROCResult) -> pd.DataFrame:
    """Two-sided test of AUC_a(t) = AUC_b(t) on the same patients (``timeROC::compare``).

    Returns:
        One row per time: time, delta_auc, se_delta, z, p.

    Raises:
        InputError: missing iid representations, or results on different times/patients.
    """
    if a.iid is None or b.iid is None:
        raise InputError("compare_auc", "a result lacks its iid representation", "use iid=True")
    if not np.array_equal(a.times, b.times):
        raise InputError(
            "compare_auc", "the two results are for different times", "use the same times"
        )
    same = a.n == b.n and np.array_equal(a.time_sorted, b.time_sorted)
    if not same or not np.array_equal(a.event_sorted, b.event_sorted):
        raise InputError(
            "compare_auc",
            f"markers '{a.marker}' and '{b.marker}' were not computed on the same patients",
            "compare markers on the same rows (drop rows missing either marker first)",
        )
    delta = a.auc - b.auc
    sd = np.std(a.iid - b.iid, axis=0, ddof=1) / np.sqrt(a.n)
    z = np.abs(delta) / sd
    return pd.DataFrame(
        {
            "marker_a": a.marker,
            "marker_b": b.marker,
            "time": a.times,
            "delta_auc": delta,
            "se_delta": sd,
            "z": z,
            "p": 2 * stats.norm.sf(z),
        }
    )


def plot_auc_curves(
    results: Sequence[TimeROCResult],
    ax: Axes | None = None,
    ci: bool = True,
    **kwargs: object,
) -> Axes:
    """Plot AUC(t) of several markers (computed on a grid of times) on one Axes."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    z = stats.norm.ppf(0.975)
    for r in results:
        (line,) = ax.plot(r.times, r.auc, marker="o", label=r.marker, **kwargs)
        if ci and np.isfinite(r.se).any():
            ax.fill_between(
                r.times, r.auc - z * r.se, r.auc + z * r.se, alpha=0.15, color=line.get_color()
            )
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("time")
    ax.set_ylabel("AUC(t)")
    ax.set_ylim(0.3, 1.0)
    ax.legend(loc="best")
    return ax
