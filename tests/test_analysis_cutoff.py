"""The risk-score cutoff scan (histoprog.analysis.cutoff) against the published R scan.

``tests/fixtures/r/cutoff.json`` is what CRLM-SPA's ``opti_cut`` grid and test give in R
(``tests/fixtures/r/make_cutoff.R``) on the three score tables of ``cutoff.csv``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from histoprog.analysis.cutoff import cutoff_grid, optimal_cutoff, r_signif
from histoprog.analysis.outcome import Outcome
from histoprog.errors import InputError
from histoprog.survival import coxph, logrank

FIX = Path(__file__).parent / "fixtures" / "r"
DATASETS = ("quantile_split", "continuous", "two_features")
OUTCOME = Outcome("time", "event")
OS = Outcome("os_months", "os_event")


def _published(dataset: str) -> tuple[pd.DataFrame, dict]:
    data = pd.read_csv(FIX / "cutoff.csv")
    ref = json.loads((FIX / "cutoff.json").read_text())["scans"][dataset]
    d = data[data["dataset"] == dataset].reset_index(drop=True)
    return d.assign(patient_id=[f"p{i}" for i in range(len(d))]), ref


@pytest.mark.parametrize("dataset", DATASETS)
def test_scan_matches_the_published_r_scan(dataset):
    d, ref = _published(dataset)
    step = 1 / ref["steps"]
    grid = cutoff_grid(d["score"].to_numpy(), (0.1, 0.9), step)
    assert grid.lo == pytest.approx(ref["lower_quantile"], abs=1e-14)
    assert grid.count == ref["count"]
    candidates = np.asarray(ref["candidates"])
    np.testing.assert_allclose(grid.at(np.arange(1, grid.count + 1)), candidates, atol=1e-13)
    res = optimal_cutoff(d, "score", OUTCOME, cutoff_range=(0.1, 0.9), step=step, test="wald")
    assert res.cutoff == pytest.approx(ref["cutoff"], abs=1e-13)
    assert res.p == pytest.approx(ref["cutoff_p"], rel=1e-6)
    # every R candidate lies in exactly one scanned run and has that run's p
    p = np.asarray(ref["p"])
    covered = np.zeros(len(candidates), dtype=int)
    for row in res.scan.itertuples():
        run = (candidates >= row.cutoff - 1e-12) & (candidates <= row.last_c + 1e-12)
        covered += run
        np.testing.assert_allclose(p[run], row.p, rtol=1e-6)
    assert (covered == 1).all()


def test_the_lower_quantile_is_never_the_cutoff():
    """On quantile_split the best split is at the lower quantile itself; R cannot pick it."""
    d, ref = _published("quantile_split")
    lo = ref["lower_quantile"]
    at_lo = coxph(d.assign(g=(d["score"] >= lo).astype(float)), "time", "event", ["g"])
    res = optimal_cutoff(d, "score", OUTCOME, cutoff_range=(0.1, 0.9), step=0.01, test="wald")
    assert at_lo.p_wald[0] < res.p / 1000
    assert res.cutoff == pytest.approx(lo + 0.01) and res.scan["cutoff"].min() > lo


def test_signif_matches_r():
    sig = json.loads((FIX / "cutoff.json").read_text())["signif"]
    assert [r_signif(x, 6) for x in sig["x"]] == sig["signif6"]


def _table(score: np.ndarray, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(score)
    return pd.DataFrame(
        {
            "patient_id": [f"p{i}" for i in range(n)],
            "score": score,
            "os_months": rng.exponential(30, n).round(1) + 0.1,
            "os_event": rng.integers(0, 2, n),
        }
    )


def _naive_grid(score: np.ndarray, step: float) -> np.ndarray:
    """The published candidates, materialised (signif through Python's formatting)."""
    lo, hi = np.quantile(score, [0.1, 0.9])
    count = math.floor((float(f"{hi:.6g}") - float(f"{lo:.6g}")) / step)
    return lo + np.arange(1, count + 1) * step


def test_scan_equals_a_naive_loop():
    rng = np.random.default_rng(3)
    d = _table(rng.choice([-0.7, 0.0, 0.4, 1.1], 80), 3)
    res = optimal_cutoff(d, "score", OS, cutoff_range=(0.1, 0.9), step=0.01, test="wald")
    best = (np.inf, None)
    for c in _naive_grid(d["score"].to_numpy(), 0.01):
        g = (d["score"] >= c).astype(float)
        if g.nunique() < 2:
            continue
        p = coxph(d.assign(g=g), "os_months", "os_event", ["g"]).p_wald[0]
        if p < best[0]:
            best = (p, c)
    assert res.p == pytest.approx(best[0], rel=1e-12)
    assert res.cutoff == pytest.approx(best[1], abs=1e-12)


def test_scan_lists_each_split_once_with_its_grid_run():
    """Runs of equal splits equal those of the materialised grid, values on grid points too."""
    rng = np.random.default_rng(5)
    score = np.r_[rng.normal(0, 1, 56).round(3), [0.0, 0.01, 0.02, 0.02]]
    d = _table(score, 5)
    scan = optimal_cutoff(d, "score", OS, cutoff_range=(0.1, 0.9), step=0.01, test="wald").scan
    grid = _naive_grid(score, 0.01)
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


def test_scan_of_a_score_with_a_huge_range():
    """A near-infinite coefficient (complete separation) must not build a 1e12-point grid."""
    rng = np.random.default_rng(6)
    d = _table(rng.integers(0, 3, 40) * 1e9, 6)
    res = optimal_cutoff(d, "score", OS, cutoff_range=(0.1, 0.9), step=1e-4, test="wald")
    splits = {int((d["score"] >= 1e9).sum()), int((d["score"] >= 2e9).sum())}
    assert 1 <= len(res.scan) <= 2 and set(res.scan["n_high"]) <= splits
    assert 0 < res.cutoff <= 2e9


def test_logrank_test_and_no_candidate():
    rng = np.random.default_rng(7)
    d = _table(rng.choice([0.0, 1.0, 2.0], 60), 7)
    res = optimal_cutoff(d, "score", OS, cutoff_range=(0.1, 0.9), step=0.01, test="logrank")
    for row in res.scan.itertuples():
        g = d.assign(g=(d["score"] >= row.cutoff).astype(float))
        assert row.p == pytest.approx(logrank(g, "os_months", "os_event", "g").p, rel=1e-12)
    flat = _table(np.r_[np.zeros(55), np.ones(5)], 7)
    with pytest.raises(InputError, match="no cutoff splits the discovery cohort"):
        optimal_cutoff(flat, "score", OS, cutoff_range=(0.1, 0.9), step=0.01, test="wald")
