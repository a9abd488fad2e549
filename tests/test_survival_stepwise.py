"""Tests for histoprog.survival.stepwise against MASS::stepAIC on coxph fits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import R_COVARIATES, r_fixture, r_reference

from histoprog.errors import InputError
from histoprog.survival.stepwise import step_aic


@pytest.mark.parametrize("name", ["lung", "veteran", "ties", "ties_from_small"])
def test_step_aic_matches_r(name):
    ds, from_small = name.removesuffix("_from_small"), name.endswith("_from_small")
    df, ref = r_reference(ds)
    r = ref["stepAIC_from_small"] if from_small else ref["stepAIC"]
    start = r["start"] if from_small else None
    res = step_aic(df, "time", "event", list(R_COVARIATES[ds]), start=start)
    assert list(res.selected) == list(r["selected"])
    assert abs(res.aic - r["final_AIC"]) <= 1e-6 * r["final_AIC"]
    assert list(res.path["step"]) == [p["step"] for p in r["path"]]
    np.testing.assert_allclose(res.path["aic"], [p["AIC"] for p in r["path"]], rtol=1e-9)
    for p, (_, row) in zip(r["path"], res.path.iterrows(), strict=True):
        if p.get("deviance") is not None:
            assert abs(row["deviance"] - p["deviance"]) <= 1e-6 * max(p["deviance"], 1e-3)
    if "final_coefficients" in r:
        coefs = dict(zip(res.fit.terms, res.fit.coef, strict=True))
        for k, v in r["final_coefficients"].items():
            assert abs(coefs[k] - v) <= 1e-6 * abs(v)


def test_backward_forward_and_lower():
    df = pd.read_csv(r_fixture("ties.csv"))
    covs = list(R_COVARIATES["ties"])
    back = step_aic(df, "time", "event", covs, direction="backward")
    assert all(s.startswith("-") for s in back.path["step"][1:])
    fwd = step_aic(df, "time", "event", covs, start=[], direction="forward")
    assert all(s.startswith("+") for s in fwd.path["step"][1:])
    kept = step_aic(df, "time", "event", covs, lower=["x2"])
    assert "x2" in kept.selected


def test_bad_terms():
    df = pd.read_csv(r_fixture("ties.csv"))
    with pytest.raises(InputError, match="start terms.*not in the covariates"):
        step_aic(df, "time", "event", ["b1"], start=["b2"])
    with pytest.raises(InputError, match="direction"):
        step_aic(df, "time", "event", ["b1"], direction="sideways")
