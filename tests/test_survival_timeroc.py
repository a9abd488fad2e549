"""Tests for histoprog.survival.timeroc against timeROC 0.4.1.

timeROC is not packaged for Debian, so its values on lung and veteran are a kept copy
(``tests/fixtures/r/timeroc_<data>.json``, see the README there), and tied-time / ``T == t``
cases are checked against a literal O(n^2) transcription of timeROC's R code
(``Compute.iid.KM`` and ``compute_iid_decomposition_survival``) kept here in the test.
"""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from conftest import R_COVARIATES, r_fixture, r_reference  # noqa: E402

from histoprog.errors import InputError  # noqa: E402
from histoprog.survival.timeroc import compare_auc, plot_auc_curves, time_roc  # noqa: E402

# the pairs timeroc_<data>.json compares, as "<a>_vs_<b>"
COMPARED = {
    "lung": [("lp", "age"), ("age", "sex")],
    "veteran": [("lp", "trt"), ("trt", "cell_smallcell")],
}


def _load(ds):
    """The data, R's values on it, and timeROC's values (kept apart: not regenerated)."""
    df, ref = r_reference(ds)
    ref["timeROC"] = json.loads(r_fixture(f"timeroc_{ds}.json").read_text())["timeROC"]
    return df, ref


def _marker(df, ref, name):
    if name == "lp":
        return np.array(ref["cox_multivariate"]["lp"])
    return ref["timeROC"]["markers"][name]["orientation"] * df[name].to_numpy(float)


def _cases():
    for ds in ("lung", "veteran"):
        for name in ("lp", *R_COVARIATES[ds]):
            yield ds, name


@pytest.mark.parametrize(("ds", "name"), list(_cases()))
def test_auc_and_se_match_timeroc(ds, name):
    df, ref = _load(ds)
    r = ref["timeROC"]["markers"][name]
    res = time_roc(df["time"], df["event"], _marker(df, ref, name), r["times"], name=name)
    np.testing.assert_allclose(res.auc, r["AUC"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(res.se, r["se"], rtol=1e-6)
    assert list(res.n_cases) == r["cases"]
    assert list(res.n_controls) == r["controls"]
    assert list(res.n_censored) == r["censored_before_t"]
    np.testing.assert_allclose(res.cum_incidence, r["cum_incidence"], rtol=1e-9)
    np.testing.assert_allclose(res.surv_prob, r["surv_prob"], rtol=1e-9)
    s = res.summary
    np.testing.assert_allclose(s["lower"], r["lower95"], rtol=1e-6)


@pytest.mark.parametrize(
    ("ds", "key"), [(ds, f"{a}_vs_{b}") for ds, pairs in COMPARED.items() for a, b in pairs]
)
def test_compare_matches_timeroc(ds, key):
    df, ref = _load(ds)
    c = ref["timeROC"]["compare"][key]
    times = c["times"]
    a = time_roc(df["time"], df["event"], _marker(df, ref, c["marker_a"]), times)
    b = time_roc(df["time"], df["event"], _marker(df, ref, c["marker_b"]), times)
    out = compare_auc(a, b)
    np.testing.assert_allclose(out["delta_auc"], c["delta_AUC"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(out["se_delta"], c["se_delta"], rtol=1e-6)
    np.testing.assert_allclose(out["p"], c["p"], rtol=1e-6)


# ------------------------------------------------- literal transcription of timeROC's R code


def _timeroc_literal(T, delta, marker, t):
    o = np.argsort(T, kind="stable")
    T, delta, marker = T[o], delta[o], marker[o]
    n = len(T)

    # pec::ipcw marginal = prodlim reverse KM (events leave the risk set before censoring)
    def G(s, lag):
        g = 1.0
        for u in np.unique(T):
            if (u >= s) if lag else (u > s):
                break
            atrisk = np.sum(T >= u) - np.sum((T == u) & (delta == 1))
            nc = np.sum((T == u) & (delta == 0))
            if nc:
                g *= 1 - nc / atrisk
        return g

    wc_all = np.array([1 / (G(x, True) * n) for x in T])
    cases = (T < t) & (delta == 1)
    ctrl = T > t
    wd = 1 / (G(t, False) * n)
    h = np.zeros((n, n))  # h[j, i]
    for i in np.flatnonzero(cases):
        for j in np.flatnonzero(ctrl):
            h[j, i] = (
                ((marker[i] > marker[j]) + 0.5 * (marker[i] == marker[j])) * wc_all[i] * wd * n * n
            )
    F = wc_all[cases].sum()
    S = ctrl.sum() * wd
    auc = h.sum() / (n * n) / (F * S)
    # Compute.iid.KM
    c = (delta == 0).astype(float)
    lam = c / (n - np.arange(n))
    Lam = np.cumsum(lam)
    hatMC = np.zeros((n, n))
    for i in range(n):
        hatMC[:, i] = c[i] * (T[i] <= T) - np.r_[Lam[: i + 1], np.repeat(Lam[i], n - i - 1)]
    dM = np.vstack([hatMC[:1], np.diff(hatMC, axis=0)])
    dM = dM / np.r_[1, 1 - np.arange(1, n) / n][:, None]
    MI = np.cumsum(dM, axis=0)
    hs = h.sum() / (n * n)
    dit = (T <= t) * (delta == 1) * np.where(cases, wc_all, 0) * n
    tsup = (T > t) / (np.sum(T > t) / n)
    colS, rowS = h.sum(axis=0), h.sum(axis=1)
    k_terms = np.array(
        [
            (np.sum(colS * (1 + MI[:, k]))) / n
            - np.sum(hs * (tsup + (1 / F) * (dit * (1 + MI[:, k]) - F)))
            for k in range(n)
        ]
    ) / (F * S)
    j_terms = (rowS - n * hs) / (F * S)
    i_terms = (colS - n * hs * (tsup + (1 / F) * (dit - F))) / (F * S)
    ifun = (k_terms + j_terms + i_terms) / n
    return auc, np.std(ifun, ddof=1) / np.sqrt(n), ifun


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fast_iid_equals_literal_timeroc_on_ties(seed):
    rng = np.random.default_rng(seed)
    n = 60
    T = rng.integers(1, 15, n).astype(float)  # heavy ties, incl. event/censoring ties
    delta = rng.integers(0, 2, n).astype(float)
    marker = rng.integers(0, 4, n).astype(float)  # tied marker
    for t in (6.0, 9.5):  # 6.0 is an observed time (T == t: neither case nor control)
        auc, se, ifun = _timeroc_literal(T, delta, marker, t)
        res = time_roc(T, delta, marker, [t])
        assert abs(res.auc[0] - auc) < 1e-12
        assert abs(res.se[0] - se) < 1e-10 * se
        np.testing.assert_allclose(res.iid[:, 0], ifun, rtol=1e-9, atol=1e-12)


def test_binary_marker_and_plot():
    df = pd.read_csv(r_fixture("ties.csv"))
    a = time_roc(df["time"], df["event"], df["b1"], [30, 60], name="b1")
    b = time_roc(df["time"], df["event"], df["x1"], [30, 60], name="x1")
    assert np.all((a.auc > 0.5) & (a.auc < 1))
    ax = plot_auc_curves([a, b])
    assert len(ax.lines) >= 2
    assert a.plot().get_ylabel() == "AUC(t)"


def test_compare_requires_same_patients_and_iid():
    df = pd.read_csv(r_fixture("ties.csv"))
    a = time_roc(df["time"], df["event"], df["x1"], [30])
    short = df.iloc[:-5]
    b = time_roc(short["time"], short["event"], short["x1"], [30])
    with pytest.raises(InputError, match="not computed on the same patients"):
        compare_auc(a, b)
    c = time_roc(df["time"], df["event"], df["x1"], [30], iid=False)
    with pytest.raises(InputError, match="iid"):
        compare_auc(a, c)
    with pytest.raises(InputError, match="event indicator"):
        time_roc(df["time"], df["event"] * 2, df["x1"], [30])
