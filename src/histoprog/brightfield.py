"""Is a slide a brightfield H&E image? Measured on its low-resolution view only.

Three measurements over the view's pixels (transparent ones left out), with HSV value
V = max(R, G, B) / 255 and saturation S = (max - min) / max:

* **dark**: share of pixels with V < 0.25. A brightfield slide is light glass around the
  tissue; fluorescence (DAPI, FITC) is dark around it. Fails above :data:`MAX_DARK`.
* **glass**: share of bright neutral pixels (V >= 0.7, S <= 0.12): the blank glass every
  scanned slide shows around its tissue. Fails below :data:`MIN_GLASS` (a false-colour
  rendering, e.g. YCbCr read as RGB, tints the glass; a fluorescence view has none).
* **H&E hue**: among stained pixels (not glass, V >= 0.25, S >= 0.1), the share whose hue
  lies in :data:`HE_HUES` (violet hematoxylin through pink eosin to red). Fails below
  :data:`MIN_HE_HUE` (brown DAB immunostains, hue-rotated or false-colour renderings).

Calibration (8 um/px views; ``tests/test_brightfield.py`` checks the same cases): 13 H&E
slides (the CMU slide as SVS, 3-level SVS and generic TIFF; 10 generated CRLM and HCC demo
slides) have dark <= 0.3 %, glass >= 43.8 %, H&E hue >= 98.9 %; 13 real H&E tiles (which
have no glass by nature) dark <= 7.4 %, H&E hue >= 99.8 %. Failing cases: skimage's IHC
image 6.3 % H&E hue; generated IHC (DAB with a light hematoxylin counterstain) 54-65 %;
H&E rotated in hue by 60-240 degrees <= 48 %; generated fluorescence 66 % dark; YCbCr read
as RGB 0 % glass. The thresholds sit between: :data:`MAX_DARK` 50 %, :data:`MIN_GLASS`
1 %, :data:`MIN_HE_HUE` 80 %. Not caught: hue shifts within about 45 degrees, a red-blue
channel swap (both look like a differently balanced H&E), and an immunostain with few
positive cells (mostly blue counterstain, as a hematoxylin-heavy H&E).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from histoprog.errors import SlideError

__all__ = ["BrightfieldStats", "measure", "check_brightfield"]

MAX_DARK = 0.5
"""Largest share of dark pixels (V < :data:`DARK_V`) of a brightfield view."""

MIN_GLASS = 0.01
"""Smallest share of blank glass (bright neutral pixels) of a slide's view."""

MIN_HE_HUE = 0.8
"""Smallest share of stained pixels with an H&E hue."""

HE_HUES = (220.0, 15.0)
"""H&E hue range in degrees, wrapping through 0 (violet 220 to red 15)."""

DARK_V = 0.25
GLASS_V, GLASS_S = 0.7, 0.12
STAIN_S = 0.1
MIN_STAINED_PX = 100
"""Fewer stained pixels than this: no hue measured (tiling then finds no tissue)."""

OVERRIDE = "set tile.allow_non_he: true in config.yaml to tile it anyway"


@dataclass(frozen=True)
class BrightfieldStats:
    """The measurements of one view (shares of its non-transparent pixels)."""

    dark: float
    glass: float
    stained: float
    he_hue: float | None

    def to_dict(self) -> dict[str, float | None]:
        """Plain-JSON form."""
        return asdict(self)


def measure(rgb: np.ndarray, transparent: np.ndarray | None = None) -> BrightfieldStats:
    """Dark, glass and stained shares and the H&E-hue share of a uint8 RGB view."""
    pixels = rgb[..., :3] if transparent is None else rgb[..., :3][~transparent]
    pixels = pixels.reshape(-1, 3).astype(np.float32)
    if len(pixels) == 0:
        return BrightfieldStats(0.0, 0.0, 0.0, None)
    high = pixels.max(axis=1)
    low = pixels.min(axis=1)
    value = high / 255.0
    saturation = np.where(high > 0, (high - low) / np.maximum(high, 1.0), 0.0)
    dark = value < DARK_V
    glass = (value >= GLASS_V) & (saturation <= GLASS_S)
    stained = ~glass & ~dark & (saturation >= STAIN_S)
    he_hue = None
    if stained.sum() >= MIN_STAINED_PX:
        hue = _hue_degrees(pixels[stained], high[stained], low[stained])
        start, end = HE_HUES
        he_hue = float(np.mean((hue >= start) | (hue < end)))
    return BrightfieldStats(
        dark=float(dark.mean()),
        glass=float(glass.mean()),
        stained=float(stained.mean()),
        he_hue=he_hue,
    )


def _hue_degrees(pixels: np.ndarray, high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """HSV hue in [0, 360) of float RGB pixels with their max and min (max > min)."""
    red, green, blue = pixels[:, 0], pixels[:, 1], pixels[:, 2]
    spread = np.maximum(high - low, 1e-6)
    hue = np.where(
        high == red,
        (green - blue) / spread,
        np.where(high == green, 2.0 + (blue - red) / spread, 4.0 + (red - green) / spread),
    )
    return (hue * 60.0) % 360.0


def check_brightfield(
    rgb: np.ndarray,
    transparent: np.ndarray | None,
    slide_id: str,
    *,
    allow: bool = False,
) -> BrightfieldStats:
    """Measure a slide's low-resolution view; fail one that is not brightfield H&E.

    Args:
        rgb: the view (uint8, H x W x 3), e.g. from :func:`histoprog.slides.read_low_resolution`.
        transparent: pixels outside the scanned area (left out), or None.
        slide_id: for the message.
        allow: the override (config key ``tile.allow_non_he``): measure, never fail.

    Returns:
        The measurements (for the slide's record).

    Raises:
        SlideError: a dark background, no blank glass, or stain colours far from H&E;
            the message gives the measured shares and the threshold.
    """
    stats = measure(rgb, transparent)
    problem = None if allow else _problem(stats)
    if problem:
        raise SlideError(
            f"slide '{slide_id}'",
            f"it does not look like a brightfield H&E slide: {problem}",
            "tile only H&E brightfield scans (check the scanner's export and the file's "
            f"colours in the tissue-mask image), or {OVERRIDE}",
        )
    return stats


def _problem(stats: BrightfieldStats) -> str | None:
    """What fails, with the measured value and the threshold; None when all pass."""
    if stats.dark > MAX_DARK:
        return (
            f"dark background as in fluorescence ({stats.dark:.0%} of the view has brightness "
            f"below {DARK_V:.0%}; at most {MAX_DARK:.0%} is expected)"
        )
    if stats.glass < MIN_GLASS:
        tint = " (the background is tinted, as in a false-colour rendering)" * (stats.stained > 0.5)
        return (
            f"no blank glass ({stats.glass:.2%} of the view is bright neutral background; at "
            f"least {MIN_GLASS:.0%} is expected){tint}"
        )
    if stats.he_hue is not None and stats.he_hue < MIN_HE_HUE:
        start, end = HE_HUES
        return (
            f"colours far from H&E stains (only {stats.he_hue:.0%} of the stained pixels have "
            f"a hue between violet and red, {start:g}-{end:g} degrees; at least "
            f"{MIN_HE_HUE:.0%} is expected): an immunostain (brown DAB), or hue-shifted "
            "colours"
        )
    return None
