"""Stain normalisers by name, and the user's target image."""

from __future__ import annotations

from typing import Any

import numpy as np

from histoprog.errors import InputError
from histoprog.stain.base import StainNormalizer
from histoprog.stain.macenko import MacenkoNormalizer
from histoprog.stain.vahadane import VahadaneNormalizer

NORMALIZERS: dict[str, type[StainNormalizer]] = {
    MacenkoNormalizer.method: MacenkoNormalizer,
    VahadaneNormalizer.method: VahadaneNormalizer,
}
"""Every stain normaliser by its ``method`` name."""


def make_normalizer(method: str, /, **options: Any) -> StainNormalizer:
    """Build the stain normaliser called ``method`` (a key of :data:`NORMALIZERS`).

    Args:
        method: ``"macenko"`` or ``"vahadane"``.
        **options: the constructor's arguments: ``target``, ``background_intensity`` and
            the method's keyword-only options (see each normaliser).

    Raises:
        InputError: an unknown ``method``, or bad options.
    """
    try:
        cls = NORMALIZERS[method]
    except KeyError:
        raise InputError(
            "stain normalisation method",
            f"is {method!r}, not one of {sorted(NORMALIZERS)}",
            f"use one of {', '.join(repr(k) for k in sorted(NORMALIZERS))}",
        ) from None
    return cls(**options)


def load_target(path: str | None) -> np.ndarray | None:
    """The user's stain target image as RGB uint8, or None for torchstain's reference."""
    if not path:
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as err:
        raise InputError(
            f"stain target image '{path}'",
            f"it cannot be read as an image ({err})",
            "set stain.target_image in config.yaml to an RGB PNG/JPEG/TIFF of well-stained "
            "tissue, or to null for torchstain's reference stains",
        ) from err
