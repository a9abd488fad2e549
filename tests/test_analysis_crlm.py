"""CRLM analysis (histoprog.analysis.crlm, crlm_model, outcome) on small generated cohorts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from histoprog.analysis.crlm import run_crlm
from histoprog.analysis.crlm_model import collinearity, fit_discovery, score_cohort
from histoprog.analysis.crlm_settings import CRLMSettings
from histoprog.analysis.cutpoints import cutpoint_table
from histoprog.analysis.features import Cohort, exclusions
from histoprog.analysis.outcome import Outcome, apply_horizon
from histoprog.errors import InputError
from histoprog.survival import concordance, coxph

FEATURES = ("overall_A", "interaction_A", "overall_B", "noise_1", "noise_2")


def make_cohort(name: str, role: str, n: int = 240, seed: int = 0) -> Cohort:
    """A cohort with one planted prognostic feature (overall_A > 0.5, log HR 1.3).

    interaction_A is overall_A plus a little noise (collinear, r > 0.9); overall_B and the
    noise features are unrelated to survival.
    """
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 1, n)
    clin = pd.DataFrame(
        {
            "patient_id": [f"{name}-{i:03d}" for i in range(n)],
            "age": rng.integers(30, 85, n),
            "sex": rng.choice(["F", "M"], n),
            "node_positive": rng.integers(0, 2, n),
            "dfi_months": rng.choice([0.0, 6.0, 24.0], n),
            "n_metastases": rng.integers(1, 4, n),
            "max_diameter_cm": rng.uniform(1, 8, n).round(1),
            "cea": rng.choice([10.0, 300.0], n, p=[0.8, 0.2]),
            "preop_chemo": rng.integers(0, 2, n),
            "adjuvant_chemo": rng.integers(0, 2, n),
        }
    )
    lp = 1.3 * (a > 0.5)
    t_event = 40 * rng.exponential(size=n) / np.exp(lp)
    t_cens = rng.uniform(20, 150, n)
    clin["os_months"] = np.round(np.minimum(t_event, t_cens), 2)
    clin["os_event"] = (t_event <= t_cens).astype(int)
    clin["overall_A"] = a
    clin["interaction_A"] = a + rng.normal(0, 0.05, n)
    clin["overall_B"] = rng.uniform(0, 1, n)
    clin["noise_1"] = rng.normal(size=n)
    clin["noise_2"] = rng.gamma(2.0, size=n)
    return Cohort(name, role, clin, FEATURES, exclusions(name, [], "input", []))


FAST = CRLMSettings(calibration_bootstrap_reps=20, calibration_group_size=60)


def horizon(cohort: Cohort) -> pd.DataFrame:
    """The cohort's table as the analysis sees it (censored at the 120-month horizon)."""
    return apply_horizon(cohort, FAST.outcome, FAST.horizon_months, FAST.horizon_policy).data


@pytest.fixture(scope="module")
def result():
    return run_crlm(
        [make_cohort("disc", "discovery", seed=1), make_cohort("val", "validation", seed=2)], FAST
    )


def test_planted_feature_is_selected(result):
    m = result.model
    # maxstat-optimised noise features can pass p < 0.05 by chance; the planted one must be in
    assert "overall_A_high" in m.selected
    assert m.selected[0] == "overall_A_high"  # strongest first: candidates in feature order
    assert abs(m.cutpoints["overall_A"] - 0.5) < 0.08
    # interaction_A is a candidate too but collinear with overall_A: the overall_ one stays
    assert "interaction_A" in m.candidates and m.collinear_dropped == ("interaction_A",)
    assert m.coefficients["overall_A_high"] == pytest.approx(1.3, abs=0.45)
    lr = result.tables["logrank"]
    val = lr[(lr["cohort"] == "val") & (lr["analysis"] == "sof_risk_group")].iloc[0]
    assert val["p"] < 1e-4 and val["hr"] > 2


def test_contract_columns(result):
    t = result.tables
    for name in ("univariate_cox",):
        assert {"hr", "hr_lower", "hr_upper", "p_wald", "p_lrt"} <= set(t[name].columns)
    assert {"auc", "se"} <= set(t["time_roc"].columns)
    assert "p" in t["time_roc_compare"].columns and "p" in t["logrank"].columns
    assert set(t["time_roc"]["marker"]) == {"sof_score", "crs", "combined_grade"}
    assert sorted(t["time_roc"]["time"].unique()) == [60, 96]
    assert set(result.multivariate) == {"disc", "val"}
    mv = result.multivariate["val"]
    assert list(mv["term"]) == ["sof_high", "crs_high", "age", "sex_M", "preop_chemo"]
    model = result.model_json()
    for key in ("sof_cutpoints", "selected_features", "coefficients", "score_cutoff"):
        assert key in model
    assert model["cohorts"]["val"]["n_scored"] == 240


def test_risk_scores_are_the_uncentred_linear_predictor(result):
    rs = result.tables["risk_scores"]
    beta = pd.Series(result.model.coefficients)
    assert np.allclose(rs["score"], rs[list(beta.index)].to_numpy() @ beta.to_numpy())
    assert ((rs["score"] >= result.model.cutoff) == (rs["risk_group"] == "High")).all()
    assert set(rs["grade_label"].dropna()) <= {"Low", "Mid", "High"}


def test_univariate_matches_a_direct_cox_fit(result):
    uni = result.tables["univariate_cox"].set_index("term")
    data = make_cohort("disc", "discovery", seed=1).data
    data["b"] = (data["overall_B"] > result.model.cutpoints["overall_B"]).astype(float)
    fit = coxph(data, "os_months", "os_event", ["b"])
    assert uni.loc["overall_B_high", "hr"] == pytest.approx(fit.hr[0], rel=1e-9)
    assert uni.loc["overall_B_high", "p_lrt"] == pytest.approx(fit.lr_p, rel=1e-9)


def test_model_coefficients_are_the_final_stepwise_fit(result):
    coefs = result.tables["model_coefficients"].set_index("term")
    assert list(coefs.index) == list(result.model.selected)
    for col in ("coef", "se", "hr", "hr_lower", "hr_upper", "p_wald", "concordance"):
        assert col in coefs.columns
    data = horizon(make_cohort("disc", "discovery", seed=1))
    for f, cut in result.model.cutpoints.items():
        data[f + "_high"] = (data[f] > cut).astype(float)
    fit = coxph(data, "os_months", "os_event", list(result.model.selected))
    np.testing.assert_allclose(coefs["coef"], fit.coef, rtol=1e-9)
    np.testing.assert_allclose(coefs["se"], fit.se, rtol=1e-9)
    np.testing.assert_allclose(coefs["p_wald"], fit.p_wald, rtol=1e-9)
    c = concordance(data["os_months"], data["os_event"], fit.linear_predictor).c
    np.testing.assert_allclose(coefs["concordance"], c, rtol=1e-12)
    assert c > 0.6


def test_validation_univariate_uses_the_discovery_cutpoints(result):
    assert set(result.validation_univariate) == {"val"}
    uni = result.validation_univariate["val"]
    assert list(uni["term"]) == list(result.model.selected)
    assert (uni["cohort"] == "val").all() and (uni["kind"] == "sof").all()
    data = horizon(make_cohort("val", "validation", seed=2))
    term = result.model.selected[0]
    feature = term.removesuffix("_high")
    data["b"] = (data[feature] > result.model.cutpoints[feature]).astype(float)
    fit = coxph(data, "os_months", "os_event", ["b"])
    row = uni.set_index("term").loc[term]
    assert row["feature"] == feature and row["n"] == 240
    assert row["hr"] == pytest.approx(fit.hr[0], rel=1e-9)
    assert row["p_lrt"] == pytest.approx(fit.lr_p, rel=1e-9)


def test_collinearity_rules():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    d = pd.DataFrame(
        {
            "overall_A": x,
            "distal_A": x + rng.normal(0, 0.1, 200),
            "interaction_B": -x + rng.normal(0, 0.1, 200),
            "distal_C": rng.normal(size=200),
        }
    )
    feats = list(d.columns)
    # overall_A vs a non-overall: the non-overall goes; two non-overall: larger LRT p goes
    p = {"overall_A": 0.04, "distal_A": 0.001, "interaction_B": 0.01, "distal_C": 0.02}
    table, kept = collinearity(d, feats, feats, p, 0.7)
    assert kept == ["overall_A", "distal_C"]
    _, kept = collinearity(d, feats, ["distal_A", "interaction_B", "distal_C"], p, 0.7)
    assert kept == ["distal_A", "distal_C"]
    assert table["collinear"].sum() == 3
    r = table.set_index(["feature_a", "feature_b"]).loc[("overall_A", "distal_A"), "r"]
    assert r == pytest.approx(np.corrcoef(d["overall_A"], d["distal_A"])[0, 1])


def test_horizon_policies():
    c = make_cohort("disc", "discovery", n=60)
    over = c.data["os_months"] > 40
    assert over.any()
    os_ = Outcome("os_months", "os_event")
    cens = apply_horizon(c, os_, 40, "censor")
    assert cens.data["os_months"].max() == 40
    assert (cens.data.loc[over, "os_event"] == 0).all() and len(cens.data) == 60
    drop = apply_horizon(c, os_, 40, "drop")
    assert len(drop.data) == 60 - over.sum()
    assert list(drop.exclusions["patient_id"]) == list(c.data.loc[over, "patient_id"])
    assert (drop.exclusions["step"] == "horizon").all()


def test_unusable_features_are_skipped_with_a_reason():
    c = make_cohort("disc", "discovery", n=120)
    d = c.data.assign(all_nan=np.nan, constant=0.2, rare=np.r_[np.ones(5), np.zeros(115)])
    feats = ["overall_A", "all_nan", "constant", "rare"]
    cuts = cutpoint_table(d, FAST.outcome, feats, FAST.minprop).set_index("feature")
    assert cuts.loc["overall_A", "status"] == "ok"
    assert cuts.loc["all_nan", "reason"] == "all values missing"
    assert "constant (0.2)" in cuts.loc["constant", "reason"]
    assert "10%" in cuts.loc["rare", "reason"]


def test_missing_feature_values_are_excluded_not_dropped_silently():
    c = make_cohort("disc", "discovery", n=150, seed=1)
    data = c.data.copy()
    data.loc[[3, 7], "overall_A"] = np.nan
    c = Cohort(c.name, c.role, data, c.features, c.exclusions)
    model, excl = fit_discovery(c, FAST)
    assert sorted(excl["patient_id"]) == ["disc-003", "disc-007"]
    assert excl["reason"].str.contains("overall_A").all()
    scored, excl = score_cohort(c, model, FAST)
    assert len(scored.table) == 148 and len(excl) == 2


def test_too_few_events():
    c = make_cohort("disc", "discovery", n=60)
    data = c.data.assign(os_event=0)
    data.loc[:4, "os_event"] = 1
    with pytest.raises(InputError, match=r"only 5 events among 60 patients"):
        fit_discovery(Cohort("disc", "discovery", data, c.features, c.exclusions), FAST)


def test_no_prognostic_feature():
    c = make_cohort("disc", "discovery", n=100)
    c = Cohort(c.name, c.role, c.data, ("noise_1",), c.exclusions)
    with pytest.raises(InputError, match="no feature has a univariate likelihood-ratio p"):
        fit_discovery(c, CRLMSettings(candidate_p=1e-6))


def test_validation_cohort_missing_a_model_feature():
    disc = make_cohort("disc", "discovery", seed=1)
    val = make_cohort("val", "validation", seed=2)
    val = Cohort("val", "validation", val.data.drop(columns="overall_A"), ("overall_B",),
                 val.exclusions)  # fmt: skip
    with pytest.raises(
        InputError, match=r"cohort 'val'.*lacks the model feature\(s\) \['overall_A'\]"
    ):
        run_crlm([disc, val], FAST)


def test_exactly_one_discovery_cohort():
    with pytest.raises(InputError, match="exactly one discovery cohort, got 0"):
        run_crlm([make_cohort("val", "validation")], FAST)


@pytest.mark.parametrize(
    ("factors", "match"),
    [
        (("stage",), "clinical factor 'stage'.*is not a column"),
        (("grade3",), "is text with 3 values"),
        (("empty",), "has no value for any patient"),
    ],
)
def test_bad_clinical_factors(factors, match):
    c = make_cohort("disc", "discovery", n=150, seed=1)
    data = c.data.assign(grade3=np.resize(["G1", "G2", "G3"], 150), empty=np.nan)
    c = Cohort(c.name, c.role, data, c.features, c.exclusions)
    with pytest.raises(InputError, match=match):
        run_crlm([c], CRLMSettings(clinical_factors=factors, calibration_bootstrap_reps=0))


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"horizon_policy": "keep"}, "crlm.horizon_policy"),
        ({"cutoff_test": "score"}, "crlm.cutoff_test"),
        ({"cutoff_range": [0.9, 0.1]}, "crlm.cutoff_range"),
        ({"bogus": 1}, r"unknown key\(s\) \['bogus'\]"),
        ({"crs": {"cea_level": "x"}}, "crlm.crs"),
    ],
)
def test_bad_settings(values, match):
    with pytest.raises(InputError, match=match):
        CRLMSettings.from_mapping(values)
