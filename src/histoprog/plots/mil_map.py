"""The per-slide MIL map (``mil_map.png`` of ``histoprog mil_score``), drawn with PIL.

The slide thumbnail with each bag tile painted by its MIL logit z on a diverging map
centred at the logit of the threshold t (a bag whose tiles all had logit z would score
S = sigmoid(z), high exactly when z >= logit t), a colour bar that marks the slide's
pooled logit T, a title line and a scale bar (METHODS 6.4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from histoprog.plots import pil_text
from histoprog.plots.colours import diverging_rgb
from histoprog.plots.slide_view import FOOTER_PX, SlideView, draw_scale_bar

LEGEND_PX = 200
BAR_W_PX = 18
BAR_H_PX = 256
#: the smallest half-width of the colour scale (logits), for a bag of equal logits
MIN_HALF_WIDTH = 0.05
#: opacity of the tile colours over the thumbnail
ALPHA = 0.65
#: tiles at least this wide in the view get an outline
OUTLINE_MIN_PX = 8


@dataclass(frozen=True)
class MilMap:
    """The figure and where its tiles are.

    ``boxes``: each tile's rectangle (x0, y0, x1, y1) in view pixels (its level-0 box mapped
    by the view's origin and scale); ``offset``: the canvas position of the view's top-left.
    """

    image: Image.Image
    boxes: np.ndarray
    offset: tuple[int, int]


def mil_map(
    view: SlideView,
    x: np.ndarray,
    y: np.ndarray,
    tile_size: float,
    logits: np.ndarray,
    centre: float,
    slide_logit: float,
    mpp: float,
    title: str,
    note: str | None = None,
    alpha: float = ALPHA,
) -> MilMap:
    """Paint the bag's tiles by logit over the slide view; add title, colour bar, scale bar.

    Args:
        view: the slide thumbnail (:func:`~histoprog.plots.slide_view.slide_view`).
        x: level-0 left edge of each bag tile.
        y: level-0 top edge of each bag tile.
        tile_size: a tile's side in level-0 pixels.
        logits: each tile's MIL logit z.
        centre: the logit where the colours turn from blue to red (logit t).
        slide_logit: the slide's pooled logit T, marked on the colour bar.
        mpp: the slide's level-0 microns per pixel (scale bar).
        title: the first text line(s) (wrapped to the figure's width).
        note: a further line, e.g. that the bag is a sample.
        alpha: opacity of the tile colours.
    """
    logits = np.asarray(logits, dtype=np.float64)
    half = max(float(np.abs(logits - centre).max(initial=0.0)), MIN_HALF_WIDTH)
    x0, y0 = view.to_view(x, y)
    x1, y1 = view.to_view(np.asarray(x) + tile_size, np.asarray(y) + tile_size)
    boxes = np.stack([x0, y0, x1, y1], axis=-1).reshape(-1, 4)
    height, width = view.image.shape[:2]
    shaded = view.image.astype(np.float32)
    drawn = pixel_boxes(boxes, width, height)
    for (c0, r0, c1, r1), colour in zip(
        drawn, diverging_rgb((logits - centre) / half), strict=True
    ):
        shaded[r0:r1, c0:c1] = shaded[r0:r1, c0:c1] * (1 - alpha) + colour * alpha
    face = pil_text.font()
    lines = pil_text.wrap(title, width + LEGEND_PX - 8, face)
    if note:
        lines += pil_text.wrap(note, width + LEGEND_PX - 8, face)
    header = pil_text.header_px(len(lines))
    legend_px = BAR_H_PX + 4 * pil_text.LINE_PX
    canvas = Image.new(
        "RGB", (width + LEGEND_PX, header + max(height, legend_px) + FOOTER_PX), "white"
    )
    canvas.paste(Image.fromarray(np.rint(shaded).astype(np.uint8)), (0, header))
    draw = ImageDraw.Draw(canvas)
    pil_text.draw_lines(draw, (4, 4), lines, face)
    if len(boxes) and np.min(boxes[:, 2] - boxes[:, 0]) >= OUTLINE_MIN_PX:
        for c0, r0, c1, r1 in drawn:
            draw.rectangle((c0, header + r0, c1 - 1, header + r1 - 1), outline=(64, 64, 64))
    colour_bar(draw, canvas, (width + 12, header), centre, half, slide_logit)
    draw_scale_bar(draw, (8, canvas.height - FOOTER_PX + 10), mpp * view.px[0], width / 4, face)
    return MilMap(canvas, boxes, (0, header))


def pixel_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """``boxes`` (view pixels) rounded to pixel edges and clipped to the view, as ints."""
    rounded = np.rint(boxes).astype(int)
    rounded[:, 0::2] = rounded[:, 0::2].clip(0, width)
    rounded[:, 1::2] = rounded[:, 1::2].clip(0, height)
    return rounded


def colour_bar(
    draw: ImageDraw.ImageDraw,
    canvas: Image.Image,
    xy: tuple[int, int],
    centre: float,
    half: float,
    slide_logit: float,
) -> None:
    """The vertical colour scale from ``centre - half`` (bottom) to ``centre + half``."""
    face = pil_text.font()
    x, top = xy[0], xy[1] + pil_text.LINE_PX + 12
    draw.text(xy, "tile logit z", fill="black", font=face)
    values = np.linspace(1, -1, BAR_H_PX)
    bar = np.repeat(diverging_rgb(values)[:, None, :], BAR_W_PX, axis=1)
    canvas.paste(Image.fromarray(np.rint(bar).astype(np.uint8)), (x, top))
    draw.rectangle((x, top, x + BAR_W_PX - 1, top + BAR_H_PX - 1), outline="black")
    label_x = x + BAR_W_PX + 6
    ticks = ((centre + half, "high"), (centre, "= logit t"), (centre - half, "low"))
    for value, words in ticks:
        ty = top + (centre + half - value) / (2 * half) * (BAR_H_PX - 1)
        draw.line((x + BAR_W_PX, ty, x + BAR_W_PX + 4, ty), fill="black")
        draw.text((label_x, ty), f"{value:+.2f} {words}", fill="black", font=face, anchor="lm")
    position = np.clip((centre + half - slide_logit) / (2 * half), 0, 1) * (BAR_H_PX - 1)
    draw.line((x - 4, top + position, x + BAR_W_PX + 3, top + position), fill="black", width=3)
    below = top + BAR_H_PX + 8
    draw.text((x, below), f"line: slide T = {slide_logit:+.2f}", fill="black", font=face)
