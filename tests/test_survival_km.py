"""Tests for histoprog.survival.km against survfit / survdiff (reference JSONs, R fixtures)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import R_COVARIATES, r_reference

from histoprog.errors import InputError
from histoprog.survival.cox import coxph
from histoprog.survival.km import kaplan_meier, logrank, median_followup

DATASETS = ["lung", "veteran"]


def _near(a, b, rtol=1e-9):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=rtol)


@pytest.mark.parametrize("ds", DATASETS)
def test_km_matches_survfit(ds):
    df, ref = r_reference(ds)
    km = ref["km"]
    res = kaplan_meier(df, "time", "event")
    at = res.at(km["at_times"]["time"])
    for ours, theirs in (("n_risk", "n_risk"), ("n_event", "n_event")):
        assert list(at[ours]) == list(km["at_times"][theirs])
    for ours, theirs in (
        ("surv", "surv"),
        ("std_err", "std_err"),
        ("lower", "lower95"),
        ("upper", "upper95"),
    ):
        _near(at[ours], km["at_times"][theirs])
    for ours, theirs in (
        (res.median, km["median"]),
        (res.median_lower, km["median_lower95"]),
        (res.median_upper, km["median_upper95"]),
    ):
        assert np.isnan(ours) if theirs is None else ours == theirs
    ll = kaplan_meier(df, "time", "event", conf_type="log-log").at(km["at_times"]["time"])
    _near(ll["lower"], km["loglog_ci"]["lower95"])
    _near(ll["upper"], km["loglog_ci"]["upper95"])


@pytest.mark.parametrize("ds", DATASETS)
def test_km_by_group(ds):
    df, ref = r_reference(ds)
    g = ref["km"]["by_cutpoint_group"]
    for name, mask in (
        ("low", df[g["covariate"]] <= g["cutpoint"]),
        ("high", df[g["covariate"]] > g["cutpoint"]),
    ):
        at = kaplan_meier(df[mask], "time", "event").at(g[name]["time"])
        _near(at["surv"], g[name]["surv"])
        _near(at["std_err"], g[name]["std_err"])
        _near(at["lower"], g[name]["lower95"])
        assert list(at["n_risk"]) == g[name]["n_risk"]


def test_km_ties_fixture():
    df, ref = r_reference("ties")
    km = ref["km"]
    res = kaplan_meier(df, "time", "event")
    at = res.at(km["times"])
    _near(at["surv"], km["surv"])
    _near(at["std_err"], km["std_err"])
    _near(at["lower"], km["lower95"])
    _near(at["upper"], km["upper95"])
    assert list(at["n_risk"]) == km["n_risk"]
    assert (res.median, res.median_lower, res.median_upper) == (
        km["median"],
        km["median_lower95"],
        km["median_upper95"],
    )


@pytest.mark.parametrize("ds", [*DATASETS, "ties"])
def test_followup_matches_reverse_km(ds):
    df, ref = r_reference(ds)
    fu = ref["followup"]
    res = median_followup(df, "time", "event")
    for ours, theirs in (
        (res.median, fu["median"]),
        (res.median_lower, fu["lower95"]),
        (res.median_upper, fu["upper95"]),
    ):
        assert np.isnan(ours) if theirs is None else ours == theirs


def _logrank_cases():
    for ds in DATASETS:
        for cov in R_COVARIATES[ds]:
            for split in ("median_split", "cutpoint_split"):
                yield ds, cov, split


@pytest.mark.parametrize(("ds", "cov", "split"), list(_logrank_cases()))
def test_logrank_two_groups(ds, cov, split):
    df, ref = r_reference(ds)
    r = ref["logrank"][cov][split]
    df = df.assign(high=(df[cov] > r["threshold"]).astype(int))
    res = logrank(df, "time", "event", "high")
    assert abs(res.chisq - r["chisq"]) <= 1e-9 * r["chisq"]
    assert abs(res.p - r["p"]) <= 1e-6 * r["p"]
    tab = res.table.set_index("group")
    assert tab.loc[0, "n"] == r["n"]["low"] and tab.loc[1, "n"] == r["n"]["high"]
    assert tab.loc[1, "observed"] == r["observed"]["high"]
    _near(
        [tab.loc[0, "expected"], tab.loc[1, "expected"]],
        [r["expected"]["low"], r["expected"]["high"]],
    )
    fit = coxph(df, "time", "event", ["high"])
    assert abs(fit.hr[0] - r["HR_high_vs_low"]) <= 1e-6 * r["HR_high_vs_low"]
    assert abs(fit.p_wald[0] - r["cox_wald_p"]) <= 1e-6 * r["cox_wald_p"]


def test_logrank_ties_two_and_three_groups():
    df, ref = r_reference("ties")
    r2 = ref["logrank"]["b1"]
    res = logrank(df, "time", "event", "b1")
    assert abs(res.chisq - r2["chisq"]) <= 1e-9 * r2["chisq"]
    _near(res.table["expected"], r2["expected"])
    r3 = ref["logrank"]["grp"]
    grp = np.where(df["g_b"] == 1, "b", np.where(df["g_c"] == 1, "c", "a"))
    res = logrank(df.assign(grp=grp), "time", "event", "grp")
    assert res.df == 2
    assert abs(res.chisq - r3["chisq"]) <= 1e-9 * r3["chisq"]
    assert abs(res.p - r3["p"]) <= 1e-9 * r3["p"]
    _near(res.table["expected"], r3["expected"])
    assert list(res.table["observed"]) == r3["observed"]


def test_km_failures():
    df, _ = r_reference("ties")
    with pytest.raises(InputError, match="single group"):
        logrank(df.assign(g=1), "time", "event", "g")
    with pytest.raises(InputError, match="no patient is censored"):
        median_followup(df.assign(event=1), "time", "event")
    with pytest.raises(InputError, match="conf_type"):
        kaplan_meier(df, "time", "event", conf_type="plain")
