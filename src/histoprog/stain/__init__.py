"""Stain normalisation of H&E tiles: Macenko (CRLM) and Vahadane (HCC), METHODS section 2.

Library only: RGB ``uint8`` arrays (H x W x 3, or N x H x W x 3 for batches) in, arrays
out. The per-slide stage reads tiles, calls ``fit`` once on up to 200 tissue tiles, writes
the parameters (``params.to_dict()`` is JSON-ready) and calls ``transform`` on every tile.

* :mod:`.base`: the interface :class:`StainNormalizer` (its docstring holds the shared
  conventions: stain matrix layout, background intensity) and :class:`StainParams`;
* :mod:`.macenko`, :mod:`.vahadane`: the two methods;
* :mod:`.factory`: :func:`make_normalizer` by name, :func:`load_target` (target image);
* :mod:`.pixels`: tile checks, pixel pooling, optical density.
"""

from histoprog.stain.base import StainNormalizer, StainParams
from histoprog.stain.factory import NORMALIZERS, load_target, make_normalizer
from histoprog.stain.macenko import (
    TORCHSTAIN_BACKGROUND_INTENSITY,
    MacenkoNormalizer,
    MacenkoParams,
)
from histoprog.stain.vahadane import (
    VAHADANE_BACKGROUND_INTENSITY,
    VahadaneNormalizer,
    VahadaneParams,
)

__all__ = [
    "NORMALIZERS",
    "TORCHSTAIN_BACKGROUND_INTENSITY",
    "VAHADANE_BACKGROUND_INTENSITY",
    "MacenkoNormalizer",
    "MacenkoParams",
    "StainNormalizer",
    "StainParams",
    "VahadaneNormalizer",
    "VahadaneParams",
    "load_target",
    "make_normalizer",
]
