"""OME-TIFF slides (QuPath, Bio-Formats exports) read through tifffile.

:class:`OmeTiffSlide` offers the part of ``openslide.OpenSlide`` that histoprog uses
(``properties``, ``dimensions``, ``level_count``, ``level_dimensions``,
``level_downsamples``, ``read_region``, ``close``), so :mod:`histoprog.slides` treats both
alike. OpenSlide itself would open a tiled OME-TIFF as a generic TIFF with one level and
no resolution.

* Levels: the image's sub-resolutions (SubIFDs, or the pages tifffile lists as levels of
  the series), level 0 first; a single-level file has one.
* Resolution: ``PhysicalSizeX`` / ``PhysicalSizeY`` of the OME metadata (converted to um
  from their unit) as ``openslide.mpp-x`` / ``-y``; absent when the file has none.
  ``NominalMagnification`` of the image's objective becomes ``openslide.objective-power``.
* Pixels: 8-bit RGB, interleaved (one page per level) or as three channel pages; tiled or
  stripped. Only the tiles or strips a region covers are read and decoded, so a region
  holds exactly the pixels the file stores. Other layouts (fluorescence channels, 16-bit)
  raise :class:`UnsupportedOmeTiff` saying what the file holds.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET

import numpy as np
import tifffile
from PIL import Image

from histoprog.resolution import positive_float

__all__ = ["OmeTiffSlide", "UnsupportedOmeTiff", "is_ome_tiff"]

VENDOR = "ome-tiff"

_UM_PER_UNIT = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6, "Å": 1e-4}


class UnsupportedOmeTiff(ValueError):
    """An OME-TIFF whose pixel layout histoprog does not read (the message says what it is)."""


def is_ome_tiff(path: str | os.PathLike[str]) -> bool:
    """True when the file is a TIFF whose first page carries OME-XML metadata."""
    try:
        with tifffile.TiffFile(path) as tif:
            return bool(tif.is_ome)
    except Exception:  # noqa: BLE001 - any file tifffile cannot parse is simply not OME-TIFF
        return False


class OmeTiffSlide:
    """A pyramidal or single-level OME-TIFF with OpenSlide's slide interface.

    Raises:
        UnsupportedOmeTiff: not 8-bit RGB, or channels split within a page.
        tifffile.TiffFileError: the file does not parse as TIFF.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._tif = tifffile.TiffFile(path)
        try:
            number, series = max(enumerate(self._tif.series), key=lambda s: _plane_size(s[1]))
            self._levels = [_level_pages(level) for level in series.levels]
            metadata = _ome_image(self._tif.ome_metadata, number)
        except Exception:
            self._tif.close()
            raise
        self.level_dimensions: tuple[tuple[int, int], ...] = tuple(
            (int(pages[0].imagewidth), int(pages[0].imagelength)) for pages in self._levels
        )
        w0, h0 = self.level_dimensions[0]
        self.level_downsamples: tuple[float, ...] = tuple(
            (w0 / w + h0 / h) / 2.0 for w, h in self.level_dimensions
        )
        self.properties: dict[str, str] = {
            "openslide.vendor": VENDOR,
            "openslide.level-count": str(self.level_count),
            **_resolution_properties(metadata),
        }

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return len(self._levels)

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 (width, height)."""
        return self.level_dimensions[0]

    def read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int]
    ) -> Image.Image:
        """RGBA region of ``size`` at ``level`` whose top-left is ``location`` in level 0.

        Pixels outside the image are transparent, as OpenSlide returns them.

        Raises:
            OSError: a tile or strip that does not decode.
        """
        downsample = self.level_downsamples[level]
        x0 = math.floor(location[0] / downsample + 1e-6)
        y0 = math.floor(location[1] / downsample + 1e-6)
        width, height = int(size[0]), int(size[1])
        out = np.zeros((height, width, 4), np.uint8)
        level_w, level_h = self.level_dimensions[level]
        ix0, iy0 = max(0, x0), max(0, y0)
        ix1, iy1 = min(level_w, x0 + width), min(level_h, y0 + height)
        if ix1 > ix0 and iy1 > iy0:
            rgb = self._read_level(level, ix0, iy0, ix1, iy1)
            out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0, :3] = rgb
            out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0, 3] = 255
        return Image.fromarray(out, "RGBA")

    def _read_level(self, level: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """RGB pixels [y0:y1, x0:x1] of a level (inside the image)."""
        planes = [_read_page(self._tif, page, x0, y0, x1, y1) for page in self._levels[level]]
        return planes[0][..., :3] if len(planes) == 1 else np.concatenate(planes, axis=2)

    def close(self) -> None:
        """Close the file."""
        self._tif.close()

    def __enter__(self) -> OmeTiffSlide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _plane_size(series: tifffile.TiffPageSeries) -> int:
    """Pixels of one plane of a series (the main image is the largest)."""
    axes = series.axes
    return int(series.shape[axes.index("Y")] * series.shape[axes.index("X")])


def _level_pages(level: tifffile.TiffPageSeries) -> list[tifffile.TiffPage]:
    """The pages of one level: one interleaved RGB page, or three channel pages."""
    axes, shape = level.axes, level.shape
    dtype = np.dtype(level.dtype)
    sizes = dict(zip(axes, shape, strict=True))
    layout = f"axes {axes} of shape {shape}, {dtype.name}"
    if dtype != np.uint8:
        raise UnsupportedOmeTiff(f"{layout}: histoprog reads 8-bit RGB brightfield images")
    extra = {a: n for a, n in sizes.items() if a not in "YXSC" and n != 1}
    if extra:
        raise UnsupportedOmeTiff(f"{layout}: more than one plane ({extra})")
    samples, channels = sizes.get("S", 1), sizes.get("C", 1)
    pages = [p.aspage() for p in level.pages if p is not None]
    if samples in (3, 4) and channels == 1 and len(pages) == 1:
        if pages[0].planarconfig != 1:
            raise UnsupportedOmeTiff(f"{layout}: colour planes stored separately in one page")
        return pages
    if samples == 1 and channels == 3 and len(pages) == 3:
        return pages
    raise UnsupportedOmeTiff(
        f"{layout}: {channels} channel(s) of {samples} sample(s); histoprog reads RGB "
        "brightfield images (this looks like a fluorescence or multichannel image)"
    )


def _read_page(
    tif: tifffile.TiffFile, page: tifffile.TiffPage, x0: int, y0: int, x1: int, y1: int
) -> np.ndarray:
    """Decode the tiles or strips of ``page`` that cover [y0:y1, x0:x1]; (h, w, samples)."""
    if page.is_tiled:
        seg_h, seg_w = int(page.tilelength), int(page.tilewidth)
    else:
        seg_h, seg_w = min(int(page.rowsperstrip), int(page.imagelength)), int(page.imagewidth)
    n_cols = -(-int(page.imagewidth) // seg_w)
    samples = int(page.samplesperpixel)
    out = np.full((y1 - y0, x1 - x0, samples), 255, np.uint8)
    indices = [
        row * n_cols + col
        for row in range(y0 // seg_h, (y1 - 1) // seg_h + 1)
        for col in range(x0 // seg_w, (x1 - 1) // seg_w + 1)
    ]
    offsets = [page.dataoffsets[i] for i in indices]
    counts = [page.databytecounts[i] for i in indices]
    segments = tif.filehandle.read_segments(offsets, counts, indices=indices, sort=True)
    for data, index in segments:
        if not data:
            continue
        try:
            decoded = page.decode(data, index, jpegtables=page.jpegtables)[0]
        except Exception as err:  # noqa: BLE001 - codecs raise many types; report as I/O
            raise OSError(f"tile {index} of page {page.index} does not decode ({err})") from err
        block = np.asarray(decoded).reshape(-1, *np.shape(decoded)[-3:])[0]
        top, left = (index // n_cols) * seg_h, (index % n_cols) * seg_w
        ys = slice(max(y0, top), min(y1, top + block.shape[0]))
        xs = slice(max(x0, left), min(x1, left + block.shape[1]))
        out[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = block[
            ys.start - top : ys.stop - top, xs.start - left : xs.stop - left
        ]
    return out


def _ome_image(xml: str | None, index: int) -> tuple[ET.Element, ET.Element] | None:
    """The OME root and the ``Image`` element of series ``index`` (None without OME-XML)."""
    if not xml:
        return None
    root = ET.fromstring(xml)
    images = [e for e in root if _local(e.tag) == "Image"]
    if not images:
        return None
    return root, images[index] if index < len(images) else images[0]


def _local(tag: str) -> str:
    """An XML tag without its namespace."""
    return tag.rpartition("}")[2]


def _child(element: ET.Element, name: str) -> ET.Element | None:
    """The first child called ``name`` (any namespace)."""
    return next((e for e in element if _local(e.tag) == name), None)


def _resolution_properties(metadata: tuple[ET.Element, ET.Element] | None) -> dict[str, str]:
    """``openslide.mpp-x`` / ``-y`` and ``openslide.objective-power`` from OME metadata."""
    if metadata is None:
        return {}
    root, image = metadata
    props: dict[str, str] = {}
    pixels = _child(image, "Pixels")
    for axis in ("X", "Y"):
        um = _physical_um(pixels, axis) if pixels is not None else None
        if um is not None:
            props[f"openslide.mpp-{axis.lower()}"] = repr(um)
    power = _objective_power(root, image)
    if power is not None:
        props["openslide.objective-power"] = f"{power:g}"
    return props


def _physical_um(pixels: ET.Element, axis: str) -> float | None:
    """``PhysicalSize<axis>`` in um, or None when absent, zero or in an unknown unit."""
    factor = _UM_PER_UNIT.get(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
    size = positive_float(pixels.get(f"PhysicalSize{axis}"))
    return None if size is None or factor is None else size * factor


def _objective_power(root: ET.Element, image: ET.Element) -> float | None:
    """``NominalMagnification`` of the objective the image's ``ObjectiveSettings`` names."""
    settings = _child(image, "ObjectiveSettings")
    if settings is None:
        return None
    for instrument in (e for e in root if _local(e.tag) == "Instrument"):
        for objective in (e for e in instrument if _local(e.tag) == "Objective"):
            if objective.get("ID") == settings.get("ID"):
                return positive_float(objective.get("NominalMagnification"))
    return None
