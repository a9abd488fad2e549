"""The CRLM tissue-class vocabulary and the class-grid codes (the classify -> sof contract).

A class grid has one int8 cell per tile of a slide: value ``i`` means class ``CLASSES[i]``,
:data:`NO_TILE` means no tile there (not tissue, unreadable, or outside the slide).
"""

from __future__ import annotations

CLASSES: tuple[str, ...] = ("BACK", "DEB", "HEP", "LYM", "MUC", "STR", "TUM")
"""Class names of the CRLM tissue classifier; grid value ``i`` is ``CLASSES[i]``."""

NO_TILE = -1
"""Grid value of a cell without a tile."""
