"""Tests for histoprog.survival.maxstat against maxstat::maxstat.test / survminer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from histoprog.errors import InputError
from histoprog.survival.maxstat import maxstat_cutpoint, maxstat_cutpoints

REF = Path(__file__).resolve().parents[2] / "shared" / "reference"
FIX = Path(__file__).parent / "fixtures" / "r"


def _data(ds):
    if ds == "ties":
        return pd.read_csv(FIX / "ties.csv"), json.loads((FIX / "ties.json").read_text())
    return pd.read_csv(REF / f"{ds}.csv"), json.loads((REF / f"{ds}.json").read_text())


def _cases():
    for ds in ("lung", "veteran", "ties"):
        path = FIX / "ties.json" if ds == "ties" else REF / f"{ds}.json"
        if path.exists():
            for cov in json.loads(path.read_text())["maxstat_cutpoint"]:
                yield ds, cov


@pytest.mark.parametrize(("ds", "cov"), list(_cases()))
def test_cutpoint_matches_r(ds, cov):
    df, ref = _data(ds)
    r = ref["maxstat_cutpoint"][cov]
    res = maxstat_cutpoint(df["time"], df["event"], df[cov], feature=cov)
    assert res.cutpoint == r["cutpoint"]
    assert abs(res.statistic - r["statistic"]) <= 1e-9 * r["statistic"]
    assert abs(res.p_lau94 - r["p_Lau94"]) <= 1e-9 * max(r["p_Lau94"], 1e-12)
    assert (res.n_low, res.n_high) == (r["n_low"], r["n_high"])
    if "n_candidate_cuts" in r:
        assert len(res.cuts) == r["n_candidate_cuts"]
    if "cuts" in r:
        np.testing.assert_array_equal(res.cuts, np.atleast_1d(r["cuts"]))
        np.testing.assert_allclose(res.stats, np.atleast_1d(r["stats"]), rtol=1e-9)


def test_table_of_features():
    df, ref = _data("ties")
    tab = maxstat_cutpoints(df, "time", "event", ["x1", "x2"])
    assert list(tab["feature"]) == ["x1", "x2"]
    assert tab.loc[0, "cutpoint"] == ref["maxstat_cutpoint"]["x1"]["cutpoint"]


def test_missing_values_are_dropped():
    df, ref = _data("ties")
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
    df, _ = _data("ties")
    with pytest.raises(InputError, match="column 'nope'"):
        maxstat_cutpoints(df, "time", "event", ["nope"])
    df = df.assign(s=["a"] * len(df))
    with pytest.raises(InputError, match="column 's'.*not numeric"):
        maxstat_cutpoints(df, "time", "event", ["s"])
