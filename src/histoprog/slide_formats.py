"""What a slide file that OpenSlide cannot open probably is, and what to do about it.

Recognised by the file's first bytes, else its suffix, so that the message for a format
no reader here supports (Zeiss CZI, Olympus VSI, a plain image, a stripped TIFF) is not
the advice for a corrupt file.
"""

from __future__ import annotations

import os
from pathlib import Path

import tifffile

__all__ = ["unreadable_format"]

CONVERT = (
    "convert it to a pyramidal OME-TIFF (QuPath's 'Export > OME-TIFF', or bioformats2raw + "
    "raw2ometiff) or a tiled pyramidal TIFF (vips tiffsave --tile --pyramid), and point the "
    "slide table at that file"
)

_BY_SUFFIX: dict[str, str] = {
    ".czi": "a Zeiss CZI file",
    ".vsi": "an Olympus/Evident VSI file (its pixels are in the .ets files of its folder)",
    ".lif": "a Leica LIF file",
    ".nd2": "a Nikon ND2 file",
    ".isyntax": "a Philips iSyntax file",
    ".jp2": "a JPEG 2000 image",
    ".png": "a plain PNG image, not a whole-slide image",
    ".jpg": "a plain JPEG image, not a whole-slide image",
    ".jpeg": "a plain JPEG image, not a whole-slide image",
    ".zarr": "an OME-Zarr store",
}

_BY_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"ZISRAWFILE", ".czi"),
    (b"\x00\x00\x00\x0cjP  ", ".jp2"),
    (b"\x89PNG", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
)


def unreadable_format(path: str | os.PathLike[str]) -> tuple[str, str] | None:
    """(what the file is, what to do) for a format histoprog cannot read, else None.

    None means the file claims a supported format (or nothing recognisable): it is then
    probably truncated or corrupt.
    """
    file = Path(path)
    if file.is_dir():
        what = _BY_SUFFIX.get(file.suffix.lower(), "a folder, not a slide file")
        return what, f"name the slide file itself, or {CONVERT}"
    with open(file, "rb") as handle:
        head = handle.read(16)
    suffix = next((s for magic, s in _BY_MAGIC if head.startswith(magic)), file.suffix.lower())
    if suffix in _BY_SUFFIX:
        return _BY_SUFFIX[suffix], CONVERT
    if suffix == ".mrxs":
        return (
            "a MIRAX slide whose data folder is missing or incomplete",
            f"copy the folder named '{file.stem}' (its Slidedat.ini and Data*.dat) next to "
            "the .mrxs file",
        )
    if suffix == ".dcm" or _is_dicom(file):
        return (
            "a DICOM file OpenSlide cannot open alone",
            "put all DICOM files of the slide (every level) in one folder and name any one "
            f"of them, or {CONVERT}",
        )
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _tiff_problem(file)
    return None


def _is_dicom(file: Path) -> bool:
    """A DICOM Part 10 file: 128-byte preamble then ``DICM``."""
    with open(file, "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def _tiff_problem(file: Path) -> tuple[str, str] | None:
    """Why a parseable TIFF is not a slide OpenSlide opens (not tiled, not 8-bit RGB)."""
    try:
        with tifffile.TiffFile(file) as tif:
            page = tif.pages.first
            tiled, bits, samples = page.is_tiled, page.bitspersample, page.samplesperpixel
    except Exception:  # noqa: BLE001 - a TIFF that does not parse is a corrupt file
        return None
    if bits != 8 or samples not in (3, 4):
        return (
            f"a TIFF of {samples} sample(s) of {bits} bits per pixel, not an 8-bit RGB "
            "brightfield slide (a fluorescence or multichannel image?)",
            "export the brightfield RGB image, or remove the row from the slide table",
        )
    if not tiled:
        return "a TIFF stored in strips, not tiles (OpenSlide reads tiled TIFFs only)", CONVERT
    return None
