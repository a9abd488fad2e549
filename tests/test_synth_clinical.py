"""Planted survival models: CRS, event rates, and recovery of the planted coefficients."""

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from lifelines.statistics import logrank_test

from histoprog.errors import InputError
from histoprog.synth.clinical import (
    CRLM_MODEL,
    HCC_MODEL,
    crlm_clinical,
    crlm_model,
    crs_points,
    draw_survival,
    hcc_design,
    hcc_patient,
)
from histoprog.synth.cohort import make_patient
from histoprog.synth.seeding import rng_for
from histoprog.synth.spec import parse_spec


def test_crs_points():
    base = {
        "node_positive": 0,
        "dfi_months": 24,
        "n_metastases": 1,
        "max_diameter_cm": 3,
        "cea": 10,
    }
    assert crs_points(base) == 0
    worst = {
        "node_positive": 1,
        "dfi_months": 11.9,
        "n_metastases": 2,
        "max_diameter_cm": 5.1,
        "cea": 201,
    }
    assert crs_points(worst) == 5
    assert crs_points({**base, "dfi_months": 12, "max_diameter_cm": 5, "cea": 200}) == 0


def test_clinical_variables_are_plausible():
    rows = pd.DataFrame([crlm_clinical(rng_for(1, "c", i)) for i in range(400)])
    assert rows.node_positive.isin([0, 1]).all() and rows.n_metastases.min() >= 1
    crs = rows.apply(crs_points, axis=1)
    assert 0.15 < (crs >= 3).mean() < 0.5
    assert 0.3 < (rows.dfi_months < 12).mean() < 0.7


@pytest.fixture(scope="module")
def crlm_patients():
    spec = parse_spec(
        {"name": "stat", "n_patients": 360, "seed": 9, "grid": {"rows": [22, 26], "cols": [22, 26]}}
    )
    rows = []
    for i in range(spec.n_patients):
        p = make_patient(spec, i)
        rows.append(
            {
                **p.design,
                "time": p.time,
                "event": p.event,
                "lp": p.lp,
                **{k: p.sofs[k] for k in CRLM_MODEL.cutpoints},
            }
        )
    return pd.DataFrame(rows)


def test_crlm_event_rate_and_horizon(crlm_patients):
    assert 0.40 <= crlm_patients.event.mean() <= 0.68
    assert crlm_patients.time.max() <= 120
    for col in CRLM_MODEL.coefficients:
        assert 0.15 < crlm_patients[col].mean() < 0.85, col  # cutpoints split the cohort


def test_planted_crlm_model_is_recovered(crlm_patients):
    cols = list(CRLM_MODEL.coefficients)
    fit = CoxPHFitter().fit(crlm_patients[[*cols, "time", "event"]], "time", "event")
    for col, beta in CRLM_MODEL.coefficients.items():
        assert np.sign(fit.params_[col]) == np.sign(beta), col
        assert abs(fit.params_[col] - beta) < 0.45, (col, fit.params_[col])
        assert fit.summary.loc[col, "p"] < 0.01, col


def test_score_of_planted_sofs_separates_a_validation_half(crlm_patients):
    """Fit on 60 discovery patients, log-rank on the next 60 (the demo's later test)."""
    sofs = [c for c in CRLM_MODEL.coefficients if c != "crs_high"]
    disc, val = crlm_patients.iloc[:60], crlm_patients.iloc[60:120]
    fit = CoxPHFitter().fit(disc[[*sofs, "time", "event"]], "time", "event")
    cut = np.median(disc[sofs] @ fit.params_)
    high = (val[sofs] @ fit.params_) >= cut
    p = logrank_test(val.time[high], val.time[~high], val.event[high], val.event[~high]).p_value
    assert p < 0.05


def test_planted_hcc_model_is_recovered():
    rows = []
    for i in range(400):
        risk, clin = hcc_patient(rng_for(5, "clinical", i))
        x = hcc_design(risk, clin)
        t, e, _ = draw_survival(x, HCC_MODEL, rng_for(5, "survival", i))
        rows.append({**x, "time": t, "event": e})
    df = pd.DataFrame(rows)
    assert 0.5 <= df.event.mean() <= 0.75
    fit = CoxPHFitter().fit(df, "time", "event")
    assert abs(fit.params_["risk"] - HCC_MODEL.coefficients["risk"]) < 0.3
    # Both MIL training classes exist: good (no recurrence, >= 48 months), poor (< 19.2).
    good = ((df.event == 0) & (df.time >= 48)).mean()
    poor = ((df.event == 1) & (df.time < 19.2)).mean()
    assert good > 0.15 and poor > 0.15


def test_sof_effect_scales_the_planted_sof_coefficients_only():
    scaled = crlm_model(2.5).coefficients
    for term, beta in CRLM_MODEL.coefficients.items():
        assert scaled[term] == pytest.approx(beta if term == "crs_high" else 2.5 * beta)
    spec = {"name": "c", "n_patients": 2, "seed": 1}
    assert parse_spec({**spec, "sof_effect": 2.5}).sof_effect == 2.5
    with pytest.raises(InputError, match="sof_effect"):
        parse_spec({**spec, "sof_effect": -1})
