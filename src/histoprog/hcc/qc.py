"""The nuclei stage's QC image, drawn with PIL (a per-slide job need not import matplotlib)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from histoprog.plots.pil_text import draw_lines, font, header_px, wrap

#: pixels between tiles
GAP = 4


def nuclei_montage(tiles: np.ndarray, heat: np.ndarray, title: str = "") -> Image.Image:
    """Tiles (top row) above their heat maps (bottom row; dark = nucleus probability).

    Args:
        tiles: N x H x W x 3 uint8 normalised tiles.
        heat: N x H x W uint8 heat maps (255 p).
        title: text above the rows.
    """
    n, side = max(1, len(tiles)), tiles.shape[1] if len(tiles) else 64
    width = n * (side + GAP) + GAP
    face = font()
    lines = wrap(
        f"{title}: Vahadane-normalised tiles (top) and nuclei heat maps (bottom, dark = nucleus)",
        width - 2 * GAP,
        face,
    )
    header = header_px(len(lines))
    canvas = Image.new("RGB", (width, header + 2 * (side + GAP)), "white")
    for i in range(len(tiles)):
        x = GAP + i * (side + GAP)
        canvas.paste(Image.fromarray(tiles[i]), (x, header))
        canvas.paste(Image.fromarray(255 - heat[i]).convert("RGB"), (x, header + side + GAP))
    draw_lines(ImageDraw.Draw(canvas), (GAP, 4), lines, face)
    return canvas
