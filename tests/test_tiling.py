import numpy as np
import pytest
from conftest import shared_file

from histoprog import slides, tiling


def grid_of(step: int, rows: int, cols: int) -> tiling.TileGrid:
    return tiling.TileGrid(origin_x=0, origin_y=0, step=step, rows=rows, cols=cols)


def test_tissue_fraction_is_exact_area_integral():
    mask = np.zeros((10, 10), dtype=bool)
    mask[:, :3] = True  # three tissue columns
    # tiles of 2.5 mask pixels (scale 4, step 10): columns 0-2.5 all tissue, 2.5-5 a fifth
    fractions = tiling.tissue_fractions(mask, grid_of(10, 4, 4), scale=4.0)
    np.testing.assert_allclose(fractions[:, 0], 1.0)
    np.testing.assert_allclose(fractions[:, 1], 0.5 / 2.5)
    np.testing.assert_allclose(fractions[:, 2:], 0.0)


def test_tissue_fraction_matches_brute_force_upsampling():
    rng = np.random.default_rng(1)
    mask = rng.random((37, 23)) > 0.4
    scale, step = 3.0, 7
    grid = grid_of(step, int(37 * scale) // step, int(23 * scale) // step)
    fine = np.repeat(np.repeat(mask, 3, axis=0), 3, axis=1)
    expected = np.array(
        [
            [
                fine[r * step : (r + 1) * step, c * step : (c + 1) * step].mean()
                for c in range(grid.cols)
            ]
            for r in range(grid.rows)
        ]
    )
    np.testing.assert_allclose(tiling.tissue_fractions(mask, grid, scale), expected, atol=1e-12)


def test_blank_mask_rules():
    rgb = np.array([[[250, 250, 250], [200, 120, 180], [0, 0, 0], [240, 235, 238]]], dtype=np.uint8)
    transparent = np.array([[False, False, False, True]])
    blank = tiling.blank_mask(rgb, transparent, tiling.BlankParams())
    assert blank.tolist() == [[True, False, True, True]]


def test_tile_table_keeps_at_most_half_blank():
    fractions = np.array([[0.5, 0.49], [1.0, 0.0]])
    table = tiling.tile_table(grid_of(224, 2, 2), fractions, tiling.BlankParams())
    assert table[["row", "col"]].values.tolist() == [[0, 0], [1, 0]]
    assert table["x"].tolist() == [0, 0] and table["y"].tolist() == [0, 224]


def test_grid_drops_partial_tiles_and_uses_bounds_origin():
    info = slides.SlideInfo(
        path="x",
        width=1000,
        height=700,
        level_dimensions=((1000, 700),),
        level_downsamples=(1.0,),
        mpp=0.5,
        mpp_source="metadata",
        objective_power=None,
        vendor=None,
        bounds=(30, 40, 900, 500),
    )
    grid = tiling.tile_grid(info, slides.plan_read(info, 0.5, 224))
    assert (grid.origin_x, grid.origin_y, grid.rows, grid.cols) == (30, 40, 2, 4)


@pytest.mark.parametrize(
    "name",
    [
        "cmu-1-small-region.svs",
        "cmu-1-small-region_3level.svs",
        "cmu-1-small-region_3level_generic.tiff",
    ],
)
def test_real_slide_grid_and_blank_filter(name):
    path = shared_file("slides", name)
    slide = slides.open_slide(path, "cmu")
    info = slides.slide_info(slide, path, "cmu", None)
    plan = slides.plan_read(info, 0.5, 224)
    grid = tiling.tile_grid(info, plan)
    assert (grid.rows, grid.cols) == (2967 // 224, 2220 // 224)
    rgb, transparent, scale = slides.read_low_resolution(slide, info, 8.0)
    tissue = ~tiling.blank_mask(rgb, transparent, tiling.BlankParams())
    table = tiling.tile_table(
        grid, tiling.tissue_fractions(tissue, grid, scale), tiling.BlankParams()
    )
    # the tissue strip covers about 40 % of the 13 x 9 grid on all three encodings
    assert 40 <= len(table) <= 56
    # kept tiles really are mostly tissue at full resolution; dropped corner is blank
    params = tiling.BlankParams()
    for x, y in table[["x", "y"]].values[:: max(1, len(table) // 6)]:
        tile = slides.read_tile(slide, plan, x, y)
        blank = tiling.blank_mask(tile, np.zeros(tile.shape[:2], bool), params).mean()
        assert blank <= 0.62
    corner = slides.read_tile(slide, plan, 0, 0)
    assert tiling.blank_mask(corner, np.zeros((224, 224), bool), params).mean() > 0.9
    slide.close()
