"""The nuclei stage's QC image, drawn with PIL (a per-slide job need not import matplotlib)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

#: pixels between tiles and above the rows (for the title)
GAP, HEADER = 4, 18


def nuclei_montage(tiles: np.ndarray, heat: np.ndarray, title: str = "") -> Image.Image:
    """Tiles (top row) above their heat maps (bottom row; dark = nucleus probability).

    Args:
        tiles: N x H x W x 3 uint8 normalised tiles.
        heat: N x H x W uint8 heat maps (255 p).
        title: text above the rows.
    """
    n, side = max(1, len(tiles)), tiles.shape[1] if len(tiles) else 64
    canvas = Image.new("RGB", (n * (side + GAP) + GAP, HEADER + 2 * (side + GAP)), "white")
    for i in range(len(tiles)):
        x = GAP + i * (side + GAP)
        canvas.paste(Image.fromarray(tiles[i]), (x, HEADER))
        canvas.paste(Image.fromarray(255 - heat[i]).convert("RGB"), (x, HEADER + side + GAP))
    ImageDraw.Draw(canvas).text((GAP, 3), f"{title}: Vahadane tiles / nuclei heat maps", "black")
    return canvas
