"""Nucleus image/mask pairs in the MoNuSeg-like layout, for U-net training.

``out/images/<name>.png`` (RGB) and ``out/masks/<name>.png`` (same name; 255 = nucleus,
0 = not; consumers test mask > 127), by default 1000 x 1000 px at 0.25 mpp (40x, as
MoNuSeg). Each image is a patchwork of 2-5 regions of different tissue (CRLM tumour, HCC
tumour at a random atypia, lymphocytes, stroma, hepatocytes) with its own stain; the
mask is the union of the nuclei drawn (necrotic debris is not used: its fragments are
not nuclei).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from histoprog.errors import InputError
from histoprog.io import atomic_path
from histoprog.synth.seeding import rng_for
from histoprog.synth.stain import od_to_rgb, random_stain
from histoprog.synth.texture import render_texture

__all__ = ["NUCLEI_TISSUES", "render_nuclei_pair", "write_nuclei_pairs"]

NUCLEI_TISSUES: tuple[tuple[str, str], ...] = (
    ("TUM", "crlm"),
    ("TUM", "hcc"),
    ("LYM", "crlm"),
    ("STR", "crlm"),
    ("HEP", "crlm"),
)
"""(texture, style) choices of the regions of a nucleus image."""


def render_nuclei_pair(
    size: tuple[int, int], mpp: float, seed: int, index: int, stain_jitter: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8 RGB) and its nucleus mask (bool), a pure function of the seed/index."""
    rng = rng_for(seed, "nuclei", index)
    n_regions = int(rng.integers(2, 6))
    seeds = np.zeros(size, np.int32)
    pts = rng.uniform((0, 0), size, size=(n_regions, 2)).astype(int)
    seeds[pts[:, 0], pts[:, 1]] = np.arange(1, n_regions + 1)
    _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    region = seeds[iy, ix] - 1
    conc = np.zeros((*size, 2), np.float32)
    mask = np.zeros(size, bool)
    for k in range(n_regions):
        name, style = NUCLEI_TISSUES[int(rng.integers(len(NUCLEI_TISSUES)))]
        tex = render_texture(
            name,
            size,
            mpp,
            rng_for(seed, "nuclei", index, k),
            style=style,
            atypia=float(rng.uniform(0.0, 1.0)),
        )
        sel = region == k
        conc[sel] = tex.conc[sel]
        mask[sel] = tex.nuclei[sel]
    rgb = od_to_rgb(conc, random_stain(rng_for(seed, "nuclei-stain", index), stain_jitter))
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), mask


def write_nuclei_pairs(
    out: str | os.PathLike[str],
    *,
    n_images: int = 8,
    size: int = 1000,
    mpp: float = 0.25,
    seed: int = 0,
    stain_jitter: float = 1.0,
    prefix: str = "synth",
) -> list[str]:
    """Write ``n_images`` image/mask pairs.

    Args:
        out: output folder (``images/`` and ``masks/`` inside).
        n_images: number of pairs.
        size: side of each square image in pixels.
        mpp: microns per pixel.
        seed: seed (same seed -> identical files).
        stain_jitter: stain variation between images.
        prefix: file name prefix (``<prefix>_<nnnn>.png``).

    Returns:
        The file names written.

    Raises:
        InputError: non-positive counts or sizes.
    """
    if n_images < 1 or size < 32 or mpp <= 0:
        raise InputError(
            "nuclei options",
            f"n_images={n_images}, size={size}, mpp={mpp} (need >= 1, >= 32, > 0)",
            "pass e.g. --n-images 8 --size 1000 --mpp 0.25",
        )
    root = Path(out)
    names = []
    for i in range(n_images):
        img, mask = render_nuclei_pair((size, size), mpp, seed, i, stain_jitter)
        name = f"{prefix}_{i:04d}.png"
        with atomic_path(root / "images" / name) as tmp:
            Image.fromarray(img).save(tmp, format="PNG")
        with atomic_path(root / "masks" / name) as tmp:
            Image.fromarray(mask.astype(np.uint8) * 255).save(tmp, format="PNG")
        names.append(name)
    return names
