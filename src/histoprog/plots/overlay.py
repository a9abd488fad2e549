"""The per-slide class overlay (``overlay.png`` of ``histoprog classify``), drawn with PIL.

No matplotlib: the classify stage runs once per slide, and importing matplotlib (and the
classifier figures' scikit-learn) cost it seconds for one small image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageColor, ImageDraw

from histoprog.plots import pil_text
from histoprog.plots.colours import class_colour
from histoprog.plots.slide_view import slide_view, with_scale_bar

LEGEND_PX = 180
SWATCH_PX = 14


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
    long_side_px: int = 1024,
    alpha: float = 0.45,
    mpp: float | None = None,
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
        title: the text above the image (wrapped to the image width).
        long_side_px: the slide image's long side in the overlay (the thumbnail is resized).
        alpha: opacity of the class colours.
        mpp: the slide's level-0 microns per pixel: a scale bar below the image when given.
    """
    sv = slide_view(thumbnail, thumbnail_origin, scale, long_side_px)
    view = sv.image
    height, width = view.shape[:2]
    y = sv.origin[1] + (np.arange(height) + 0.5) * sv.px[1]
    x = sv.origin[0] + (np.arange(width) + 0.5) * sv.px[0]
    rows = np.floor((y - grid_origin[1]) / step)
    cols = np.floor((x - grid_origin[0]) / step)
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
    face = pil_text.font()
    lines = pil_text.wrap(title, width + LEGEND_PX - 8, face)
    header = pil_text.header_px(len(lines))
    legend_height = pil_text.LINE_PX * (2 + len(class_names))
    canvas = Image.new("RGB", (width + LEGEND_PX, header + max(height, legend_height)), "white")
    canvas.paste(Image.fromarray(np.rint(shaded).astype(np.uint8)), (0, header))
    draw = ImageDraw.Draw(canvas)
    pil_text.draw_lines(draw, (4, 4), lines, face)
    x, y = width + 10, header
    draw.text((x, y), "class (tiles)", fill="black", font=face)
    for i, name in enumerate(class_names):
        y += pil_text.LINE_PX
        box = (x, y + 2, x + SWATCH_PX, y + 2 + SWATCH_PX)
        draw.rectangle(box, fill=class_colour(name, i), outline="black")
        label = f"{name} ({counts.get(name, 0)})"
        draw.text((x + SWATCH_PX + 6, y), label, fill="black", font=face)
    if mpp is None:
        return canvas
    return with_scale_bar(canvas, mpp * sv.px[0], width / 4, face)
