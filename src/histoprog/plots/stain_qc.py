"""The stain stage's QC image (``stain_qc.png``), drawn with PIL.

No matplotlib: the stain stage runs once per slide, and importing matplotlib cost it about
half a second for one small picture.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from histoprog.plots import pil_text
from histoprog.plots.slide_view import resize_long_side

#: pixels between tiles, and around them
GAP = 4
#: width of the left margin that holds the row labels
LABEL_PX = 110
#: tiles larger than this are shown scaled down to it
TILE_PX = 160


def stain_qc(slide_id: str, before: np.ndarray, after: np.ndarray, fit: str) -> Image.Image:
    """Sample tiles before (top row) and after (bottom row) stain normalisation.

    The row labels sit in a left margin, clear of the tiles; the title is wrapped above.

    Args:
        slide_id: the slide, named in the title.
        before: N x H x W x 3 uint8 tiles as read.
        after: the same tiles normalised.
        fit: the fit mode (``slide`` or ``tile``), named in the label of the bottom row.
    """
    rows = [
        [resize_long_side(t, min(TILE_PX, max(t.shape[:2]))) for t in s] for s in (before, after)
    ]
    side = max((max(t.shape[:2]) for row in rows for t in row), default=TILE_PX)
    n = max(1, len(before))
    width = LABEL_PX + n * (side + GAP)
    face = pil_text.font()
    title = pil_text.wrap(
        f"slide {slide_id}: sample tiles before and after stain normalisation",
        width - 2 * GAP,
        face,
    )
    header = pil_text.header_px(len(title))
    labels = [
        pil_text.wrap(text, LABEL_PX - 2 * GAP, face)
        for text in ("before", f"after (Macenko, {fit} fit)")
    ]
    row_px = max(side, *(pil_text.LINE_PX * len(lines) for lines in labels))
    canvas = Image.new("RGB", (width, header + 2 * (row_px + GAP)), "white")
    draw = ImageDraw.Draw(canvas)
    pil_text.draw_lines(draw, (GAP, 4), title, face)
    for r, (row, lines) in enumerate(zip(rows, labels, strict=True)):
        top = header + r * (row_px + GAP)
        for i, tile in enumerate(row):
            canvas.paste(Image.fromarray(tile), (LABEL_PX + i * (side + GAP), top))
        y = top + (row_px - pil_text.LINE_PX * len(lines)) // 2
        pil_text.draw_lines(draw, (GAP, y), lines, face)
    return canvas
