"""Write pyramidal JPEG-tiled slides that OpenSlide opens, streaming tiles.

Two formats:

* ``svs``: Aperio-style. Every level's ImageDescription starts with
  ``Aperio Image Library`` and carries ``|AppMag = 20|MPP = 0.5`` (MPP scaled per level),
  so OpenSlide reports vendor ``aperio``, ``openslide.mpp-x`` and
  ``openslide.objective-power``. ``mpp=None`` writes AppMag only (mpp must then come from
  10 / objective power).
* ``tiff``: generic pyramidal tiled TIFF: the levels are successive tiled IFDs with
  XResolution/YResolution in pixels per centimetre, which OpenSlide's generic-tiff driver
  reports as ``openslide.mpp-x``; ``mpp=None`` writes no resolution (no mpp at all).

Tiles come from an iterator per level (:class:`PixelSource`), so a level is never held in
memory. Colour pitfall: tifffile's ``photometric="rgb"`` with JPEG compression stores
YCbCr JPEG (PhotometricInterpretation 6, 2x2 chroma subsampling) converted from the RGB
tiles, which OpenSlide decodes back to RGB; ``photometric="ycbcr"`` would instead expect
tiles that are already YCbCr and shift every colour.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import tifffile

from histoprog.errors import InputError
from histoprog.io import atomic_path

__all__ = ["PixelSource", "SlideFormat", "write_slide", "SUFFIX"]

SlideFormat = Literal["svs", "tiff"]

SUFFIX: dict[str, str] = {"svs": ".svs", "tiff": ".tiff"}
"""File suffix of each format."""

_APERIO_HEADER = "Aperio Image Library v12.0.15"


class PixelSource(Protocol):
    """What :func:`write_slide` needs: level sizes and row-major tiles per level."""

    @property
    def n_levels(self) -> int:
        """Number of pyramid levels."""
        ...

    def level_size(self, level: int) -> tuple[int, int]:
        """(width, height) of a level."""
        ...

    def level_downsample(self, level: int) -> int:
        """Integer downsample of a level relative to level 0."""
        ...

    def iter_tiles(self, level: int, tile: int) -> Iterator[np.ndarray]:
        """``(tile, tile, 3)`` uint8 tiles of a level, row-major, edges padded."""
        ...


def _aperio_description(
    level: int,
    size0: tuple[int, int],
    size: tuple[int, int],
    tile: int,
    quality: int,
    magnification: float | None,
    mpp: float | None,
    name: str,
) -> str:
    """ImageDescription of one level in the Aperio style."""
    w0, h0 = size0
    w, h = size
    if level == 0:
        head = (
            f"{_APERIO_HEADER} \r\n{w0}x{h0} [0,0 {w0}x{h0}] ({tile}x{tile}) JPEG/RGB Q={quality}"
        )
    else:
        head = f"{_APERIO_HEADER} \r\n{w0}x{h0} -> {w}x{h} - "
    fields = [head]
    if magnification is not None:
        fields.append(f"AppMag = {magnification:g}")
    if mpp is not None:
        fields.append(f"MPP = {mpp:.4f}")
    if level == 0:
        fields.append(f"Filename = {name}")
    return "|".join(fields)


def write_slide(
    path: str | os.PathLike[str],
    source: PixelSource,
    *,
    fmt: SlideFormat,
    mpp: float | None,
    magnification: float | None,
    tile: int = 256,
    quality: int = 85,
    workers: int = 1,
) -> Path:
    """Write a pyramidal JPEG-tiled slide atomically.

    Args:
        path: output file (its suffix is not checked; use :data:`SUFFIX`).
        source: pixels, streamed tile by tile.
        fmt: ``svs`` (Aperio-style) or ``tiff`` (generic pyramidal TIFF).
        mpp: level-0 microns per pixel; ``None`` writes none (see the module docstring).
        magnification: objective power written as AppMag (svs only; None writes none).
        tile: tile side in pixels (multiple of 16).
        quality: JPEG quality (1-100).
        workers: threads tifffile may use to compress tiles.

    Returns:
        The path written.

    Raises:
        InputError: an unknown format or a bad tile size.
    """
    if fmt not in SUFFIX:
        raise InputError("slide format", f"unknown format {fmt!r}", "use 'svs' or 'tiff'")
    if tile % 16 or tile < 16:
        raise InputError("tile size", f"{tile} is not a positive multiple of 16", "use 256 or 512")
    out = Path(path)
    w0, h0 = source.level_size(0)
    bigtiff = w0 * h0 * 3 * 1.4 > 2**32 - 2**28  # raw size; JPEG is far smaller, be safe
    with atomic_path(out) as tmp, tifffile.TiffWriter(tmp, bigtiff=bigtiff) as tw:
        for level in range(source.n_levels):
            w, h = source.level_size(level)
            d = source.level_downsample(level)
            kwargs: dict[str, object] = {}
            if fmt == "svs":
                kwargs["description"] = _aperio_description(
                    level,
                    (w0, h0),
                    (w, h),
                    tile,
                    quality,
                    magnification,
                    None if mpp is None else mpp * d,
                    out.stem,
                )
            elif mpp is not None:
                per_cm = 1e4 / (mpp * d)
                kwargs["resolution"] = (per_cm, per_cm)
                kwargs["resolutionunit"] = "CENTIMETER"
            tw.write(
                source.iter_tiles(level, tile),
                shape=(h, w, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                photometric="rgb",
                compression="jpeg",
                compressionargs={"level": quality},
                subfiletype=0 if level == 0 else 1,
                metadata=None,
                software="histoprog synth",
                maxworkers=workers,
                **kwargs,
            )
    return out
