"""Generic cohort steps on a plain time/event table (cox_tables, groups, roc_tables, ...)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from histoprog.analysis.calibration_table import calibration_table
from histoprog.analysis.cox_tables import encode_factors, multivariate_cox, univariate_table
from histoprog.analysis.features import Cohort, exclusions
from histoprog.analysis.groups import group_survival
from histoprog.analysis.outcome import Outcome, apply_horizon
from histoprog.analysis.roc_tables import (
    LATE_NOTE,
    auc_table,
    compare_table,
    curve_times,
    late_table,
    marker_roc,
    split_times,
)
from histoprog.errors import InputError
from histoprog.survival import coxph, logrank, time_roc

OUT = Outcome("months", "dead")


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    n = 90
    risk = rng.normal(size=n)
    t_event = rng.exponential(40 * np.exp(-risk))
    t_cens = rng.uniform(10, 100, n)
    return pd.DataFrame(
        {
            "patient_id": [f"p{i:02d}" for i in range(n)],
            "months": np.round(np.minimum(t_event, t_cens), 2) + 0.01,
            "dead": (t_event <= t_cens).astype(int),
            "risk": risk,
            "high": (risk > 0).astype(float),
            "noise": np.where(np.arange(n) % 10 == 0, np.nan, rng.normal(size=n)),
            "one": 1.0,
            "group": np.resize(["a", "b", "c"], n),
            "sex": np.resize(["F", "M"], n),
        }
    )


def test_univariate_table_notes_constant_terms_last(table):
    uni = univariate_table(table, OUT, ["one", "high", "noise"], "x")
    assert list(uni["term"]) == ["high", "noise", "one"]
    assert list(uni["note"]) == ["", "", "constant"] and (uni["kind"] == "x").all()
    fit = coxph(table.dropna(subset=["noise"]), "months", "dead", ["noise"])
    row = uni.set_index("term").loc["noise"]
    assert row["n"] == 81 and row["p_lrt"] == pytest.approx(fit.lr_p, rel=1e-12)


def test_multivariate_cox_leaves_out_constant_terms(table):
    model = multivariate_cox(table, OUT, ["high", "one", "noise"])
    assert model.used == ("high", "noise") and model.constant == ("one",)
    tab = model.table("left out")
    assert list(tab["term"]) == ["high", "noise", "one"]
    assert list(tab["note"]) == ["", "", "left out"] and tab["n"].iloc[0] == 81
    fit = coxph(table.dropna(subset=["noise"]), "months", "dead", ["high", "noise"])
    assert tab["coef"].iloc[0] == pytest.approx(fit.coef[0], rel=1e-12)


def test_multivariate_cox_without_a_fit_is_noted(table):
    model = multivariate_cox(table.assign(twin=table["high"]), OUT, ["one", "high", "twin"])
    assert model.fit is None and "linear combination" in model.problem
    tab = model.table("constant")
    assert list(tab["term"]) == ["one", "high", "twin"]
    assert tab["note"].iloc[0] == "constant" and (tab["note"].iloc[1:] == model.problem).all()


def test_encode_factors(table):
    design, names = encode_factors(table, ["risk", "sex"], "cohort 'x'", "a.key")
    assert names == ["risk", "sex_M"] and design["sex_M"].sum() == 45
    with pytest.raises(InputError, match=r"text with 3 values.*list those in a.key"):
        encode_factors(table, ["group"], "cohort 'x'", "a.key")


def test_group_survival_three_groups(table):
    res = group_survival(table, OUT, "group", ["a", "b", "c"], 24.0, cohort="x", analysis="g")
    assert list(res.tests["comparison"]) == ["overall", "pairwise", "pairwise", "pairwise"]
    assert res.tests["p"].iloc[0] == pytest.approx(logrank(table, "months", "dead", "group").p)
    ab = table[table["group"].isin(["a", "b"])].assign(b=lambda d: (d["group"] == "b") * 1.0)
    assert res.tests["hr"].iloc[1] == pytest.approx(coxph(ab, "months", "dead", ["b"]).hr[0])
    assert list(res.groups["group"]) == ["a", "b", "c"] and "surv_24" in res.groups.columns


def test_group_survival_notes_an_empty_group(table):
    res = group_survival(table, OUT, "sex", ["F", "X"], 24.0, cohort="x", analysis="s")
    assert set(res.curves) == {"F"} and res.groups["n"].tolist() == [45, 0]
    assert res.tests["note"].iloc[0] != "" and np.isnan(res.tests["hr"].iloc[0])


def test_roc_tables(table):
    times, late = split_times([12.0, 36.0, 500.0], table["months"].to_numpy())
    assert times == [12.0, 36.0] and late == [500.0]
    res = marker_roc(table, OUT, {"risk": "risk", "noise": "noise"}, times)
    auc = auc_table(res)
    assert list(auc["n"]) == [90, 90, 81, 81] and (auc["note"] == "").all()
    ref = time_roc(table["months"], table["dead"], table["risk"], times)
    np.testing.assert_allclose(auc["auc"][:2], ref.auc, rtol=1e-12)
    late_rows = late_table(["risk", "noise"], late, 90)
    assert list(late_rows.columns) == ["marker", "time", "n", "note"]
    assert (late_rows["note"] == LATE_NOTE).all()
    paired = marker_roc(
        table.dropna(subset=["noise"]), OUT, {"risk": "risk", "noise": "noise"}, times
    )
    comp = compare_table(paired)
    assert list(comp[["marker_a", "marker_b"]].iloc[0]) == ["risk", "noise"] and len(comp) == 2
    assert compare_table({"risk": res["risk"]}).empty


def test_curve_times_stop_at_the_horizon_and_follow_up():
    t = np.arange(1.0, 101.0)
    assert curve_times(t, 6.0, None).tolist() == [6.0 * k for k in range(1, 16)]
    assert curve_times(t, 6.0, 30.0).tolist() == [6.0, 12.0, 18.0, 24.0, 30.0]


def test_calibration_table_notes_a_time_beyond_follow_up(table):
    cal, results = calibration_table(
        table, OUT, ["risk"], [24.0, 500.0], m=30, B=5, seed=0, cohort="x"
    )
    assert list(results) == [24.0]
    assert list(cal.columns[:2]) == ["cohort", "time"]
    last = cal[cal["time"] == 500.0].iloc[0]
    assert last["note"] != "" and last["cohort"] == "x"


def test_apply_horizon_rejects_an_unknown_policy(table):
    c = Cohort("x", "discovery", table, ("risk",), exclusions("x", [], "input", []))
    with pytest.raises(InputError, match="unknown value 'keep'"):
        apply_horizon(c, OUT, 50, "keep")
    assert apply_horizon(c, OUT, None, "censor") is c
