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

from histoprog.defaults import default
from histoprog.plots import pil_text
from histoprog.plots.slide_view import with_scale_bar
from histoprog.slides import ReadPlan, SlideInfo

TILE_COLUMNS = ("row", "col", "x", "y", "tissue_fraction")
MIN_OUTLINED_TILE_PX = 6


@dataclass(frozen=True)
class BlankParams:
    """Thresholds of the blank-pixel rule and the per-tile blank limit (config ``tile.blank``)."""

    saturation_max: float = default("tile.blank.saturation_max")
    value_min: float = default("tile.blank.value_min")
    black_value_max: float = default("tile.blank.black_value_max")
    max_blank_fraction: float = default("tile.blank.max_blank_fraction")

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
    max_px: int = 800,
    mpp: float | None = None,
) -> Image.Image:
    """QC image: the low-resolution view (left); blank pixels blue, kept tiles green (right).

    Drawn with PIL (no matplotlib: this runs once per slide and should cost milliseconds).
    Each panel's long side is between ``max_px`` / 2 and ``max_px``: a large view is
    subsampled, a small one enlarged by an integer factor. Kept tiles are tinted green and
    outlined, and grey lines mark the tile grid, when a tile spans at least
    :data:`MIN_OUTLINED_TILE_PX` pixels. With the slide's level-0 ``mpp``, a scale bar
    below.
    """
    long_side = max(tissue.shape)
    step = max(1, -(-long_side // max_px))
    zoom = max(1, max_px // long_side)
    view = rgb[::step, ::step].repeat(zoom, axis=0).repeat(zoom, axis=1)
    tissue = tissue[::step, ::step].repeat(zoom, axis=0).repeat(zoom, axis=1)
    height, width = tissue.shape
    kept = np.zeros((grid.rows, grid.cols), dtype=bool)
    kept[table["row"].to_numpy(), table["col"].to_numpy()] = True
    tile_px = grid.step * zoom / (scale * step)
    rows = np.minimum((np.arange(height) / tile_px).astype(int), grid.rows)
    cols = np.minimum((np.arange(width) / tile_px).astype(int), grid.cols)
    padded = np.pad(kept, ((0, 1), (0, 1)))  # pixels past the last whole tile: not kept
    kept_px = padded[rows[:, None], cols[None, :]]
    shaded = view.astype(np.float32)
    shaded[~tissue] = shaded[~tissue] * 0.35 + np.array([50, 100, 255]) * 0.65
    shaded[kept_px] = shaded[kept_px] * 0.55 + np.array([0, 200, 80]) * 0.45
    face = pil_text.font()
    left = pil_text.wrap("low-resolution view", width - 8, face)
    right = pil_text.wrap(
        f"kept tiles (n = {len(table)}): green, outlined; blank pixels: blue; "
        "grey grid: other tiles (dropped, too blank)",
        width - 8,
        face,
    )
    header = pil_text.header_px(max(len(left), len(right)))
    gap = 12
    canvas = Image.new("RGB", (2 * width + gap, height + header), "white")
    canvas.paste(Image.fromarray(view), (0, header))
    panel = Image.fromarray(np.rint(shaded).astype(np.uint8))
    if tile_px >= MIN_OUTLINED_TILE_PX:
        _draw_tiles(ImageDraw.Draw(panel), kept, tile_px)
    canvas.paste(panel, (width + gap, header))
    draw = ImageDraw.Draw(canvas)
    pil_text.draw_lines(draw, (4, 4), left, face)
    pil_text.draw_lines(draw, (width + gap + 4, 4), right, face)
    if mpp is None:
        return canvas
    return with_scale_bar(canvas, mpp * scale * step / zoom, width / 3, face)


def _draw_tiles(draw: ImageDraw.ImageDraw, kept: np.ndarray, tile_px: float) -> None:
    """Grey lines of the tile grid, then a dark green outline round each kept tile."""
    rows, cols = kept.shape
    for r in range(rows + 1):
        draw.line([(0, r * tile_px), (cols * tile_px, r * tile_px)], fill=(150, 150, 150))
    for c in range(cols + 1):
        draw.line([(c * tile_px, 0), (c * tile_px, rows * tile_px)], fill=(150, 150, 150))
    for r, c in zip(*np.nonzero(kept), strict=True):
        box = (c * tile_px, r * tile_px, (c + 1) * tile_px, (r + 1) * tile_px)
        draw.rectangle(box, outline=(0, 110, 40), width=2)
