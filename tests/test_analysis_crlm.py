"""CRLM analysis steps (histoprog.analysis.crlm) on small generated cohorts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from histoprog.analysis.crlm import (
    CRLMSettings,
    apply_horizon,
    collinearity,
    fit_discovery,
    optimal_cutoff,
    run_crlm,
    score_cohort,
    sof_cutpoints,
)
from histoprog.analysis.features import Cohort, exclusions
from histoprog.errors import InputError
from histoprog.survival import coxph

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


FAST = CRLMSettings(calibration_B=20, calibration_m=60)


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


def test_cutoff_scan_equals_a_naive_loop():
    rng = np.random.default_rng(3)
    n = 80
    d = pd.DataFrame(
        {
            "patient_id": [f"p{i}" for i in range(n)],
            "score": rng.choice([-0.7, 0.0, 0.4, 1.1], n),
            "os_months": rng.exponential(30, n).round(1) + 0.1,
            "os_event": rng.integers(0, 2, n),
        }
    )
    s = CRLMSettings(cutoff_step=0.01)
    res = optimal_cutoff(d, "score", s)
    lo, hi = np.quantile(d["score"], [0.1, 0.9])
    best = (np.inf, None)
    for c in lo + 0.01 * np.arange(int(np.floor((hi - lo) / 0.01 + 1e-10)) + 1):
        g = (d["score"] >= c).astype(float)
        if g.nunique() < 2:
            continue
        p = coxph(d.assign(g=g), "os_months", "os_event", ["g"]).p_wald[0]
        if p < best[0]:
            best = (p, c)
    assert res.p == pytest.approx(best[0], rel=1e-12)
    assert res.cutoff == pytest.approx(best[1], abs=1e-12)


def test_cutoff_scan_lists_each_split_once_with_its_grid_run():
    """Runs of equal splits equal those of the materialised grid, values on grid points too."""
    rng = np.random.default_rng(5)
    n = 60
    score = np.r_[rng.normal(0, 1, n - 4).round(3), [0.0, 0.01, 0.02, 0.02]]
    d = pd.DataFrame(
        {
            "patient_id": [f"p{i}" for i in range(n)],
            "score": score,
            "os_months": rng.exponential(30, n).round(1) + 0.1,
            "os_event": rng.integers(0, 2, n),
        }
    )
    s = CRLMSettings(cutoff_step=0.01)
    scan = optimal_cutoff(d, "score", s).scan
    lo, hi = np.quantile(score, [0.1, 0.9])
    grid = lo + 0.01 * np.arange(int(np.floor((hi - lo) / 0.01 + 1e-10)) + 1)
    u = np.unique(score)
    k = np.searchsorted(u, grid, side="left")
    expected = [
        (grid[k == kk][0], grid[k == kk][-1], int((score >= u[kk]).sum()))
        for kk in np.unique(k)
        if 0 < kk < len(u)
    ]
    got = list(zip(scan["cutoff"], scan["last_c"], scan["n_high"], strict=True))
    assert len(got) == len(expected)
    for (c, last, high), (c0, last0, high0) in zip(got, expected, strict=True):
        assert (c, last, high) == (
            pytest.approx(c0, abs=1e-12),
            pytest.approx(last0, abs=1e-12),
            high0,
        )


def test_cutoff_scan_of_a_score_with_a_huge_range():
    """A near-infinite coefficient (complete separation) must not build a 1e12-point grid."""
    rng = np.random.default_rng(6)
    n = 40
    d = pd.DataFrame(
        {
            "patient_id": [f"p{i}" for i in range(n)],
            "score": rng.integers(0, 3, n) * 1e9,
            "os_months": rng.exponential(30, n).round(1) + 0.1,
            "os_event": rng.integers(0, 2, n),
        }
    )
    res = optimal_cutoff(d, "score", CRLMSettings())
    splits = {int((d["score"] >= 1e9).sum()), int((d["score"] >= 2e9).sum())}
    assert 1 <= len(res.scan) <= 2 and set(res.scan["n_high"]) <= splits
    assert 0 < res.cutoff <= 2e9


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
    cens = apply_horizon(c, CRLMSettings(horizon_months=40))
    assert cens.data["os_months"].max() == 40
    assert (cens.data.loc[over, "os_event"] == 0).all() and len(cens.data) == 60
    drop = apply_horizon(c, CRLMSettings(horizon_months=40, horizon_policy="drop"))
    assert len(drop.data) == 60 - over.sum()
    assert list(drop.exclusions["patient_id"]) == list(c.data.loc[over, "patient_id"])
    assert (drop.exclusions["step"] == "horizon").all()


def test_unusable_features_are_skipped_with_a_reason():
    c = make_cohort("disc", "discovery", n=120)
    d = c.data.assign(all_nan=np.nan, constant=0.2, rare=np.r_[np.ones(5), np.zeros(115)])
    cuts = sof_cutpoints(d, ["overall_A", "all_nan", "constant", "rare"], FAST).set_index("feature")
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
        run_crlm([c], CRLMSettings(clinical_factors=factors, calibration_B=0))


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
