"""The per-slide class overlay (``overlay.png`` of ``histoprog classify``), drawn with PIL.

No matplotlib: the classify stage runs once per slide, and importing matplotlib (and the
classifier figures' scikit-learn) cost it seconds for one small image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageColor, ImageDraw

from histoprog.plots.colours import class_colour

HEADER_PX = 24
LEGEND_PX = 150
SWATCH_PX = 12
LINE_PX = 18
MIN_LONG_SIDE_PX = 512


def class_overlay(
    thumbnail: np.ndarray,
    thumbnail_origin: tuple[float, float],
    scale: float,
    grid: np.ndarray,
    grid_origin: tuple[float, float],
    step: float,
    class_names: Sequence[str],
    counts: Mapping[str, int],
    title: str,
    alpha: float = 0.45,
) -> Image.Image:
    """Slide thumbnail with the class grid blended over it, a title line and a legend.

    Args:
        thumbnail: RGB uint8 low-resolution image of the slide.
        thumbnail_origin: level-0 (x, y) of its top-left corner.
        scale: level-0 pixels per thumbnail pixel.
        grid: rows x cols class indices (-1 = no tile: the thumbnail is left as it is).
        grid_origin: level-0 (x, y) of the grid's top-left corner.
        step: level-0 pixels per grid cell.
        class_names: grid value i = ``class_names[i]``.
        counts: tiles per class, shown in the legend.
        title: the line above the image.
        alpha: opacity of the class colours.

    A thumbnail whose long side is under 512 px is enlarged by an integer factor (nearest
    neighbour) so the tiles stay visible next to the legend.
    """
    zoom = max(1, -(-MIN_LONG_SIDE_PX // max(thumbnail.shape[:2])))
    view = thumbnail.repeat(zoom, axis=0).repeat(zoom, axis=1) if zoom > 1 else thumbnail
    height, width = view.shape[:2]
    px = scale / zoom
    rows = np.floor((thumbnail_origin[1] + (np.arange(height) + 0.5) * px - grid_origin[1]) / step)
    cols = np.floor((thumbnail_origin[0] + (np.arange(width) + 0.5) * px - grid_origin[0]) / step)
    inside = (rows[:, None] >= 0) & (rows[:, None] < grid.shape[0])
    inside = inside & (cols[None, :] >= 0) & (cols[None, :] < grid.shape[1])
    r = np.clip(rows, 0, grid.shape[0] - 1).astype(int)
    c = np.clip(cols, 0, grid.shape[1] - 1).astype(int)
    labels = np.where(inside, grid[r[:, None], c[None, :]], -1)
    colours = np.array(
        [ImageColor.getrgb(class_colour(n, i)) for i, n in enumerate(class_names)], np.float32
    ).reshape(-1, 3)
    shaded = view.astype(np.float32)
    tiled = labels >= 0
    shaded[tiled] = shaded[tiled] * (1 - alpha) + colours[labels[tiled]] * alpha
    legend_height = 2 * LINE_PX + LINE_PX * len(class_names)
    canvas = Image.new("RGB", (width + LEGEND_PX, HEADER_PX + max(height, legend_height)), "white")
    canvas.paste(Image.fromarray(np.rint(shaded).astype(np.uint8)), (0, HEADER_PX))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 6), title, fill="black")
    x, y = width + 10, HEADER_PX
    draw.text((x, y), "class (tiles)", fill="black")
    for i, name in enumerate(class_names):
        y += LINE_PX
        box = (x, y + 2, x + SWATCH_PX, y + 2 + SWATCH_PX)
        draw.rectangle(box, fill=class_colour(name, i), outline="black")
        draw.text((x + SWATCH_PX + 6, y + 1), f"{name} ({counts.get(name, 0)})", fill="black")
    return canvas
