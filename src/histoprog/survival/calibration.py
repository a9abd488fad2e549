"""Bootstrap optimism-corrected calibration of a Cox model at time u, as ``rms::calibrate``.

Mirrors ``calibrate(cph(..., x = TRUE, y = TRUE, surv = TRUE, time.inc = u),
cmethod = "KM", method = "boot", u = u, m = m, B = B)`` (rms 6.5, Hmisc 4.7), step by step:

1. Fit the Cox model (Efron ties). Predicted survival at u is
   ``S0(u) ^ exp(lp_i - center)``, ``S0`` the Efron-type baseline survival of ``survfit.cph``
   (``exp(-H0)``, increments ``sum_k 1 / (S0 - k/d E0)`` at a time with d events) at the
   covariate means, ``center`` = mean linear predictor (``fit$surv.summary[2, , 1]``).
2. Cut points: ``unique(quantile(c(0, 1, pred), seq(0, 1, length = g + 1)))`` with
   ``g = max(1, floor(n / m))`` (R's type-7 quantiles).
3. Groups: ``Hmisc::cut2(pred, cuts)``: intervals ``(c_i - d, c_{i+1} - d]`` (last one closed at
   ``c_l``), ``d`` = half the smallest gap between the distinct values of pred and cuts, so
   effectively ``[c_i, c_{i+1})``; predictions with ``|p| < 1e-10`` are set to 0.
4. Per group (``groupkm``): mean predicted survival; Kaplan-Meier at the last time <= u +
   1e-6 with Greenwood SE of log S; NA for groups with < 2 patients, or when u is beyond
   the group's last time and its KM is > 0.
5. ``index.orig`` = KM - mean predicted (``what = "observed-predicted"``).
6. For b = 1..B: draw n rows with replacement; skip the draw (as a failed fit) if it has
   < 5 events; refit; ``training`` = the same statistic on the draw with the refit's
   predictions, ``test`` = on the original data with the refit's predictions, both with the
   original cut points; a group that is NA in either is left out of that group's average
   (``predab.resample``).
7. ``optimism`` = mean training - mean test; ``KM.corrected`` = KM - optimism;
   ``mean.corrected`` = index.orig - optimism.

The random draws come from ``numpy.random.default_rng(seed)``, not R's RNG, so bootstrap
results agree with R only within Monte-Carlo error; steps 1-5 agree exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from histoprog.errors import InputError
from histoprog.survival._data import check_survival_data
from histoprog.survival.cox import _Stratum, fit_cox_arrays

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["CalibrationResult", "baseline_survival", "calibrate"]


def baseline_survival(
    time: np.ndarray, event: np.ndarray, lp_centred: np.ndarray, u: float
) -> float:
    """Efron-type baseline survival at ``u`` for centred linear predictors (``survfit.cph``)."""
    s = _Stratum(time, event, lp_centred[:, None])
    r = np.exp(s.x[:, 0])
    g0 = np.add.reduceat(r, s.starts)
    s0 = np.cumsum(g0[::-1])[::-1][s.ev_groups]
    e0 = np.add.reduceat(r * s.event, s.starts)[s.ev_groups]
    den = s0[s.rep_idx] - s.frac * e0[s.rep_idx]
    inc = np.bincount(s.rep_idx, weights=1.0 / den, minlength=len(s.ev_groups))
    ev_times = time[s.order][s.starts[s.ev_groups]]
    return float(np.exp(-inc[ev_times <= u].sum()))


def _r_quantile(x: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """R's default (type 7) quantiles."""
    return np.quantile(x, probs, method="linear")


def _cut2(x: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, int]:
    """Group index (0-based, -1 outside) and number of groups, as ``Hmisc::cut2(x, cuts)``."""
    cuts = np.sort(np.unique(cuts))
    r0, r1 = x.min(), x.max()
    if r0 < cuts[0]:
        cuts = np.r_[r0, cuts]
    if r1 > cuts[-1]:
        cuts = np.r_[cuts, r1]
    xu = np.unique(np.r_[x, cuts])
    min_dif = np.min(np.diff(xu)) / 2 if len(xu) > 1 else 0.0
    k2 = cuts - min_dif
    k2[-1] = cuts[-1]
    # cut(x, k2): right-closed (k2[i], k2[i+1]]
    idx = np.searchsorted(k2, x, side="left") - 1
    idx[(x <= k2[0]) | (x > k2[-1])] = -1
    return idx, len(k2) - 1


def _groupkm(
    pred: np.ndarray, time: np.ndarray, event: np.ndarray, cuts: np.ndarray, u: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``rms::groupkm``: per group mean predicted, n, events, KM at u and its SE (log S)."""
    pred = np.where(np.abs(pred) < 1e-10, 0.0, pred)
    q, ng = _cut2(pred, cuts)
    mean = np.full(ng, np.nan)
    km = np.full(ng, np.nan)
    se = np.full(ng, np.nan)
    nobs = np.zeros(ng, int)
    nev = np.zeros(ng, int)
    for i in range(ng):
        s = q == i
        k = int(s.sum())
        if k == 1:
            mean[i] = pred[s].mean()
        if k < 2:
            continue
        mean[i] = pred[s].mean()
        t, e = time[s], event[s]
        nobs[i], nev[i] = k, int(e.sum())
        ut, inv = np.unique(t, return_inverse=True)
        d = np.bincount(inv, weights=e, minlength=len(ut))
        n_risk = k - np.r_[0, np.cumsum(np.bincount(inv, minlength=len(ut)))[:-1]]
        surv = np.cumprod(1 - d / n_risk)
        with np.errstate(divide="ignore", invalid="ignore"):
            var = np.cumsum(np.where(n_risk > d, d / (n_risk * (n_risk - d)), np.inf))
        upto = np.flatnonzero(ut <= u + 1e-6)
        if len(upto) == 0:
            km[i], se[i] = 1.0, 0.0
        else:
            j = upto[-1]
            km[i], se[i] = surv[j], np.sqrt(var[j]) if d[: j + 1].sum() else 0.0
        if u > ut[-1] + 1e-6 and surv[-1] > 0:
            km[i] = se[i] = np.nan
    return mean, nobs, nev, km, se


@dataclass(frozen=True)
class CalibrationResult:
    """Calibration at time u: per-group table and the patients' predicted survival."""

    u: float
    table: pd.DataFrame
    predicted: np.ndarray = field(repr=False)
    cuts: np.ndarray = field(repr=False)
    n_boot: int
    b_failed: int

    @property
    def summary(self) -> pd.DataFrame:
        """The per-group table (rms's ``calibrate`` matrix columns, snake_case)."""
        return self.table

    def plot(self, ax: Axes | None = None) -> Axes:
        """Observed (KM) and optimism-corrected vs mean predicted survival; returns the Axes."""
        import matplotlib.pyplot as plt

        ax = ax or plt.gca()
        t = self.table
        z = 1.959963984540054
        ax.errorbar(
            t["mean_predicted"],
            t["km"],
            yerr=[
                t["km"] - t["km"] * np.exp(-z * t["std_err"]),
                np.minimum(1, t["km"] * np.exp(z * t["std_err"])) - t["km"],
            ],
            fmt="o-",
            label="observed (KM)",
        )
        ax.plot(t["mean_predicted"], t["km_corrected"], "x--", label="bootstrap corrected")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel(f"predicted survival at {self.u:g}")
        ax.set_ylabel(f"observed survival at {self.u:g}")
        ax.legend(loc="best")
        return ax


def calibrate(
    data: pd.DataFrame,
    time: str,
    event: str,
    covariates: Sequence[str],
    u: float,
    *,
    m: int = 50,
    B: int = 1000,  # noqa: N803
    seed: int = 0,
    id_col: str | None = None,
) -> CalibrationResult:
    """Bootstrap optimism-corrected KM calibration of a Cox model at time ``u``.

    Args:
        data: one row per patient.
        time: follow-up time column.
        event: 0/1 event column.
        covariates: the Cox model's covariates (e.g. just the risk score).
        u: the time at which survival is calibrated.
        m: patients per group (``g = floor(n / m)`` quantile groups).
        B: bootstrap repetitions (0 for none).
        seed: seed of the bootstrap draws.
        id_col: patient id column for error messages.

    Returns:
        A :class:`CalibrationResult` whose table has, per group: index_orig, training,
        test, mean_optimism, optimism_sd (SD of training - test over the draws; its Monte-
        Carlo error is optimism_sd / sqrt(n_boot)), mean_corrected, n_boot,
        mean_predicted, km, km_corrected, std_err, n, events.

    Raises:
        InputError: bad input (as :func:`histoprog.survival.cox.coxph`), fewer than 5
            events, or u outside the follow-up.
    """
    sd = check_survival_data(data, time, event, covariates, id_col=id_col, min_events=5)
    t, e, x = sd.time, sd.event, sd.x
    n = len(t)
    if not (0 < u <= t.max()):
        raise InputError(
            "u", f"time {u:g} is outside the follow-up (0, {t.max():g}]", "choose u within it"
        )
    if m < 2:
        raise InputError("m", f"group size {m} is too small", "use m >= 2")

    def predict(xfit: np.ndarray, tfit: np.ndarray, efit: np.ndarray, xnew: list) -> list:
        beta = fit_cox_arrays(tfit, efit, xfit)[0]
        means = xfit.mean(axis=0)
        lpc = (xfit - means) @ beta
        s0 = baseline_survival(tfit, efit, lpc, u)
        return [s0 ** np.exp((xn - means) @ beta) for xn in xnew]

    (pred,) = predict(x, t, e, [x])
    g = max(1, n // m)
    cuts = np.unique(_r_quantile(np.r_[0.0, 1.0, pred], np.linspace(0, 1, g + 1)))
    mean_pred, nobs, nev, km, se = _groupkm(pred, t, e, cuts, u)
    index_orig = km - mean_pred
    ng = len(index_orig)
    train_sum = np.zeros(ng)
    test_sum = np.zeros(ng)
    diff_sq = np.zeros(ng)
    num = np.zeros(ng)
    failed = 0
    rng = np.random.default_rng(seed)
    for _ in range(B):
        j = rng.integers(0, n, n)
        tj, ej = t[j], e[j]
        if ej.sum() < 5:
            failed += 1
            continue
        try:
            p_train, p_test = predict(x[j], tj, ej, [x[j], x])
        except (np.linalg.LinAlgError, FloatingPointError):
            failed += 1
            continue
        mt, _, _, kt, _ = _groupkm(p_train, tj, ej, cuts, u)
        ms, _, _, ks, _ = _groupkm(p_test, t, e, cuts, u)
        tr, te = kt - mt, ks - ms
        if len(tr) != ng or len(te) != ng:  # predictions outside [0, 1]: cannot happen
            failed += 1
            continue
        ok = ~np.isnan(tr + te)
        num += ok
        train_sum += np.where(ok, tr, 0.0)
        test_sum += np.where(ok, te, 0.0)
        diff_sq += np.where(ok, tr - te, 0.0) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        training = train_sum / num
        test = test_sum / num
    optimism = training - test
    with np.errstate(invalid="ignore", divide="ignore"):
        opt_sd = np.sqrt(np.maximum(diff_sq / num - optimism**2, 0) * num / (num - 1))
    table = pd.DataFrame(
        {
            "group": np.arange(1, ng + 1),
            "index_orig": index_orig,
            "training": training,
            "test": test,
            "mean_optimism": optimism,
            "optimism_sd": opt_sd,
            "mean_corrected": index_orig - optimism,
            "n_boot": num.astype(int),
            "mean_predicted": mean_pred,
            "km": km,
            "km_corrected": km - optimism,
            "std_err": se,
            "n": nobs,
            "events": nev,
        }
    )
    return CalibrationResult(float(u), table, pred, cuts, B - failed, failed)
