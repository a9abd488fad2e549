"""A slide thumbnail at a figure's size, in level-0 coordinates, and its scale bar (PIL).

Shared by the per-slide PIL figures drawn on the slide (class overlay, MIL map).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: the scale bar's height and the gap to its label (px)
BAR_PX = 6
#: the strip below a slide picture that holds its scale bar (px)
FOOTER_PX = 32


@dataclass(frozen=True)
class SlideView:
    """A slide thumbnail (``image``, H x W x 3 uint8) and where it lies at level 0.

    ``origin`` is the level-0 (x, y) of its top-left corner, ``px`` the level-0 pixels per
    view pixel along x and y.
    """

    image: np.ndarray
    origin: tuple[float, float]
    px: tuple[float, float]

    def to_view(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """View pixel coordinates (float) of level-0 points."""
        vx = (np.asarray(x, dtype=float) - self.origin[0]) / self.px[0]
        vy = (np.asarray(y, dtype=float) - self.origin[1]) / self.px[1]
        return vx, vy


def slide_view(
    thumbnail: np.ndarray, origin: tuple[float, float], scale: float, long_side_px: int
) -> SlideView:
    """``thumbnail`` (``scale`` level-0 px per pixel from level-0 ``origin``), resized.

    Its long side becomes ``long_side_px``.
    """
    image = resize_long_side(thumbnail, long_side_px)
    px = (
        scale * thumbnail.shape[1] / image.shape[1],
        scale * thumbnail.shape[0] / image.shape[0],
    )
    return SlideView(image, (float(origin[0]), float(origin[1])), px)


def resize_long_side(image: np.ndarray, long_side_px: int) -> np.ndarray:
    """``image`` (H x W x 3 uint8) resized so that its long side is ``long_side_px``."""
    height, width = image.shape[:2]
    factor = long_side_px / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    if size == (width, height):
        return image
    resized = Image.fromarray(image).resize(size, Image.Resampling.LANCZOS)
    return np.asarray(resized)


def scale_bar_um(um_per_px: float, max_px: float) -> float:
    """The longest 1, 2 or 5 x 10^k microns that fits in ``max_px`` pixels."""
    most = um_per_px * max_px
    power = 10.0 ** math.floor(math.log10(most))
    return max(step * power for step in (1, 2, 5) if step * power <= most)


def draw_scale_bar(
    draw: ImageDraw.ImageDraw,
    xy: tuple[int, int],
    um_per_px: float,
    max_px: float,
    face: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> float:
    """A black bar of :func:`scale_bar_um` from ``xy`` (top-left), its length beside it.

    Returns the bar's length in pixels.
    """
    um = scale_bar_um(um_per_px, max_px)
    length = um / um_per_px
    x, y = xy
    draw.rectangle((x, y, x + length, y + BAR_PX), fill="black")
    label = f"{um / 1000:g} mm" if um >= 1000 else f"{um:g} um"  # the font has no mu
    draw.text((x + length + 8, y + BAR_PX / 2), label, fill="black", font=face, anchor="lm")
    return length


def with_scale_bar(
    canvas: Image.Image,
    um_per_px: float,
    max_px: float,
    face: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> Image.Image:
    """``canvas`` with a :data:`FOOTER_PX` strip below holding a :func:`draw_scale_bar`.

    ``um_per_px``: microns per pixel of the slide picture on the canvas.
    """
    out = Image.new("RGB", (canvas.width, canvas.height + FOOTER_PX), "white")
    out.paste(canvas, (0, 0))
    draw_scale_bar(ImageDraw.Draw(out), (8, canvas.height + 10), um_per_px, max_px, face)
    return out
