"""Tests for histoprog.survival.maxstat against maxstat::maxstat.test / survminer."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import R_COVARIATES, r_reference

from histoprog.errors import InputError
from histoprog.survival.maxstat import maxstat_cutpoint, maxstat_cutpoints


def _cases():
    for ds in ("lung", "veteran"):
        for cov in R_COVARIATES[ds]:
            yield ds, cov
    for cov in ("x1", "x2", "b1"):  # the ones make_ties.R cuts
        yield "ties", cov


@pytest.mark.parametrize(("ds", "cov"), list(_cases()))
def test_cutpoint_matches_r(ds, cov):
    df, ref = r_reference(ds)
    r = ref["maxstat_cutpoint"][cov]
    res = maxstat_cutpoint(df["time"], df["event"], df[cov], feature=cov)
    assert res.cutpoint == r["cutpoint"]
    assert abs(res.statistic - r["statistic"]) <= 1e-9 * r["statistic"]
    assert abs(res.p_lau94 - r["p_Lau94"]) <= 1e-9 * max(r["p_Lau94"], 1e-12)
    assert (res.n_low, res.n_high) == (r["n_low"], r["n_high"])
    if ds == "ties":  # make_ties.R writes every cut and its statistic
        np.testing.assert_array_equal(res.cuts, np.atleast_1d(r["cuts"]))
        np.testing.assert_allclose(res.stats, np.atleast_1d(r["stats"]), rtol=1e-9)
    else:
        assert len(res.cuts) == r["n_candidate_cuts"]


def test_table_of_features():
    df, ref = r_reference("ties")
    tab = maxstat_cutpoints(df, "time", "event", ["x1", "x2"])
    assert list(tab["feature"]) == ["x1", "x2"]
    assert tab.loc[0, "cutpoint"] == ref["maxstat_cutpoint"]["x1"]["cutpoint"]


def test_missing_values_are_dropped():
    df, ref = r_reference("ties")
    df = df.copy()
    df.loc[:4, "x1"] = np.nan
    res = maxstat_cutpoint(df["time"], df["event"], df["x1"], feature="x1")
    assert res.n == len(df) - 5


def test_no_admissible_cut():
    t = np.arange(1.0, 21.0)
    e = np.ones(20)
    x = np.r_[np.zeros(19), 1.0]  # only a 19/1 split: below minprop
    with pytest.raises(InputError, match="feature 'x'.*no cutpoint with at least 10%"):
        maxstat_cutpoint(t, e, x)
    with pytest.raises(InputError, match="constant"):
        maxstat_cutpoint(t, e, np.ones(20))


def test_bad_columns():
    df, _ = r_reference("ties")
    with pytest.raises(InputError, match="column 'nope'"):
        maxstat_cutpoints(df, "time", "event", ["nope"])
    df = df.assign(s=["a"] * len(df))
    with pytest.raises(InputError, match="column 's'.*not numeric"):
        maxstat_cutpoints(df, "time", "event", ["s"])
