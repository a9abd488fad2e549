"""Fixed colours of the tissue classes (hex strings) and the diverging map of the MIL map.

Kept apart from the figure modules and free of matplotlib, so that the per-slide jobs
(``classify`` overlay, ``sof`` figure, ``mil_score`` map) get the same colours without
loading it.
"""

from __future__ import annotations

import numpy as np
from PIL import ImageColor

#: colour of each tissue class in overlays and curves (classes of both training stages)
CLASS_COLOURS: dict[str, str] = {
    "ADI": "#f2e35c",
    "BACK": "#d9d9d9",
    "DEB": "#8c564b",
    "HEP": "#ff7f0e",
    "LYM": "#1f3fbf",
    "MUC": "#17becf",
    "MUS": "#e377c2",
    "NORM": "#2ca02c",
    "STR": "#9467bd",
    "TUM": "#d62728",
}

#: matplotlib's ``tab10`` colours, for a class without a fixed colour
TAB10: tuple[str, ...] = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


def class_colour(name: str, index: int) -> str:
    """The class's fixed colour, else a tab10 colour by index."""
    return CLASS_COLOURS.get(name, TAB10[index % len(TAB10)])


#: ColorBrewer RdBu (11 classes) from blue to red, as matplotlib's ``RdBu_r``
RDBU_R: tuple[str, ...] = (
    "#053061",
    "#2166ac",
    "#4393c3",
    "#92c5de",
    "#d1e5f0",
    "#f7f7f7",
    "#fddbc7",
    "#f4a582",
    "#d6604d",
    "#b2182b",
    "#67001f",
)


def diverging_rgb(values: np.ndarray) -> np.ndarray:
    """RGB (float, 0-255, ... x 3) of ``values`` on :data:`RDBU_R`: -1 blue, 0 white, 1 red.

    Linear between the map's colours; values outside [-1, 1] take the end colours.
    """
    anchors = np.array([ImageColor.getrgb(c) for c in RDBU_R], dtype=np.float64)
    position = (np.clip(np.asarray(values, dtype=np.float64), -1, 1) + 1) / 2
    grid = np.linspace(0, 1, len(anchors))
    return np.stack([np.interp(position, grid, anchors[:, k]) for k in range(3)], axis=-1)
