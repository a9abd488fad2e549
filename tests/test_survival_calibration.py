"""Tests for histoprog.survival.calibration against rms::calibrate(cmethod = "KM").

Non-bootstrap parts (predicted survival, cut points, groups, KM, its SE, mean predicted)
must match R: KM and its SE to 1e-12; predictions, cut points and group means to 2e-5
relative, because rms's ``cph`` stops Newton-Raphson early (coefficients ~4e-6 relative
from the converged values) while we converge fully.
Bootstrap parts use a different RNG, so the optimism is compared loosely: within 4 Monte-
Carlo standard errors of the difference of two independent bootstrap means, the per-draw
SD of training - test estimated from our draws: |ours - R| <= 4 sd_b sqrt(1/B + 1/B_R).
"""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from conftest import r_fixture  # noqa: E402

from histoprog.errors import InputError  # noqa: E402
from histoprog.survival import calibration as cal  # noqa: E402

# the calibrate.json cases and the data each is computed on
DATA = {"lung": "lung.csv", "ties": "ties.csv", "ties_one_cov": "ties.csv"}


def _case(key):
    r = json.loads(r_fixture("calibrate.json").read_text())[key]
    covs = r["covariates"] if isinstance(r["covariates"], list) else [r["covariates"]]
    return pd.read_csv(r_fixture(DATA[key])), r, covs


@pytest.mark.parametrize("key", list(DATA))
def test_non_bootstrap_parts_match_rms(key):
    df, r, covs = _case(key)
    res = cal.calibrate(df, "time", "event", covs, r["u"], m=r["m"], B=0)
    np.testing.assert_allclose(res.predicted, r["predicted"], rtol=2e-5)
    np.testing.assert_allclose(res.cuts, r["cuts"], rtol=2e-5)
    t = res.table
    np.testing.assert_allclose(t["mean_predicted"], r["mean_predicted"], rtol=2e-5)
    np.testing.assert_allclose(t["km"], r["KM"], rtol=1e-12)
    np.testing.assert_allclose(t["std_err"], r["std_err"], rtol=1e-12)
    np.testing.assert_allclose(t["index_orig"], r["index_orig"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("key", ["ties", "ties_one_cov"])
def test_bootstrap_optimism_close_to_rms(key):
    df, r, covs = _case(key)
    B = 300
    res = cal.calibrate(df, "time", "event", covs, r["u"], m=r["m"], B=B, seed=11)
    t = res.table
    assert res.n_boot + res.b_failed == B
    diff = np.abs(t["mean_optimism"].to_numpy() - np.array(r["mean_optimism"]))
    tol = 4 * t["optimism_sd"].to_numpy() * np.sqrt(1 / B + 1 / r["B"])
    assert np.all(diff <= tol), (diff, tol)
    np.testing.assert_allclose(t["km_corrected"], t["km"] - t["mean_optimism"])


def test_seeded_and_deterministic():
    df, r, covs = _case("ties")
    a = cal.calibrate(df, "time", "event", covs, 30, m=40, B=20, seed=5).table
    b = cal.calibrate(df, "time", "event", covs, 30, m=40, B=20, seed=5).table
    pd.testing.assert_frame_equal(a, b)


def test_cut2_and_groupkm_edge_cases():
    x = np.array([0.1, 0.2, 0.2, 0.5, 0.9])
    idx, ng = cal._cut2(x, np.array([0.0, 0.2, 1.0]))
    assert ng == 2 and list(idx) == [0, 1, 1, 1, 1]  # 0.2 goes up: [0, 0.2), [0.2, 1]
    # a group with a single patient gives NA KM
    mean, n, _, km, _ = cal._groupkm(x, np.arange(1.0, 6), np.ones(5), np.array([0, 0.15, 1]), 3)
    assert np.isnan(km[0]) and n[0] == 0 and mean[0] == 0.1


def test_plot_and_errors():
    df, r, covs = _case("ties")
    res = cal.calibrate(df, "time", "event", covs, 30, m=40, B=5, seed=1)
    assert res.plot().get_xlabel().startswith("predicted survival")
    with pytest.raises(InputError, match="outside the follow-up"):
        cal.calibrate(df, "time", "event", covs, 1e6, B=0)
    few = df.assign(event=0)
    few.loc[:3, "event"] = 1
    with pytest.raises(InputError, match="only 4 events"):
        cal.calibrate(few, "time", "event", covs, 30, B=0)
