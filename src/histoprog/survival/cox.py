"""Cox proportional hazards regression, as R's ``survival::coxph``.

Own Newton-Raphson (with step halving) on the exact Efron (default) or Breslow partial
log-likelihood, its gradient and Hessian, iterated to full convergence so that coefficients,
standard errors and p-values agree with ``coxph`` (survival 3.5) to ~1e-9 relative.

Mirrors of R:

* :func:`coxph` -> ``coxph(Surv(time, event) ~ x1 + ... + strata(s), ties = "efron")``:
  ``coef``, ``se(coef)``, ``z``, ``exp(coef)`` with 95 % CI, Wald p, the likelihood-ratio,
  Wald and score tests, ``loglik``, ``AIC`` (= -2 loglik + 2 p, as ``AIC(fit)``) and the
  uncentred linear predictor ``X beta`` (``coxph`` since survival 3.2-9 does not centre 0/1
  covariates; we never centre, so the score and its cutoff live on the published scale).
* :func:`concordance` -> ``survival::concordance(fit)`` point estimate and pair counts
  (Harrell's C; ties in the score count 1/2, pairs tied on an event time are not
  comparable). Its standard error (R's infinitesimal jackknife) is not computed.
* :func:`cox_univariate` -> one ``coxph`` per covariate: the univariate table of every
  analysis (constant covariates and singular fits noted, not raised).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from histoprog.errors import InputError
from histoprog.survival._data import check_survival_data

Ties = Literal["efron", "breslow"]

__all__ = [
    "SINGULAR",
    "UNIVARIATE_COLUMNS",
    "Concordance",
    "CoxResult",
    "concordance",
    "cox_univariate",
    "coxph",
    "fit_cox_arrays",
]


# --------------------------------------------------------------------------- core maths


class _Stratum:
    """Precomputed sort and tie structure of one stratum for repeated likelihood calls."""

    def __init__(self, time: np.ndarray, event: np.ndarray, x: np.ndarray) -> None:
        order = np.argsort(time, kind="stable")
        self.order = order
        t = time[order]
        self.event = event[order].astype(float)
        self.x = x[order]
        # contiguous groups of equal time
        starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
        self.starts = starts
        self.n_groups = len(starts)
        self.d = np.add.reduceat(self.event, starts)
        ev_groups = np.flatnonzero(self.d > 0)
        self.ev_groups = ev_groups
        d_ev = self.d[ev_groups].astype(int)
        self.rep_idx = np.repeat(np.arange(len(ev_groups)), d_ev)
        within = np.arange(d_ev.sum()) - np.repeat(np.cumsum(d_ev) - d_ev, d_ev)
        self.frac = within / d_ev[self.rep_idx]
        self.sum_event_x = self.event @ self.x
        # x x' per subject, only needed for the Hessian
        self.xx = np.einsum("ij,ik->ijk", self.x, self.x)

    def terms(
        self, beta: np.ndarray, ties: Ties, hessian: bool = True
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """Return (loglik, gradient, information matrix) of this stratum at ``beta``."""
        eta = self.x @ beta
        shift = eta.max() if eta.size else 0.0
        r = np.exp(eta - shift)
        starts, ev = self.starts, self.ev_groups
        rx = r[:, None] * self.x
        # group sums then reverse cumulative sums = risk-set sums
        g0 = np.add.reduceat(r, starts)
        g1 = np.add.reduceat(rx, starts, axis=0)
        s0 = np.cumsum(g0[::-1])[::-1][ev]
        s1 = np.cumsum(g1[::-1], axis=0)[::-1][ev]
        re = r * self.event
        e0 = np.add.reduceat(re, starts)[ev]
        e1 = np.add.reduceat(re[:, None] * self.x, starts, axis=0)[ev]
        idx = self.rep_idx
        a = self.frac if ties == "efron" else np.zeros_like(self.frac)
        den = s0[idx] - a * e0[idx]
        mean = (s1[idx] - a[:, None] * e1[idx]) / den[:, None]
        loglik = float(self.event @ (eta - shift) - np.log(den).sum())
        grad = self.sum_event_x - mean.sum(axis=0)
        if not hessian:
            return loglik, grad, np.empty((0, 0))
        p = self.x.shape[1]
        g2 = np.add.reduceat(r[:, None, None] * self.xx, starts, axis=0)
        s2 = np.cumsum(g2[::-1], axis=0)[::-1][ev]
        e2 = np.add.reduceat(re[:, None, None] * self.xx, starts, axis=0)[ev]
        ng = len(ev)
        w1 = np.bincount(idx, weights=1.0 / den, minlength=ng)
        w2 = np.bincount(idx, weights=a / den, minlength=ng)
        info = np.tensordot(w1, s2, axes=1) - np.tensordot(w2, e2, axes=1) - mean.T @ mean
        return loglik, grad, info.reshape(p, p)


@dataclass(frozen=True)
class _Fit:
    beta: np.ndarray
    loglik: float
    loglik_init: float
    info: np.ndarray
    score_init: float
    iterations: int
    converged: bool


def _newton(
    strata: list[_Stratum],
    p: int,
    ties: Ties,
    init: np.ndarray | None,
    max_iter: int,
    tol: float,
) -> _Fit:
    def f(b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        ll, g, h = 0.0, np.zeros(p), np.zeros((p, p))
        for s in strata:
            a, b_, c = s.terms(b, ties)
            ll += a
            g += b_
            h += c
        return ll, g, h

    beta = np.zeros(p) if init is None else np.asarray(init, float).copy()
    ll, g, h = f(beta)
    ll_init = ll
    if p == 0:
        return _Fit(beta, ll, ll, h, 0.0, 0, True)
    try:
        score = float(g @ np.linalg.solve(h, g))
    except np.linalg.LinAlgError:
        score = float("nan")
    converged = False
    it = 0
    while it < max_iter:
        it += 1
        try:
            step = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(h, g, rcond=None)[0]
        new = beta + step
        ll_new, g_new, h_new = f(new)
        halving = 0
        while (not np.isfinite(ll_new) or ll_new < ll - 1e-12 * abs(ll)) and halving < 40:
            new = (new + beta) / 2
            ll_new, g_new, h_new = f(new)
            halving += 1
        change = abs(ll_new - ll)
        beta, ll, g, h = new, ll_new, g_new, h_new
        if change <= tol * max(1.0, abs(ll)) and np.max(np.abs(step)) <= 1e-8 * (
            1 + np.max(np.abs(beta))
        ):
            converged = True
            break
        if change == 0.0 and halving >= 40:
            break
    return _Fit(beta, ll, ll_init, h, score, it, converged)


def _make_strata(
    time: np.ndarray, event: np.ndarray, x: np.ndarray, strata: np.ndarray | None
) -> list[_Stratum]:
    if strata is None:
        return [_Stratum(time, event, x)]
    return [
        _Stratum(time[strata == s], event[strata == s], x[strata == s]) for s in np.unique(strata)
    ]


def fit_cox_arrays(
    time: np.ndarray,
    event: np.ndarray,
    x: np.ndarray,
    *,
    ties: Ties = "efron",
    strata: np.ndarray | None = None,
    init: np.ndarray | None = None,
    max_iter: int = 50,
    tol: float = 1e-13,
) -> tuple[np.ndarray, float, float, np.ndarray]:
    """Fit a Cox model on checked arrays (no input validation; for internal loops).

    Returns:
        ``(beta, loglik, loglik_null, information)``; ``loglik_null`` is at ``init``
        (zero by default).
    """
    x = np.asarray(x, float).reshape(len(time), -1)
    xc = x - x.mean(axis=0) if x.size else x
    fit = _newton(_make_strata(time, event, xc, strata), x.shape[1], ties, init, max_iter, tol)
    return fit.beta, fit.loglik, fit.loglik_init, fit.info


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Concordance:
    """Harrell's C as ``survival::concordance``, with its pair counts."""

    c: float
    concordant: int
    discordant: int
    tied_x: int
    tied_y: int
    tied_xy: int


@dataclass(frozen=True)
class CoxResult:
    """A fitted Cox model (``coxph``); ``summary`` is the per-term table."""

    terms: tuple[str, ...]
    coef: np.ndarray
    se: np.ndarray
    vcov: np.ndarray
    loglik_null: float
    loglik: float
    score_stat: float
    n: int
    n_events: int
    ties: str
    iterations: int
    converged: bool
    linear_predictor: np.ndarray = field(repr=False)
    concordance: Concordance | None = None
    ids: np.ndarray | None = field(default=None, repr=False)

    @property
    def df(self) -> int:
        """Number of coefficients."""
        return len(self.terms)

    @property
    def z(self) -> np.ndarray:
        """Wald z statistics."""
        return self.coef / self.se

    @property
    def p_wald(self) -> np.ndarray:
        """Two-sided Wald p-values per coefficient."""
        return 2 * stats.norm.sf(np.abs(self.z))

    @property
    def hr(self) -> np.ndarray:
        """Hazard ratios ``exp(coef)``."""
        return np.exp(self.coef)

    def hr_ci(self, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Wald confidence interval of the hazard ratios (``summary.coxph``)."""
        q = stats.norm.ppf(0.5 + level / 2)
        return np.exp(self.coef - q * self.se), np.exp(self.coef + q * self.se)

    @property
    def lr_stat(self) -> float:
        """Likelihood-ratio statistic against the null model."""
        return 2 * (self.loglik - self.loglik_null)

    @property
    def lr_p(self) -> float:
        """Likelihood-ratio test p-value (chi-squared, ``df`` degrees of freedom)."""
        return float(stats.chi2.sf(self.lr_stat, self.df))

    @property
    def wald_stat(self) -> float:
        """Global Wald statistic ``beta' V^-1 beta``."""
        return float(self.coef @ np.linalg.solve(self.vcov, self.coef))

    @property
    def wald_p(self) -> float:
        """Global Wald test p-value."""
        return float(stats.chi2.sf(self.wald_stat, self.df))

    @property
    def score_p(self) -> float:
        """Score (log-rank) test p-value, at beta = 0."""
        return float(stats.chi2.sf(self.score_stat, self.df))

    @property
    def aic(self) -> float:
        """``AIC(fit)`` = -2 loglik + 2 df."""
        return -2 * self.loglik + 2 * self.df

    @property
    def summary(self) -> pd.DataFrame:
        """Per-term table: coef, se, z, hr with 95 % CI, p_wald (and model-level p_lrt)."""
        lo, hi = self.hr_ci()
        return pd.DataFrame(
            {
                "term": list(self.terms),
                "coef": self.coef,
                "se": self.se,
                "z": self.z,
                "hr": self.hr,
                "hr_lower": lo,
                "hr_upper": hi,
                "p_wald": self.p_wald,
                "p_lrt": self.lr_p,
            }
        )

    def predict(self, x: np.ndarray | pd.DataFrame) -> np.ndarray:
        """Uncentred linear predictor ``X beta`` for new rows (columns in ``terms`` order)."""
        if isinstance(x, pd.DataFrame):
            missing = [t for t in self.terms if t not in x.columns]
            if missing:
                raise InputError(
                    f"columns {missing}", "are needed by the Cox model", "add them to the table"
                )
            x = x[list(self.terms)].to_numpy(float)
        return np.asarray(x, float).reshape(-1, self.df) @ self.coef


# --------------------------------------------------------------------------- public API


def _check_collinear(x: np.ndarray, names: Sequence[str]) -> None:
    if x.shape[1] < 2:
        return
    xc = x - x.mean(axis=0)
    xc = xc / np.sqrt((xc**2).sum(axis=0))
    rank = 0
    for j in range(x.shape[1]):
        r = np.linalg.matrix_rank(xc[:, : j + 1], tol=1e-8)
        if r == rank:
            raise InputError(
                f"column '{names[j]}'",
                f"is a linear combination of {list(names[:j])} (collinear covariates)",
                "drop one of the collinear covariates",
            )
        rank = r


R_EPS = 1e-9
"""R's ``coxph.control()$eps``: used only for fits with an infinite coefficient."""
R_ITER_MAX = 20
"""R's ``coxph.control()$iter.max``."""


def _information_inverse(
    info: np.ndarray, toler: float = np.finfo(float).eps ** 0.75
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of the information matrix as R's ``cholesky2`` + ``chinv2`` (``toler.chol``).

    A column whose Cholesky pivot falls below ``toler`` times the largest diagonal element
    is singular (an infinite coefficient: a covariate that separates the events, or an
    aliased one); its row and column of the inverse are 0 and ``coxph`` reports its
    coefficient as NaN, as R reports NA.

    Returns:
        (inverse, singular mask).
    """
    p = info.shape[0]
    diag = np.diag(info)
    eps = toler * (float(diag.max()) if p and diag.max() > 0 else 1.0)
    work = info.astype(float).copy()
    singular = np.zeros(p, dtype=bool)
    for i in range(p):
        pivot = work[i, i]
        if not np.isfinite(pivot) or pivot < eps:
            singular[i] = True
            continue
        below = work[i + 1 :, i] / pivot
        work[i + 1 :, i + 1 :] -= np.outer(below, work[i, i + 1 :])
    inverse = np.zeros((p, p))
    keep = ~singular
    if keep.any():
        inverse[np.ix_(keep, keep)] = np.linalg.inv(info[np.ix_(keep, keep)])
    return inverse, singular


def coxph(
    data: pd.DataFrame,
    time: str,
    event: str,
    covariates: Sequence[str],
    *,
    ties: Ties = "efron",
    strata: str | None = None,
    id_col: str | None = None,
    missing: Literal["raise", "drop"] = "raise",
    max_iter: int = 50,
    tol: float = 1e-13,
    with_concordance: bool = True,
) -> CoxResult:
    """Fit a Cox model, as R's ``coxph(Surv(time, event) ~ covariates, ties = ties)``.

    Args:
        data: one row per patient.
        time: follow-up time column.
        event: 0/1 event column.
        covariates: numeric covariate columns (dummy-code factors first).
        ties: ``"efron"`` (R's default) or ``"breslow"``.
        strata: optional column; a separate baseline hazard per value (``strata()``).
        id_col: patient id column for error messages.
        missing: ``"raise"`` on missing covariate values or ``"drop"`` those rows.
        max_iter: Newton-Raphson iteration limit.
        tol: convergence tolerance on the relative change of the log-likelihood.
        with_concordance: also compute Harrell's C (O(n^2) pairs).

    Returns:
        A :class:`CoxResult`. When a coefficient runs off to infinity (a covariate that
        separates the events: its information vanishes at ``tol``), the fit is redone
        with R's own stopping rule (eps 1e-9, 20 iterations), which stops it at a large
        finite value as R's ``coxph`` does ("coefficient may be infinite"); a column
        still singular then (aliased) gets a NaN coefficient and SE 0, as R's NA.

    Raises:
        InputError: bad columns, times or events (see ``_data.check_survival_data``), or
            collinear covariates.
    """
    if ties not in ("efron", "breslow"):
        raise InputError("ties", f"unknown method {ties!r}", "use 'efron' or 'breslow'")
    sd = check_survival_data(
        data, time, event, covariates, id_col=id_col, strata=strata, missing=missing
    )
    _check_collinear(sd.x, sd.covariates)
    xc = sd.x - sd.x.mean(axis=0)
    strata_ = _make_strata(sd.time, sd.event, xc, sd.strata)
    fit = _newton(strata_, sd.x.shape[1], ties, None, max_iter, tol)
    vcov, singular = _information_inverse(fit.info)
    if singular.any():
        # A coefficient ran off to infinity (monotone likelihood). R stops such a fit at
        # its own tolerance (coxph.control: eps 1e-9, iter.max 20) with a large finite
        # coefficient and the warning "coefficient may be infinite"; do the same.
        fit = _newton(strata_, sd.x.shape[1], ties, None, R_ITER_MAX, R_EPS)
        vcov, singular = _information_inverse(fit.info)
    lp = sd.x @ fit.beta
    conc = concordance(sd.time, sd.event, lp, strata=sd.strata) if with_concordance else None
    return CoxResult(
        terms=sd.covariates,
        coef=np.where(singular, np.nan, fit.beta),
        se=np.sqrt(np.diag(vcov)),
        vcov=vcov,
        loglik_null=fit.loglik_init,
        loglik=fit.loglik,
        score_stat=fit.score_init,
        n=len(sd.time),
        n_events=int(sd.event.sum()),
        ties=ties,
        iterations=fit.iterations,
        converged=fit.converged,
        linear_predictor=lp,
        concordance=conc,
        ids=sd.ids,
    )


SINGULAR = "the fit has a singular information matrix (a group without events?)"
"""Note of a model whose fit failed on a singular information matrix."""

UNIVARIATE_COLUMNS: tuple[str, ...] = (
    "term",
    "n",
    "events",
    "coef",
    "se",
    "z",
    "hr",
    "hr_lower",
    "hr_upper",
    "p_wald",
    "p_lrt",
    "note",
)
"""Columns of :func:`cox_univariate`."""


def cox_univariate(
    data: pd.DataFrame,
    time: str,
    event: str,
    covariates: Sequence[str],
    **kwargs: object,
) -> pd.DataFrame:
    """One Cox model per covariate: the univariate table every analysis reports.

    A covariate constant in ``data`` (missing values aside) is not fitted: it gets a row
    with the note ``constant``, after the fitted ones. A singular fit gets NaN values and
    the note :data:`SINGULAR`. Keyword arguments go to :func:`coxph`.

    Returns:
        Rows (:data:`UNIVARIATE_COLUMNS`): term, n, events, coef, se, z, hr, hr_lower,
        hr_upper, p_wald, p_lrt (likelihood-ratio test), note.
    """
    rows = []
    constant = []
    for c in covariates:
        if data[c].dropna().nunique() < 2:
            constant.append({"term": c, "note": "constant"})
            continue
        try:
            fit = coxph(data, time, event, [c], **kwargs)  # type: ignore[arg-type]
        except np.linalg.LinAlgError:
            rows.append({"term": c, "note": SINGULAR})
            continue
        rows.append(
            {**fit.summary.iloc[0].to_dict(), "n": fit.n, "events": fit.n_events, "note": ""}
        )
    return pd.DataFrame(rows + constant).reindex(columns=list(UNIVARIATE_COLUMNS))


def concordance(
    time: np.ndarray,
    event: np.ndarray,
    score: np.ndarray,
    *,
    strata: np.ndarray | None = None,
    chunk: int = 512,
) -> Concordance:
    """Harrell's C of a risk score (higher = shorter survival), as ``survival::concordance``.

    A pair (i, j) is comparable when i has an event and ``time[j] > time[i]``, or
    ``time[j] == time[i]`` and j is censored; two events at the same time are ``tied_y``
    and not comparable. Score ties count 1/2: ``C = (conc + tied_x / 2) / (conc + disc +
    tied_x)``. Pairs are only formed within strata.
    """
    time = np.asarray(time, float)
    event = np.asarray(event).astype(bool)
    score = np.asarray(score, float)
    groups = (
        [np.arange(len(time))]
        if strata is None
        else [np.flatnonzero(strata == s) for s in np.unique(strata)]
    )
    conc = disc = tx = ty = txy = 0
    for g in groups:
        t, e, s = time[g], event[g], score[g]
        ev = np.flatnonzero(e)
        for start in range(0, len(ev), chunk):
            i = ev[start : start + chunk]
            ti, si = t[i][:, None], s[i][:, None]
            later = (t[None, :] > ti) | ((t[None, :] == ti) & ~e[None, :])
            same_ev = (t[None, :] == ti) & e[None, :]
            same_ev[np.arange(len(i)), i] = False
            eq = s[None, :] == si
            conc += int((later & (si > s[None, :])).sum())
            disc += int((later & (si < s[None, :])).sum())
            tx += int((later & eq).sum())
            txy += int((same_ev & eq).sum())
            ty += int((same_ev & ~eq).sum())
    # pairs of events at one time are counted from both sides above
    ty //= 2
    txy //= 2
    denom = conc + disc + tx
    c = (conc + tx / 2) / denom if denom else float("nan")
    return Concordance(float(c), conc, disc, tx, ty, txy)
