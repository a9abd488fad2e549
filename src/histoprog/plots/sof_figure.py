"""The per-slide SOF figure (``sof.png`` of ``histoprog sof``), drawn with PIL.

No matplotlib: the sof stage runs once per slide, and importing matplotlib cost it about
half a second for one small picture (benchmarks/bench_startup.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageColor, ImageDraw

from histoprog.classes import CLASSES
from histoprog.plots import pil_text
from histoprog.plots.colours import class_colour
from histoprog.sof import DISTAL_ZONE, INFILTRATING_ZONE, zone_grid

#: the longest side of a panel (px); a grid cell is a whole number of pixels, 2-24
PANEL_PX = 480
#: legend width beside each panel, and the swatch size (px)
LEGEND_PX, SWATCH_PX = 150, 14
#: colours of the right panel: no tile, tumour, infiltrating, distal
SPLIT_COLOURS: tuple[str, ...] = ("#ffffff", "#d62728", "#1f3f7f", "#a6c8ff")
SPLIT_LABELS: tuple[str, ...] = ("", "TUM", "infiltrating", "distal")
OUTLINE = (0, 0, 0)
FRAME = (160, 160, 160)


@dataclass(frozen=True)
class SofFigure:
    """The picture and where its panels lie (``panels``: top-left corners; ``cell_px``)."""

    image: Image.Image
    panels: tuple[tuple[int, int], tuple[int, int]]
    cell_px: int


def infiltration_split(
    grid: np.ndarray, distances: np.ndarray, thresholds: Mapping[str, float]
) -> np.ndarray:
    """Cell codes of the right panel: 0 none, 1 tumour, 2 infiltrating, 3 distal."""
    zones = zone_grid(grid, distances, thresholds)
    split = np.where(zones == INFILTRATING_ZONE, 2, np.where(zones == DISTAL_ZONE, 3, 0))
    split[grid == CLASSES.index("TUM")] = 1
    return split.astype(np.int8)


def sof_figure(
    grid: np.ndarray,
    region: np.ndarray,
    distances: np.ndarray,
    thresholds: Mapping[str, float],
    title: str = "",
) -> SofFigure:
    """Per-slide SOF figure: classes (left) and infiltrating vs distal tiles (right).

    Both panels show the grid cell by cell with the tumour region's outline (the cell
    edges between region and non-region cells) in black.

    Args:
        grid: rows x cols class indices into :data:`CLASSES` (-1 = no tile).
        region: the tumour-region mask (same shape).
        distances: each cell's distance to the region (tile units).
        thresholds: infiltration threshold per non-tumour class (tile units).
        title: the text above the panels (wrapped).
    """
    rows, cols = grid.shape
    cell = int(np.clip(PANEL_PX // max(rows, cols, 1), 2, 24))
    lut = np.array(
        [(255, 255, 255)] + [ImageColor.getrgb(class_colour(c, i)) for i, c in enumerate(CLASSES)],
        dtype=np.uint8,
    )
    split_lut = np.array([ImageColor.getrgb(c) for c in SPLIT_COLOURS], dtype=np.uint8)
    left = lut[np.asarray(grid, dtype=int) + 1]
    right = split_lut[infiltration_split(grid, distances, thresholds)]
    face = pil_text.font()
    panel_w, panel_h = cols * cell, rows * cell
    width = 2 * (panel_w + LEGEND_PX) + 8
    lines = pil_text.wrap(title, width - 8, face)
    top = pil_text.header_px(len(lines)) + pil_text.LINE_PX  # title, then the panel titles
    legend_h = pil_text.LINE_PX * (len(CLASSES) + 1)
    canvas = Image.new("RGB", (width, top + max(panel_h, legend_h) + 4), "white")
    draw = ImageDraw.Draw(canvas)
    pil_text.draw_lines(draw, (4, 4), lines, face)
    corners = ((4, top), (4 + panel_w + LEGEND_PX, top))
    for (x, y), pixels, label in zip(
        corners, (left, right), ("tissue classes", "infiltrating vs distal"), strict=True
    ):
        canvas.paste(Image.fromarray(pixels.repeat(cell, 0).repeat(cell, 1)), (x, y))
        draw.rectangle((x - 1, y - 1, x + panel_w, y + panel_h), outline=FRAME)  # the grid
        draw.text((x, y - pil_text.LINE_PX), label, fill="black", font=face)
        _outline(draw, np.asarray(region, dtype=bool), (x, y), cell)
    class_items = [(class_colour(c, i), c) for i, c in enumerate(CLASSES)]
    split_items = list(zip(SPLIT_COLOURS[1:], SPLIT_LABELS[1:], strict=True))
    for (x, y), items in zip(corners, (class_items, split_items), strict=True):
        _legend(draw, (x + panel_w + 8, y), [*items, (None, "tumour region")], face)
    return SofFigure(canvas, corners, cell)


def _outline(draw: ImageDraw.ImageDraw, region: np.ndarray, xy: tuple[int, int], cell: int) -> None:
    """Black lines along the cell edges that separate region from non-region cells."""
    x0, y0 = xy
    padded = np.pad(region, 1)
    for r, c in zip(*np.nonzero(padded[1:, 1:-1] != padded[:-1, 1:-1]), strict=True):
        y = y0 + r * cell  # horizontal edge above row r
        draw.line([(x0 + c * cell, y), (x0 + (c + 1) * cell, y)], fill=OUTLINE, width=2)
    for r, c in zip(*np.nonzero(padded[1:-1, 1:] != padded[1:-1, :-1]), strict=True):
        x = x0 + c * cell  # vertical edge left of column c
        draw.line([(x, y0 + r * cell), (x, y0 + (r + 1) * cell)], fill=OUTLINE, width=2)


def _legend(
    draw: ImageDraw.ImageDraw,
    xy: tuple[int, int],
    items: list[tuple[str | None, str]],
    face: object,
) -> None:
    """Swatches with labels, one a line; a ``None`` colour is an outlined empty swatch."""
    x, y = xy
    for colour, label in items:
        box = (x, y + 2, x + SWATCH_PX, y + 2 + SWATCH_PX)
        draw.rectangle(box, fill=colour or "white", outline="black", width=1 if colour else 2)
        draw.text((x + SWATCH_PX + 6, y), label, fill="black", font=face)
        y += pil_text.LINE_PX
