"""Tests for histoprog.sof: hand-computed values on small grids."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from histoprog.errors import InputError
from histoprog.sof import (
    CLASSES,
    DISTAL_ZONE,
    INFILTRATING_ZONE,
    NO_ZONE,
    NON_TUMOUR_CLASSES,
    TISSUE_CLASSES,
    RegionParams,
    class_distances,
    compute_sofs,
    distance_to_region,
    fit_infiltration_thresholds,
    sof_columns,
    tumour_region,
    zone_grid,
)

C = {name: i for i, name in enumerate(CLASSES)}
BACK, DEB, HEP, LYM, MUC, STR, TUM = (C[k] for k in CLASSES)
NONE = -1
ZERO_THR = dict.fromkeys(NON_TUMOUR_CLASSES, 0.0)
LOOSE = RegionParams(min_component_tiles=1, min_tumour_tiles=1)


def square(rows: int, cols: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    """Bool mask with the inclusive block [r0..r1] x [c0..c1] set."""
    m = np.zeros((rows, cols), dtype=bool)
    m[r0 : r1 + 1, c0 : c1 + 1] = True
    return m


# ---------------------------------------------------------------- columns


def test_sof_columns_contract_order():
    cols = sof_columns()
    assert cols[:6] == [f"overall_{c}" for c in ("TUM", "STR", "LYM", "HEP", "MUC", "DEB")]
    nt = ("STR", "LYM", "HEP", "MUC", "DEB")
    assert cols[6:11] == [f"infiltrating_{c}" for c in nt]
    assert cols[11:16] == [f"distal_{c}" for c in nt]
    assert cols[16:] == [f"interaction_{c}" for c in nt]
    out = compute_sofs(np.full((3, 3), STR), ZERO_THR)
    assert list(out) == cols + ["n_tiles", "n_tissue", "tumour_region_tiles", "status"]


# ---------------------------------------------------------------- tumour region


def test_single_tile_region_is_3x3_then_removed_by_min_component():
    g = np.full((9, 9), STR)
    g[4, 4] = TUM
    # dilation 5x5 -> 5x5 block, erosion 3x3 -> 3x3 block
    np.testing.assert_array_equal(tumour_region(g, LOOSE), square(9, 9, 3, 5, 3, 5))
    # 9 tiles < 64: removed with the default parameters
    assert not tumour_region(g).any()


def test_erosion_treats_outside_as_foreground():
    g = np.full((7, 7), STR)
    g[0, 0] = TUM
    # dilation -> rows/cols 0..2; erosion keeps cells whose in-grid 3x3 window is all set
    np.testing.assert_array_equal(tumour_region(g, LOOSE), square(7, 7, 0, 1, 0, 1))


def test_holes_are_filled():
    g = np.full((24, 24), STR)
    ring = square(24, 24, 4, 19, 4, 19) & ~square(24, 24, 5, 18, 5, 18)
    g[ring] = TUM
    # outside: dilation to 2..21, erosion to 3..20; inner hole (6..17 after erosion) filled
    region = tumour_region(g, RegionParams(min_component_tiles=1))
    np.testing.assert_array_equal(region, square(24, 24, 3, 20, 3, 20))


@pytest.mark.parametrize(("tum_cols", "kept"), [(6, True), (5, False)])
def test_min_component_boundary(tum_cols, kept):
    g = np.full((20, 20), BACK)
    g[6:12, 6 : 6 + tum_cols] = TUM  # 6 x tum_cols -> region (6+2) x (tum_cols+2)
    region = tumour_region(g)  # min_component_tiles = 64
    assert region.sum() == (64 if kept else 0)


def test_components_are_4_connected():
    g = np.full((6, 6), STR)
    g[0:2, 0:2] = TUM
    g[2:4, 2:4] = TUM  # touches the first block only diagonally
    identity = RegionParams(dilation=1, erosion=1, min_component_tiles=5, min_tumour_tiles=1)
    assert not tumour_region(g, identity).any()  # two components of 4 < 5
    identity8 = RegionParams(dilation=1, erosion=1, min_component_tiles=4, min_tumour_tiles=1)
    assert tumour_region(g, identity8).sum() == 8


# ---------------------------------------------------------------- distances


def test_distance_to_region():
    reg = np.zeros((3, 4), dtype=bool)
    reg[0, 0] = True
    d = distance_to_region(reg)
    assert d[0, 0] == 0
    assert d[2, 3] == pytest.approx(math.sqrt(13))
    assert d[0, 3] == pytest.approx(3)
    assert np.isinf(distance_to_region(np.zeros((2, 2), dtype=bool))).all()


def corner_grid() -> np.ndarray:
    """8x8 TUM block in the corner (region rows/cols 0..8) plus STR/LYM at known distances."""
    g = np.full((20, 30), BACK)
    g[0:8, 0:8] = TUM
    g[0, 10] = STR  # distance 2
    g[0, 15] = STR  # distance 7
    g[4, 20] = STR  # distance 12
    g[8, 8] = LYM  # inside the region: distance 0
    g[12, 12] = HEP  # distance sqrt(4^2 + 4^2)
    g[19, 29] = NONE
    return g


def test_class_distances():
    d = class_distances(corner_grid())
    np.testing.assert_allclose(d["STR"], [2, 7, 12])
    np.testing.assert_allclose(d["LYM"], [0])
    np.testing.assert_allclose(d["HEP"], [math.sqrt(32)])
    assert d["MUC"].size == 0 and d["DEB"].size == 0
    # insufficient tumour: contributes nothing
    few = np.full((5, 5), STR)
    few[2, 2] = TUM
    assert all(v.size == 0 for v in class_distances(few).values())


def test_infiltrating_and_distal_by_hand():
    thr = {"STR": 2.0, "LYM": 0.0, "HEP": 5.0, "MUC": 1.0, "DEB": math.nan}
    out = compute_sofs(corner_grid(), thr)
    n = 64 + 3 + 1 + 1
    assert out["status"] == "ok"
    assert out["n_tissue"] == n
    assert out["n_tiles"] == 20 * 30 - 1
    assert out["tumour_region_tiles"] == 81
    assert out["overall_TUM"] == pytest.approx(64 / n)
    assert out["infiltrating_STR"] == pytest.approx(1 / n)  # d <= threshold is infiltrating
    assert out["distal_STR"] == pytest.approx(2 / n)
    assert out["infiltrating_LYM"] == pytest.approx(1 / n)
    assert out["distal_LYM"] == 0
    assert out["distal_HEP"] == pytest.approx(1 / n)
    assert out["infiltrating_MUC"] == 0 and out["distal_MUC"] == 0
    assert math.isnan(out["infiltrating_DEB"]) and math.isnan(out["distal_DEB"])


# ---------------------------------------------------------------- interaction


def test_interaction_by_hand():
    g = np.array(
        [
            [STR, STR, LYM],
            [BACK, TUM, HEP],
            [NONE, TUM, DEB],
        ]
    )
    out = compute_sofs(g, ZERO_THR, LOOSE)
    assert out["status"] == "ok"
    # (1,1): tissue neighbours STR STR LYM HEP TUM DEB (6); (2,1): TUM HEP DEB (3)
    assert out["interaction_STR"] == pytest.approx((2 / 6 + 0) / 2)
    assert out["interaction_LYM"] == pytest.approx((1 / 6) / 2)
    assert out["interaction_HEP"] == pytest.approx((1 / 6 + 1 / 3) / 2)
    assert out["interaction_DEB"] == pytest.approx((1 / 6 + 1 / 3) / 2)
    assert out["interaction_MUC"] == 0
    # region covers the whole grid -> everything infiltrating at threshold 0
    assert out["tumour_region_tiles"] == 9
    assert out["n_tissue"] == 7
    assert out["infiltrating_STR"] == pytest.approx(2 / 7)
    assert out["distal_STR"] == 0


def test_interaction_skips_tum_without_tissue_neighbour():
    g = np.full((5, 7), BACK)
    g[2, 1] = TUM  # only BACK around: skipped
    g[2, 4] = TUM
    g[2, 5] = STR
    out = compute_sofs(g, ZERO_THR, LOOSE)
    assert out["interaction_STR"] == pytest.approx(1.0)
    lonely = np.full((3, 3), BACK)
    lonely[1, 1] = TUM
    out = compute_sofs(lonely, ZERO_THR, LOOSE)
    assert out["status"] == "ok"
    assert all(math.isnan(out[f"interaction_{c}"]) for c in NON_TUMOUR_CLASSES)


# ---------------------------------------------------------------- status and edge cases


def test_no_tumour_is_insufficient_and_keeps_overall():
    g = np.full((4, 4), STR)
    g[0, :] = LYM
    g[3, 3] = BACK
    out = compute_sofs(g, ZERO_THR)
    assert out["status"] == "insufficient_tumour"
    assert out["overall_STR"] == pytest.approx(11 / 15)
    assert out["overall_LYM"] == pytest.approx(4 / 15)
    assert out["overall_TUM"] == 0
    assert out["n_tiles"] == 16 and out["n_tissue"] == 15 and out["tumour_region_tiles"] == 0
    for k in sof_columns()[6:]:
        assert math.isnan(out[k]), k


def test_enough_tum_but_empty_region_is_insufficient():
    g = np.full((40, 40), STR)
    g[::4, ::4] = TUM  # 100 isolated TUM tiles whose 3x3 regions do not merge
    out = compute_sofs(g, ZERO_THR, RegionParams(dilation=1))
    assert out["status"] == "insufficient_tumour"
    assert out["tumour_region_tiles"] == 0


def test_no_tissue():
    g = np.full((3, 3), BACK)
    g[0, 0] = NONE
    out = compute_sofs(g, ZERO_THR)
    assert out["status"] == "no_tissue"
    assert out["n_tiles"] == 8 and out["n_tissue"] == 0
    assert all(math.isnan(out[k]) for k in sof_columns())
    assert compute_sofs(np.full((0, 0), NONE), ZERO_THR)["status"] == "no_tissue"


def test_single_tile():
    g = np.array([[TUM]])
    out = compute_sofs(g, ZERO_THR)
    assert out["status"] == "insufficient_tumour"
    assert out["overall_TUM"] == 1.0 and out["n_tiles"] == 1
    out = compute_sofs(g, ZERO_THR, LOOSE)
    assert out["status"] == "ok"
    assert out["tumour_region_tiles"] == 1
    assert out["infiltrating_STR"] == 0 and out["distal_STR"] == 0
    assert math.isnan(out["interaction_STR"])


def test_large_grid_is_consistent():
    rng = np.random.default_rng(1)
    g = rng.choice([BACK, DEB, HEP, LYM, MUC, STR], size=(300, 300)).astype(np.int8)
    g[50:150, 60:200] = TUM
    g[200:260, 200:290] = TUM
    g[rng.random(g.shape) < 0.05] = NONE
    thr = {"STR": 3.0, "LYM": 5.0, "HEP": 10.0, "MUC": 1.0, "DEB": 0.0}
    t0 = time.perf_counter()
    out = compute_sofs(g, thr)
    elapsed = time.perf_counter() - t0
    assert out["status"] == "ok"
    assert sum(out[f"overall_{c}"] for c in TISSUE_CLASSES) == pytest.approx(1)
    for c in NON_TUMOUR_CLASSES:
        assert out[f"infiltrating_{c}"] + out[f"distal_{c}"] == pytest.approx(out[f"overall_{c}"])
        assert 0 <= out[f"interaction_{c}"] <= 1
    assert out["tumour_region_tiles"] >= 100 * 140 + 60 * 90
    assert elapsed < 5  # generous; typically a few ms


# ---------------------------------------------------------------- GMM thresholds


def test_thresholds_split_two_clusters():
    rng = np.random.default_rng(0)
    low = rng.uniform(0, 3, 400)
    high = rng.uniform(12, 25, 300)
    pooled = {"STR": np.concatenate([high, low]), "LYM": np.concatenate([low, high])}
    thr = fit_infiltration_thresholds(pooled, seed=0)
    assert set(thr) == set(NON_TUMOUR_CLASSES)
    assert thr["STR"] == pytest.approx(low.max())
    assert thr["LYM"] == pytest.approx(low.max())
    assert math.isnan(thr["HEP"])  # missing class -> NaN
    assert fit_infiltration_thresholds(pooled, seed=0) == thr  # deterministic


def test_thresholds_nan_policy():
    thr = fit_infiltration_thresholds(
        {"STR": np.arange(9.0), "LYM": np.full(100, 2.0), "MUC": np.array([])}
    )
    assert math.isnan(thr["STR"])  # fewer than 10 distances
    assert math.isnan(thr["LYM"])  # one distinct value
    assert math.isnan(thr["MUC"])


# ---------------------------------------------------------------- failure cases


@pytest.mark.parametrize(
    ("grid", "match"),
    [
        (np.zeros((3, 3, 1), dtype=int), "2-D array"),
        (np.zeros((3, 3), dtype=float), "integer class codes"),
        (np.full((3, 3), 7), "outside -1..6"),
        (np.full((3, 3), -2), "outside -1..6"),
    ],
)
def test_bad_grid(grid, match):
    with pytest.raises(InputError, match=match):
        compute_sofs(grid, ZERO_THR)
    with pytest.raises(InputError, match=match):
        tumour_region(grid)


def test_bad_thresholds_and_params():
    g = np.full((3, 3), STR)
    with pytest.raises(InputError, match=r"missing class\(es\) \['DEB'\]"):
        compute_sofs(g, {c: 1.0 for c in NON_TUMOUR_CLASSES[:-1]})
    with pytest.raises(InputError, match="negative or infinite"):
        compute_sofs(g, {**ZERO_THR, "STR": -1.0})
    with pytest.raises(InputError, match="unknown class"):
        fit_infiltration_thresholds({"TUM": np.arange(20.0)})
    with pytest.raises(InputError, match="negative, NaN or infinite"):
        fit_infiltration_thresholds({"STR": np.array([1.0, np.inf] * 10)})
    with pytest.raises(InputError, match="min_tumour_tiles"):
        RegionParams(min_tumour_tiles=-1)
    with pytest.raises(InputError, match="must be >= 1"):
        RegionParams(dilation=0)


def test_zone_grid_splits_non_tumour_cells_at_their_class_threshold() -> None:
    lym, strm, tum = (CLASSES.index(c) for c in ("LYM", "STR", "TUM"))
    grid = np.array([[lym, lym, strm], [tum, -1, strm]])
    distance = np.array([[1.0, 2.0, 1.0], [0.0, 5.0, 9.0]])
    zones = zone_grid(grid, distance, {"LYM": 1.0, "STR": math.nan})
    assert zones.tolist() == [[INFILTRATING_ZONE, DISTAL_ZONE, NO_ZONE], [NO_ZONE] * 3]
