"""Tests for histoprog.survival.stepwise against MASS::stepAIC on coxph fits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from histoprog.errors import InputError
from histoprog.survival.stepwise import step_aic

REF = Path(__file__).resolve().parents[2] / "shared" / "reference"
FIX = Path(__file__).parent / "fixtures" / "r"


def _cases():
    for ds in ("lung", "veteran"):
        if (REF / f"{ds}.json").exists():
            ref = json.loads((REF / f"{ds}.json").read_text())
            yield (
                ds,
                pd.read_csv(REF / f"{ds}.csv"),
                ref["meta"]["covariates"],
                None,
                ref["stepAIC"],
            )
    ref = json.loads((FIX / "ties.json").read_text())
    df = pd.read_csv(FIX / "ties.csv")
    covs = ref["meta"]["covariates"]
    yield "ties", df, covs, None, ref["stepAIC"]
    small = ref["stepAIC_from_small"]
    yield "ties_from_small", df, covs, small["start"], small


@pytest.mark.parametrize(("name", "df", "covs", "start", "r"), list(_cases()), ids=lambda v: "")
def test_step_aic_matches_r(name, df, covs, start, r):
    res = step_aic(df, "time", "event", covs, start=start)
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
    df = pd.read_csv(FIX / "ties.csv")
    covs = ["b1", "b2", "x1", "x2", "g_b", "g_c"]
    back = step_aic(df, "time", "event", covs, direction="backward")
    assert all(s.startswith("-") for s in back.path["step"][1:])
    fwd = step_aic(df, "time", "event", covs, start=[], direction="forward")
    assert all(s.startswith("+") for s in fwd.path["step"][1:])
    kept = step_aic(df, "time", "event", covs, lower=["x2"])
    assert "x2" in kept.selected


def test_bad_terms():
    df = pd.read_csv(FIX / "ties.csv")
    with pytest.raises(InputError, match="start terms.*not in the covariates"):
        step_aic(df, "time", "event", ["b1"], start=["b2"])
    with pytest.raises(InputError, match="direction"):
        step_aic(df, "time", "event", ["b1"], direction="sideways")
