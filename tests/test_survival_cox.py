"""Tests for histoprog.survival.cox against R's coxph (reference JSONs and R fixtures)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from conftest import (
    R_COVARIATES,  # noqa: E402
    r_reference,  # noqa: E402
)

from histoprog.errors import InputError  # noqa: E402
from histoprog.survival.cox import concordance, cox_univariate, coxph  # noqa: E402

RTOL = 1e-6


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def _uni_cases():
    for ds in ("lung", "veteran"):
        for c in R_COVARIATES[ds]:
            yield ds, c, "efron"
    for c in R_COVARIATES["ties"]:
        for ties in ("efron", "breslow"):
            yield "ties", c, ties


@pytest.mark.parametrize(("ds", "cov", "ties"), list(_uni_cases()))
def test_univariate_matches_r(ds, cov, ties):
    df, ref = r_reference(ds)
    fit = coxph(df, "time", "event", [cov], ties=ties)
    if ds == "ties":
        r = ref["cox_univariate"][ties][cov]
        rc = r["coefficients"][cov]
        lr_p, score_p, lr_stat = r["lr_p"], r["score_p"], r["lr_stat"]
    else:
        r = rc = ref["cox_univariate"][cov]
        lr_p, score_p, lr_stat = r["lr_p"], r["score_p"], r["lr_stat"]
    lo, hi = fit.hr_ci()
    assert _rel(fit.coef[0], rc["coef"]) < RTOL
    assert _rel(fit.se[0], rc["se"]) < RTOL
    assert _rel(fit.z[0], rc["z"]) < RTOL
    assert _rel(fit.p_wald[0], rc["wald_p"]) < RTOL
    assert _rel(fit.hr[0], rc["HR"]) < RTOL
    assert _rel(lo[0], rc["HR_lower95"]) < RTOL
    assert _rel(hi[0], rc["HR_upper95"]) < RTOL
    assert _rel(fit.lr_stat, lr_stat) < RTOL
    assert _rel(fit.lr_p, lr_p) < RTOL
    assert _rel(fit.score_p, score_p) < RTOL
    assert _rel(fit.loglik, r["loglik"]) < 1e-9
    assert _rel(fit.loglik_null, r["loglik_null"]) < 1e-9
    assert _rel(fit.concordance.c, r["concordance"]) < 1e-12


def _multi_cases():
    yield "lung", "efron", None
    yield "veteran", "efron", None
    yield "ties", "efron", None
    yield "ties", "breslow", None
    yield "ties", "efron", "st"


@pytest.mark.parametrize(("ds", "ties", "strata"), list(_multi_cases()))
def test_multivariate_matches_r(ds, ties, strata):
    df, ref = r_reference(ds)
    covs = ref["meta"]["covariates"]
    fit = coxph(df, "time", "event", covs, ties=ties, strata=strata)
    if ds == "ties":
        key = {"efron": "efron", "breslow": "breslow"}[ties] + ("_strata" if strata else "")
        m = ref["cox_multivariate"][key]
        lr, wald, score = m["lr_stat"], m["wald_stat"], m["score_stat"]
    else:
        m = ref["cox_multivariate"]
        lr, wald, score = (m[k]["stat"] for k in ("lr_test", "wald_test", "score_test"))
    assert fit.converged
    for i, c in enumerate(covs):
        rc = m["coefficients"][c]
        assert _rel(fit.coef[i], rc["coef"]) < RTOL, c
        assert _rel(fit.se[i], rc["se"]) < RTOL, c
        assert _rel(fit.p_wald[i], rc["wald_p"]) < RTOL, c
    assert _rel(fit.loglik, m["loglik"]) < 1e-9
    assert _rel(fit.lr_stat, lr) < RTOL
    assert _rel(fit.wald_stat, wald) < RTOL
    assert _rel(fit.score_stat, score) < RTOL
    assert _rel(fit.aic, m["AIC"]) < 1e-9
    np.testing.assert_allclose(fit.vcov, np.array(m["vcov"]), rtol=1e-6)
    np.testing.assert_allclose(fit.linear_predictor, np.array(m["lp"]), rtol=1e-6, atol=1e-9)
    assert _rel(fit.concordance.c, m["concordance"]) < 1e-12


def test_concordance_counts_match_r():
    df, ref = r_reference("ties")
    m = ref["cox_multivariate"]["efron"]
    fit = coxph(df, "time", "event", ref["meta"]["covariates"])
    cc = m["concordance_counts"]
    got = fit.concordance
    assert (got.concordant, got.discordant, got.tied_x, got.tied_y, got.tied_xy) == (
        cc["concordant"],
        cc["discordant"],
        cc["tied.x"],
        cc["tied.y"],
        cc["tied.xy"],
    )


def test_concordance_by_hand():
    # times 1(event) 2(event) 3(censored); score 3 2 1 -> fully concordant
    c = concordance(np.array([1, 2, 3]), np.array([1, 1, 0]), np.array([3.0, 2.0, 1.0]))
    assert c.c == 1.0 and c.concordant == 3
    c = concordance(np.array([1, 2, 3]), np.array([1, 1, 0]), np.array([1.0, 1.0, 1.0]))
    assert c.c == 0.5 and c.tied_x == 3


def test_univariate_table_and_summary():
    df, ref = r_reference("ties")
    tab = cox_univariate(df, "time", "event", ["b1", "x1"])
    assert list(tab["term"]) == ["b1", "x1"]
    for col in ("hr", "hr_lower", "hr_upper", "p_wald", "p_lrt"):
        assert col in tab.columns
    r = ref["cox_univariate"]["efron"]["b1"]
    assert _rel(tab.loc[0, "p_lrt"], r["lr_p"]) < RTOL
    fit = coxph(df, "time", "event", ["b1", "x1"])
    np.testing.assert_allclose(fit.predict(df), fit.linear_predictor)


# ------------------------------------------------------------------ failure cases


@pytest.fixture
def small() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 30
    return pd.DataFrame(
        {
            "patient_id": [f"P{i:02d}" for i in range(n)],
            "time": rng.exponential(10, n).round(1) + 0.1,
            "event": rng.integers(0, 2, n),
            "x": rng.normal(size=n),
            "z": rng.normal(size=n),
        }
    )


def test_non_numeric_column(small):
    small["x"] = small["x"].astype(str)
    small.loc[3, "x"] = "high"
    with pytest.raises(InputError, match="column 'x'.*non-numeric"):
        coxph(small, "time", "event", ["x"])


def test_missing_time_names_patients(small):
    small.loc[[2, 5], "time"] = np.nan
    with pytest.raises(InputError, match=r"column 'time'.*P02, P05"):
        coxph(small, "time", "event", ["x"], id_col="patient_id")


def test_negative_time(small):
    small.loc[4, "time"] = -1.0
    with pytest.raises(InputError, match=r"negative survival times \(patients P04\)"):
        coxph(small, "time", "event", ["x"], id_col="patient_id")


def test_event_not_binary(small):
    small.loc[7, "event"] = 2
    with pytest.raises(InputError, match=r"column 'event'.*0 \(censored\) or 1.*P07"):
        coxph(small, "time", "event", ["x"], id_col="patient_id")


def test_no_or_too_few_events(small):
    small["event"] = 0
    with pytest.raises(InputError, match="no events"):
        coxph(small, "time", "event", ["x"])
    small.loc[0, "event"] = 1
    with pytest.raises(InputError, match="only 1 events for 1 covariates"):
        coxph(small, "time", "event", ["x"])


def test_constant_covariate(small):
    small["x"] = 3.0
    with pytest.raises(InputError, match="column 'x'.*constant"):
        coxph(small, "time", "event", ["x"])


def test_all_nan_covariate(small):
    small["x"] = np.nan
    with pytest.raises(InputError, match="column 'x'.*all values are missing"):
        coxph(small, "time", "event", ["x"])


def test_missing_covariate_raise_or_drop(small):
    small.loc[[1, 9], "z"] = np.nan
    with pytest.raises(InputError, match=r"column 'z'.*P01, P09"):
        coxph(small, "time", "event", ["x", "z"], id_col="patient_id")
    fit = coxph(small, "time", "event", ["x", "z"], missing="drop")
    assert fit.n == len(small) - 2
    ref = coxph(small.dropna(), "time", "event", ["x", "z"])
    np.testing.assert_allclose(fit.coef, ref.coef)


def test_collinear_and_unknown_columns(small):
    small["w"] = 2 * small["x"] + 1
    with pytest.raises(InputError, match="column 'w'.*linear combination"):
        coxph(small, "time", "event", ["x", "w"])
    with pytest.raises(InputError, match="column 'nope'.*not in the table"):
        coxph(small, "time", "event", ["nope"])
    with pytest.raises(InputError, match="ties"):
        coxph(small, "time", "event", ["x"], ties="exact")  # type: ignore[arg-type]


def test_separating_covariate_stops_where_r_stops():
    """All events in x = 1: R's coxph stops at a large finite coefficient with the warning
    "coefficient may be infinite". R 4.2, survival 3.5 on this table (written to CSV):
    coef 21.157213250969939, -0.333132002291987; SE 9606.0345899620, 0.2178413024401; 20
    iterations."""
    rng = np.random.default_rng(0)
    x = np.repeat([0.0, 1.0], 20)
    data = pd.DataFrame(
        {"t": rng.uniform(1, 50, 40), "e": x.astype(int), "x": x, "z": rng.normal(size=40)}
    )
    fit = coxph(data, "t", "e", ["x", "z"])
    np.testing.assert_allclose(fit.coef, [21.157213250969939, -0.333132002291987], rtol=1e-6)
    np.testing.assert_allclose(fit.se, [9606.0345899620, 0.2178413024401], rtol=1e-5)
    assert fit.iterations == 20
