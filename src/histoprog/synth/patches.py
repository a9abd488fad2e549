"""Labelled patch folders (torchvision ImageFolder layout) for tissue-classifier training.

``out/<CLASS>/<CLASS>_<nnnnn>.png``, 224 x 224 RGB at 0.5 mpp by default. Two class sets:
``crc`` (stage 1, the 9 NCT-CRC-HE-100K classes) and ``crlm`` (stage 2, the 7 CRLM
classes). Patches are random crops (with one of 8 flips/rotations) of texture sheets, a
new sheet (three times the patch side) with a new stain every ``per_sheet`` patches, passed
through a JPEG round trip like slide tiles; the textures are the recipes the slides use,
so a classifier trained here transfers to the synthetic slides. Two patches per sheet
(the default) keeps stains and textures varied: with 16, 120 patches per class came from
8 stains and the demo classifier lost the strongly stained slides.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from histoprog.errors import InputError
from histoprog.io import atomic_path
from histoprog.sof import CLASSES
from histoprog.synth.render import dihedral
from histoprog.synth.seeding import rng_for
from histoprog.synth.stain import od_to_rgb, random_stain
from histoprog.synth.texture import render_background, render_texture

__all__ = ["CLASS_SETS", "write_patches", "render_patch_sheet"]

CLASS_SETS: dict[str, tuple[str, ...]] = {
    "crc": ("ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"),
    "crlm": CLASSES,
}
"""Class names of each patch set (folder names, ImageFolder sorts them alphabetically)."""


def render_patch_sheet(
    name: str, side: int, mpp: float, seed: int, index: int, stain_jitter: float
) -> np.ndarray:
    """One stained texture sheet (uint8 RGB) of class ``name`` for patch cropping."""
    rng = rng_for(seed, "patches", name, index)
    if name == "BACK":
        rgb = render_background((side, side), rng)
    else:
        tex = render_texture(name, (side, side), mpp, rng)
        rgb = od_to_rgb(
            tex.conc, random_stain(rng_for(seed, "patch-stain", name, index), stain_jitter)
        )
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _jpeg_round_trip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as JPEG (as slide tiles are stored)."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def write_patches(
    out: str | os.PathLike[str],
    *,
    class_set: str = "crlm",
    n_per_class: int = 100,
    seed: int = 0,
    size: int = 224,
    mpp: float = 0.5,
    stain_jitter: float = 1.0,
    jpeg_quality: int | None = 85,
    per_sheet: int = 2,
) -> dict[str, int]:
    """Write an ImageFolder of synthetic patches.

    Args:
        out: output folder; one subfolder per class.
        class_set: ``crc`` (9 classes) or ``crlm`` (7 classes).
        n_per_class: patches per class.
        seed: seed (same seed -> identical PNGs).
        size: patch side in pixels.
        mpp: microns per pixel of the patches.
        stain_jitter: stain variation between sheets (0 = reference stain).
        jpeg_quality: JPEG round trip quality, or None for none.
        per_sheet: patches cropped from each texture sheet.

    Returns:
        ``{class: number of patches}``.

    Raises:
        InputError: an unknown class set or bad sizes.
    """
    if class_set not in CLASS_SETS:
        raise InputError(
            "patch class set", f"unknown set {class_set!r}", f"use one of {sorted(CLASS_SETS)}"
        )
    if n_per_class < 1 or size < 16 or per_sheet < 1:
        raise InputError(
            "patch options",
            f"n_per_class={n_per_class}, size={size}, per_sheet={per_sheet} must be positive "
            "(size >= 16)",
            "pass e.g. --n-per-class 100 --size 224",
        )
    root = Path(out)
    side = 3 * size
    counts: dict[str, int] = {}
    for name in CLASS_SETS[class_set]:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        k = 0
        for j in range(math.ceil(n_per_class / per_sheet)):
            sheet = render_patch_sheet(name, side, mpp, seed, j, stain_jitter)
            rng = rng_for(seed, "patch-crops", name, j)
            for _ in range(min(per_sheet, n_per_class - k)):
                y, x = rng.integers(0, side - size + 1, size=2)
                patch = np.ascontiguousarray(
                    dihedral(sheet[y : y + size, x : x + size], int(rng.integers(8)))
                )
                if jpeg_quality is not None:
                    patch = _jpeg_round_trip(patch, jpeg_quality)
                with atomic_path(folder / f"{name}_{k:05d}.png") as tmp:
                    Image.fromarray(patch).save(tmp, format="PNG")
                k += 1
        counts[name] = k
    return counts
