"""Tissue mask, tile grid and tile table of one slide (METHODS 1.4-1.6).

The blank filter runs on a low-resolution view (about 8 um/px) only, so tiling never reads
tiles at full resolution: a tile's tissue fraction is the exact area integral of the
low-resolution tissue mask over the tile's footprint (summed-area table with bilinear
interpolation at fractional corners).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from histoprog.slides import ReadPlan, SlideInfo

TILE_COLUMNS = ("row", "col", "x", "y", "tissue_fraction")


@dataclass(frozen=True)
class BlankParams:
    """Thresholds of the blank-pixel rule and the per-tile blank limit (config ``tile.blank``)."""

    saturation_max: float = 0.07
    value_min: float = 0.85
    black_value_max: float = 0.05
    max_blank_fraction: float = 0.5

    def to_dict(self) -> dict[str, float]:
        """Plain-JSON form."""
        return asdict(self)


def blank_mask(rgb: np.ndarray, transparent: np.ndarray, params: BlankParams) -> np.ndarray:
    """True where a pixel is blank: bright and unsaturated, transparent, or (near) black.

    HSV value = max(R, G, B) / 255 and saturation = (max - min) / max, computed per
    channel plane (a full HSV conversion is several times slower on large views).
    """
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    high = np.maximum(np.maximum(red, green), blue)
    spread = (high - np.minimum(np.minimum(red, green), blue)).astype(np.float32)
    high_f = high.astype(np.float32)
    bright_grey = (spread < params.saturation_max * high_f) & (high_f > params.value_min * 255)
    black = high_f <= params.black_value_max * 255
    return bright_grey | black | transparent


@dataclass(frozen=True)
class TileGrid:
    """The non-overlapping grid of whole tiles over a slide's bounds."""

    origin_x: int
    origin_y: int
    step: int
    rows: int
    cols: int

    def to_dict(self) -> dict[str, int]:
        """Plain-JSON form."""
        return asdict(self)


def tile_grid(info: SlideInfo, plan: ReadPlan) -> TileGrid:
    """Grid from the bounds' origin; partial tiles at the right and bottom are dropped."""
    bx, by, bw, bh = info.bounds
    return TileGrid(
        origin_x=bx,
        origin_y=by,
        step=plan.step_level0,
        rows=bh // plan.step_level0,
        cols=bw // plan.step_level0,
    )


def tissue_fractions(tissue: np.ndarray, grid: TileGrid, scale: float) -> np.ndarray:
    """Fraction of each grid tile's area covered by tissue in the low-resolution mask.

    Args:
        tissue: bool mask at low resolution (True = tissue), aligned with the bounds origin.
        grid: the tile grid in level-0 pixels.
        scale: level-0 pixels per mask pixel.

    Returns:
        rows x cols float array in [0, 1]. Area outside the mask counts as blank.
    """
    height, width = tissue.shape
    sat = np.zeros((height + 1, width + 1), dtype=np.float64)
    sat[1:, 1:] = np.cumsum(np.cumsum(tissue, axis=0, dtype=np.int32), axis=1)
    step = grid.step / scale
    ys = np.clip(np.arange(grid.rows + 1) * step, 0, height)
    xs = np.clip(np.arange(grid.cols + 1) * step, 0, width)
    integral = _bilinear(sat, ys[:, None], xs[None, :])
    area = integral[1:, 1:] - integral[:-1, 1:] - integral[1:, :-1] + integral[:-1, :-1]
    return np.clip(area / (step * step), 0.0, 1.0)


def _bilinear(table: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of ``table`` at fractional coordinates (broadcast)."""
    y0 = np.minimum(np.floor(ys).astype(int), table.shape[0] - 2)
    x0 = np.minimum(np.floor(xs).astype(int), table.shape[1] - 2)
    fy, fx = ys - y0, xs - x0
    top = table[y0, x0] * (1 - fx) + table[y0, x0 + 1] * fx
    bottom = table[y0 + 1, x0] * (1 - fx) + table[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def tile_table(grid: TileGrid, fractions: np.ndarray, params: BlankParams) -> pd.DataFrame:
    """Rows of the tiles kept (blank share at most ``max_blank_fraction``), row-major order."""
    keep = fractions >= 1.0 - params.max_blank_fraction - 1e-12
    rows, cols = np.nonzero(keep)
    return pd.DataFrame(
        {
            "row": rows.astype(np.int64),
            "col": cols.astype(np.int64),
            "x": grid.origin_x + cols.astype(np.int64) * grid.step,
            "y": grid.origin_y + rows.astype(np.int64) * grid.step,
            "tissue_fraction": np.round(fractions[rows, cols], 6),
        },
        columns=list(TILE_COLUMNS),
    )


def mask_thumbnail(
    rgb: np.ndarray,
    tissue: np.ndarray,
    grid: TileGrid,
    scale: float,
    table: pd.DataFrame,
    max_px: int = 512,
) -> Image.Image:
    """QC image: the low-resolution view (left); blank pixels blue, kept tiles green (right).

    Drawn with PIL (no matplotlib: this runs once per slide and should cost milliseconds);
    the view is subsampled to at most ``max_px`` on its long side.
    """
    step = max(1, -(-max(tissue.shape) // max_px))
    view, tissue = rgb[::step, ::step], tissue[::step, ::step]
    height, width = tissue.shape
    kept = np.zeros((grid.rows, grid.cols), dtype=bool)
    kept[table["row"].to_numpy(), table["col"].to_numpy()] = True
    tile_px = grid.step / (scale * step)
    rows = np.minimum((np.arange(height) / tile_px).astype(int), grid.rows)
    cols = np.minimum((np.arange(width) / tile_px).astype(int), grid.cols)
    padded = np.pad(kept, ((0, 1), (0, 1)))  # pixels past the last whole tile: not kept
    kept_px = padded[rows[:, None], cols[None, :]]
    shaded = view.astype(np.float32)
    shaded[~tissue] = shaded[~tissue] * 0.35 + np.array([50, 100, 255]) * 0.65
    shaded[kept_px] = shaded[kept_px] * 0.85 + np.array([0, 200, 80]) * 0.15
    header = 28
    canvas = Image.new("RGB", (2 * width + 10, height + header), "white")
    canvas.paste(Image.fromarray(view), (0, header))
    canvas.paste(Image.fromarray(shaded.astype(np.uint8)), (width + 10, header))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 8), "low-resolution view", fill="black")
    draw.text((width + 14, 8), f"blank (blue), {len(table)} kept tiles (green)", fill="black")
    return canvas
