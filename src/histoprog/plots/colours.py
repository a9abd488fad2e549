"""Fixed colours of the tissue classes (hex strings).

Kept apart from the figure modules and free of matplotlib, so that the per-slide jobs
(``classify`` overlay, ``sof`` figure) get the same colours without loading it.
"""

from __future__ import annotations

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
