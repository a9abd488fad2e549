"""Open whole-slide images, resolve their resolution, and read tiles at a target mpp.

Slides open through OpenSlide, except OME-TIFF files, which open through tifffile
(:class:`histoprog.ome_tiff.OmeTiffSlide`, the same interface). Resolution is always asked
for in microns per pixel (mpp), never as a pyramid level (METHODS 1.2-1.3): the slide's
mpp comes from ``openslide.mpp-x`` (an OME-TIFF's physical pixel size), else the slide
sheet's ``mpp`` column, else 10 / objective power; a tile is read from the coarsest level
whose mpp is at most the target (within a tolerance) and resized with antialiasing.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openslide
import tifffile
from PIL import Image

from histoprog.errors import SlideError
from histoprog.ome_tiff import OmeTiffSlide, UnsupportedOmeTiff, is_ome_tiff
from histoprog.resolution import positive_float
from histoprog.slide_formats import unreadable_format

Slide = openslide.OpenSlide | OmeTiffSlide
"""An open slide: OpenSlide's, or an OME-TIFF read through tifffile."""

MPP_COLUMN_FIX = (
    "add the slide's microns per pixel in the 'mpp' column of the slide table "
    "(e.g. 0.25 for 40x, 0.5 for 20x scans)"
)


@dataclass(frozen=True)
class SlideInfo:
    """What histoprog needs to know about a slide, with where its mpp came from."""

    path: str
    width: int
    height: int
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    mpp: float
    mpp_source: str
    objective_power: float | None
    vendor: str | None
    bounds: tuple[int, int, int, int]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class ReadPlan:
    """How to read one output tile: level, region size there and the level-0 step.

    Attributes:
        level: pyramid level read from.
        downsample: that level's downsample relative to level 0.
        level_mpp: mpp of the level read from.
        step_level0: tile size (and grid step) in level-0 pixels.
        read_px: region size read at ``level`` before resizing to ``tile_px``.
        tile_px: output tile size.
        target_mpp: the mpp asked for.
        effective_mpp: the mpp the output tile really has (step_level0 * mpp / tile_px).
    """

    level: int
    downsample: float
    level_mpp: float
    step_level0: int
    read_px: int
    tile_px: int
    target_mpp: float
    effective_mpp: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


def open_slide(path: str | os.PathLike[str], slide_id: str, as_written: str | None = None) -> Slide:
    """Open a slide, turning every failure into a `SlideError` that names the slide.

    OME-TIFF files open through tifffile, all others through OpenSlide. Besides opening,
    the top-left pixel of the coarsest level is read, so a file whose header parses but
    whose tiles do not decode fails here rather than mid-cohort.

    Args:
        path: the slide file (resolved).
        slide_id: for messages.
        as_written: the path as the slide table gives it (the ``path_as_written`` column
            of :func:`histoprog.sheets.load_slides`), shown when the file is missing.
    """
    where = f"slide '{slide_id}' ({path})"
    if not Path(path).is_file():
        written = f"the slide table gives '{as_written}', which " if as_written else "it "
        raise SlideError(
            where,
            f"the file does not exist ({written}resolves to '{Path(path).absolute()}')",
            "correct the path in the slide table (relative paths are relative to the "
            "table's folder) or remove the row",
        )
    slide = _open_ome_tiff(path, where) if is_ome_tiff(path) else _open_openslide(path, where)
    try:
        last = slide.level_count - 1
        slide.read_region((0, 0), last, (1, 1))
    except (openslide.OpenSlideError, OSError) as err:
        slide.close()
        raise _unreadable(
            path,
            where,
            "it opens but its reader cannot decode its pixels",
            str(err),
            "the file is probably truncated or corrupt: re-copy it from the scanner, "
            "or remove the row from the slide table",
        ) from err
    return slide


def _unreadable(
    path: str | os.PathLike[str], where: str, problem: str, detail: str, fix: str
) -> SlideError:
    """The error for a file its reader refuses: the format's own advice when it is known."""
    known = unreadable_format(path)
    if known is not None:
        what, format_fix = known
        return SlideError(where, f"{problem}: it is {what}", format_fix)
    return SlideError(where, f"{problem} ({detail})", fix)


def _open_openslide(path: str | os.PathLike[str], where: str) -> openslide.OpenSlide:
    """OpenSlide's handle; a format it cannot read gets advice for that format."""
    try:
        return openslide.OpenSlide(os.fspath(path))
    except (openslide.OpenSlideError, OSError) as err:
        raise _unreadable(
            path,
            where,
            "OpenSlide cannot open it",
            f"{type(err).__name__}: {err}",
            "check that the file is a complete whole-slide image in a format OpenSlide "
            "supports (SVS, tiled TIFF, NDPI, MRXS, SCN, Philips TIFF, DICOM) or an "
            "OME-TIFF; re-export or re-copy it, or remove the row from the slide table",
        ) from err


def _open_ome_tiff(path: str | os.PathLike[str], where: str) -> OmeTiffSlide:
    """The OME-TIFF reader; a layout it does not read says what the file holds."""
    try:
        return OmeTiffSlide(path)
    except UnsupportedOmeTiff as err:
        raise SlideError(
            where,
            f"it is an OME-TIFF histoprog cannot read: {err}",
            "export the slide as an 8-bit RGB (brightfield) OME-TIFF, or remove the row",
        ) from err
    except (tifffile.TiffFileError, OSError, ValueError, IndexError, KeyError) as err:
        raise SlideError(
            where,
            f"its OME-TIFF structure does not read ({type(err).__name__}: {err})",
            "the file is probably truncated or corrupt: re-export or re-copy it, or remove "
            "the row from the slide table",
        ) from err


def resolve_mpp(
    properties: dict[str, str] | Any, sheet_mpp: float | None, slide_id: str
) -> tuple[float, str]:
    """Return the slide's level-0 mpp and its source (METHODS 1.3).

    Order: ``openslide.mpp-x`` metadata, the slide sheet's ``mpp``, 10 / objective power.

    Raises:
        SlideError: when none is available (the message names the ``mpp`` column).
    """
    meta = positive_float(properties.get(openslide.PROPERTY_NAME_MPP_X))
    if meta is not None:
        return meta, "metadata"
    if sheet_mpp is not None and math.isfinite(sheet_mpp) and sheet_mpp > 0:
        return float(sheet_mpp), "sheet"
    power = positive_float(properties.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER))
    if power is not None:
        return 10.0 / power, "objective_power"
    raise SlideError(
        f"slide '{slide_id}'",
        "its resolution is unknown (no openslide.mpp-x, no objective power in the file, "
        "and no 'mpp' value in the slide table)",
        MPP_COLUMN_FIX,
    )


def slide_info(
    slide: Slide, path: str | os.PathLike[str], slide_id: str, sheet_mpp: float | None
) -> SlideInfo:
    """Collect dimensions, pyramid, mpp (with source), objective power and bounds."""
    props = slide.properties
    mpp, source = resolve_mpp(props, sheet_mpp, slide_id)
    width, height = slide.dimensions
    bounds = (
        int(props.get(openslide.PROPERTY_NAME_BOUNDS_X, 0)),
        int(props.get(openslide.PROPERTY_NAME_BOUNDS_Y, 0)),
        int(props.get(openslide.PROPERTY_NAME_BOUNDS_WIDTH, width)),
        int(props.get(openslide.PROPERTY_NAME_BOUNDS_HEIGHT, height)),
    )
    return SlideInfo(
        path=os.fspath(path),
        width=width,
        height=height,
        level_dimensions=tuple(tuple(d) for d in slide.level_dimensions),
        level_downsamples=tuple(float(d) for d in slide.level_downsamples),
        mpp=mpp,
        mpp_source=source,
        objective_power=positive_float(props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)),
        vendor=props.get(openslide.PROPERTY_NAME_VENDOR),
        bounds=bounds,
    )


def choose_level(info: SlideInfo, target_mpp: float, tolerance: float = 0.01) -> int:
    """Index of the coarsest level whose mpp is <= ``target_mpp`` (within ``tolerance``).

    Level 0 is used when even it is coarser than the target (the tile is then upsampled;
    the recorded effective mpp tells).
    """
    best = 0
    for level, downsample in enumerate(info.level_downsamples):
        if info.mpp * downsample <= target_mpp * (1.0 + tolerance):
            best = level
    return best


def plan_read(
    info: SlideInfo, target_mpp: float, tile_px: int, tolerance: float = 0.01
) -> ReadPlan:
    """Level, level-0 grid step and read size for ``tile_px`` tiles at ``target_mpp``."""
    if target_mpp <= 0 or tile_px <= 0:
        raise ValueError("target_mpp and tile_px must be positive")
    level = choose_level(info, target_mpp, tolerance)
    downsample = info.level_downsamples[level]
    step_level0 = max(1, round(tile_px * target_mpp / info.mpp))
    read_px = max(1, round(step_level0 / downsample))
    return ReadPlan(
        level=level,
        downsample=downsample,
        level_mpp=info.mpp * downsample,
        step_level0=step_level0,
        read_px=read_px,
        tile_px=tile_px,
        target_mpp=target_mpp,
        effective_mpp=step_level0 * info.mpp / tile_px,
    )


def read_tile(slide: Slide, plan: ReadPlan, x: int, y: int) -> np.ndarray:
    """Read the tile whose level-0 top-left is (x, y) as an RGB uint8 array (tile_px square).

    Transparent pixels (outside the scanned area) become white.
    """
    region = slide.read_region((int(x), int(y)), plan.level, (plan.read_px, plan.read_px))
    rgb = rgba_to_rgb(region)
    if plan.read_px != plan.tile_px:
        rgb = rgb.resize((plan.tile_px, plan.tile_px), Image.Resampling.LANCZOS)
    return np.asarray(rgb)


def rgba_to_rgb(image: Image.Image) -> Image.Image:
    """Composite an OpenSlide RGBA region onto white (fully opaque regions: drop alpha)."""
    if image.mode != "RGBA" or image.getchannel("A").getextrema() == (255, 255):
        return image.convert("RGB")
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A"))
    return background


def read_low_resolution(
    slide: Slide, info: SlideInfo, target_mpp: float, chunk_px: int = 4096
) -> tuple[np.ndarray, np.ndarray, float]:
    """Read the whole slide (within its bounds) at about ``target_mpp``, chunk by chunk.

    Reads from the coarsest level whose mpp is at most 1.25 x ``target_mpp`` (pyramid
    downsamples are rarely exact powers of two) and reduces each chunk by the integer
    factor nearest to the target, so memory stays bounded even for single-level slides.

    Returns:
        (rgb uint8 HxWx3, alpha-is-zero bool HxW, scale) where ``scale`` is level-0 pixels
        per low-resolution pixel.
    """
    level = choose_level(info, target_mpp, tolerance=0.25)
    downsample = info.level_downsamples[level]
    factor = max(1, round(target_mpp / (info.mpp * downsample)))
    scale = downsample * factor
    bx, by, bw, bh = info.bounds
    level_w, level_h = int(bw / downsample), int(bh / downsample)
    out_w, out_h = max(1, level_w // factor), max(1, level_h // factor)
    rgb = np.full((out_h, out_w, 3), 255, dtype=np.uint8)
    transparent = np.zeros((out_h, out_w), dtype=bool)
    chunk = max(factor, (chunk_px // factor) * factor)
    for cy in range(0, out_h * factor, chunk):
        for cx in range(0, out_w * factor, chunk):
            w = min(chunk, out_w * factor - cx)
            h = min(chunk, out_h * factor - cy)
            origin = (int(bx + cx * downsample), int(by + cy * downsample))
            region = slide.read_region(origin, level, (w, h))
            if factor > 1:
                region = region.reduce(factor)
            arr = np.asarray(region)
            oy, ox = cy // factor, cx // factor
            alpha = arr[..., 3]
            block = arr[..., :3].copy()
            block[alpha == 0] = 255
            rgb[oy : oy + arr.shape[0], ox : ox + arr.shape[1]] = block
            transparent[oy : oy + arr.shape[0], ox : ox + arr.shape[1]] = alpha == 0
    return rgb, transparent, scale


def read_thumbnail(
    path: str | os.PathLike[str], slide_id: str, info: SlideInfo, long_side_px: int
) -> tuple[np.ndarray, float]:
    """The slide read a little finer than ``long_side_px`` on its long side (for figures).

    Reads finer than asked (a level may be up to 1.25 x coarser than the target and the
    reduction factor is rounded), so that the figure resizes it down to exactly its size.

    Returns:
        (rgb uint8 H x W x 3, level-0 pixels per pixel).
    """
    long_side_um = max(info.bounds[2], info.bounds[3]) * info.mpp
    target_mpp = max(info.mpp, long_side_um / max(long_side_px, 16) / 1.5)
    slide = open_slide(path, slide_id)
    try:
        rgb, _, scale = read_low_resolution(slide, info, target_mpp)
    finally:
        slide.close()
    return rgb, scale
