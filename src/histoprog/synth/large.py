"""One very large synthetic slide (>= 40,000 px square) with bounded memory, for scale tests.

The grid comes from the same layout model as cohort slides (a big tumour with all the
other classes around it). Pixels are streamed band by band from the texture bank, so
peak memory is the bank plus one band of tiles: independent of the slide's area.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histoprog.errors import InputError
from histoprog.io import atomic_path
from histoprog.synth.layout import make_grid, sample_latent
from histoprog.synth.render import SlideGeometry, SlideRenderer, TextureBank, cell_px_for
from histoprog.synth.seeding import rng_for
from histoprog.synth.slide_writer import SlideFormat, write_slide
from histoprog.synth.stain import random_stain

__all__ = ["LargeSlide", "write_large_slide"]


@dataclass(frozen=True)
class LargeSlide:
    """What :func:`write_large_slide` wrote.

    Attributes:
        path: the slide file.
        size: level-0 (width, height) in pixels.
        grid: the true class grid.
        seconds: wall time of rendering and writing.
        bytes: file size.
    """

    path: Path
    size: tuple[int, int]
    grid: np.ndarray
    seconds: float
    bytes: int


def write_large_slide(
    path: str | os.PathLike[str],
    size_px: int = 40000,
    *,
    mpp: float = 0.5,
    fmt: SlideFormat = "tiff",
    seed: int = 0,
    levels: int = 3,
    factor: int = 4,
    tile: int = 512,
    quality: int = 80,
    grid_path: str | os.PathLike[str] | None = None,
    texture_variants: int = 4,
) -> LargeSlide:
    """Write a square slide at least ``size_px`` wide and high, streaming its tiles.

    Args:
        path: output slide file.
        size_px: minimum level-0 side in pixels (>= 1000).
        mpp: level-0 microns per pixel (0.5 or 0.25).
        fmt: ``tiff`` or ``svs``.
        seed: seed of layout, textures and stain.
        levels: pyramid levels.
        factor: downsample ratio between levels (2 or 4).
        tile: TIFF tile side.
        quality: JPEG quality.
        grid_path: optional ``.npy`` file for the true grid.
        texture_variants: texture sheets per class.

    Returns:
        A :class:`LargeSlide`.

    Raises:
        InputError: a size below 1000 px or an impossible pyramid.
    """
    if size_px < 1000:
        raise InputError("large slide size", f"{size_px} px is below 1000", "use >= 1000")
    cell = cell_px_for(mpp)
    strip = int(round(100 * cell / 224))
    n = max(16, math.ceil((size_px - strip) / cell))
    t0 = time.perf_counter()
    rng = rng_for(seed, "large", "layout")
    grid = make_grid(sample_latent(rng), n, n, rng)
    geom = SlideGeometry.make(n, n, mpp, levels, factor)
    bank = TextureBank.build(mpp, seed, n_variants=texture_variants)
    renderer = SlideRenderer(
        grid,
        geom,
        bank,
        random_stain(rng_for(seed, "large", "stain")),
        rng_for(seed, "large", "cells"),
    )
    out = write_slide(
        path, renderer, fmt=fmt, mpp=mpp, magnification=10.0 / mpp, tile=tile, quality=quality
    )
    if grid_path is not None:
        with atomic_path(grid_path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, grid)
    return LargeSlide(out, geom.size, grid, time.perf_counter() - t0, out.stat().st_size)
