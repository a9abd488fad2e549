"""Scanner-like variation of training patches (an addition to METHODS 3.3's flips/rotations).

Slide tiles differ from curated training patches in ways flips and rotations do not cover:
a tile read from a pyramid level was downsampled by the scanner's filter (often a box
mean) and JPEG-compressed at that level, while a training patch is resized with Lanczos;
and per-tile Macenko removes only part of the stain difference between slides. A model
trained without these variations learns the patches' resampling and stain and loses tiles
of some slides (on the generated demo cohorts: 80 % agreement with the planted classes on
40x slides and pyramid-level reads vs 99 % on Lanczos-resized 20x reads).

:class:`ScannerJitter` draws, per patch: an H&E stain perturbation in Ruifrok's HED
colour-deconvolution space (Tellez et al. 2019, "HED-light"), the resampling filter used
to reach the model's tile size, and an optional JPEG round trip. It uses torch's RNG, so
DataLoader workers are seeded like the geometric augmentation.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from histoprog.defaults import default

__all__ = ["RESAMPLING_FILTERS", "ScannerJitter", "jitter_hed"]

RESAMPLING_FILTERS: dict[str, Image.Resampling] = {
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
}
"""Filters a tile may have been resampled with (Lanczos: ours; box: pyramid levels)."""

# Ruifrok & Johnston's H, E, DAB optical-density vectors (rows), as scikit-image uses them
_RGB_FROM_HED = np.array(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float64
)
_RGB_FROM_HED /= np.linalg.norm(_RGB_FROM_HED, axis=1, keepdims=True)
_HED_FROM_RGB = np.linalg.inv(_RGB_FROM_HED)


def jitter_hed(patch: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Perturb the stain amounts of an RGB ``uint8`` patch: ``hed * scale + shift``.

    Args:
        patch: H x W x 3 ``uint8`` RGB.
        scale: 3 multipliers of the H, E and DAB concentrations (1 = unchanged).
        shift: 3 offsets of the concentrations, in optical-density units.

    Returns:
        The perturbed patch (``uint8``); ``scale = 1, shift = 0`` returns it up to rounding.
    """
    od = -np.log10((patch.astype(np.float64) + 1.0) / 256.0)
    hed = od.reshape(-1, 3) @ _HED_FROM_RGB
    od_new = (hed * scale + shift) @ _RGB_FROM_HED
    rgb = 256.0 * np.power(10.0, -np.maximum(od_new, 0.0)) - 1.0
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8).reshape(patch.shape)


@dataclass(frozen=True)
class ScannerJitter:
    """Random stain, resampling and JPEG variation of a training patch (config ``tissue.jitter``).

    Attributes:
        stain_sigma: H and E concentrations are scaled by U(1 - s, 1 + s) and shifted by
            U(-s, s) * 0.1 OD units (0 = no stain jitter; DAB is left alone).
        filters: resampling filters drawn from when the patch is resized to the tile size.
        jpeg_probability: chance of a JPEG round trip after resizing.
        jpeg_quality: inclusive range of the JPEG quality drawn.
    """

    stain_sigma: float = default("tissue.jitter.stain_sigma")
    filters: tuple[str, ...] = default("tissue.jitter.filters")
    jpeg_probability: float = default("tissue.jitter.jpeg_probability")
    jpeg_quality: tuple[int, int] = (70, 95)

    def __post_init__(self) -> None:
        unknown = [f for f in self.filters if f not in RESAMPLING_FILTERS]
        low, high = self.jpeg_quality
        if unknown or not self.filters:
            raise ValueError(f"filters {self.filters} must be from {sorted(RESAMPLING_FILTERS)}")
        if not 0 <= self.stain_sigma < 1 or not 0 <= self.jpeg_probability <= 1:
            raise ValueError("stain_sigma must be in [0, 1) and jpeg_probability in [0, 1]")
        if not 1 <= low <= high <= 100:
            raise ValueError(f"jpeg_quality {self.jpeg_quality} must be within 1..100, low first")

    def __call__(self, patch: np.ndarray, tile_px: int | None) -> np.ndarray:
        """Jitter ``patch`` (H x W x 3 ``uint8``) and resize it to ``tile_px`` (None = keep)."""
        if self.stain_sigma > 0:
            s = self.stain_sigma
            scale = 1.0 + s * (2.0 * _uniform(3) - 1.0)
            shift = 0.1 * s * (2.0 * _uniform(3) - 1.0)
            scale[2], shift[2] = 1.0, 0.0
            patch = jitter_hed(patch, scale, shift)
        image = Image.fromarray(patch)
        if tile_px is not None and patch.shape[:2] != (tile_px, tile_px):
            name = self.filters[int(torch.randint(len(self.filters), ()))]
            image = image.resize((tile_px, tile_px), RESAMPLING_FILTERS[name])
        if float(torch.rand(())) < self.jpeg_probability:
            low, high = self.jpeg_quality
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=int(torch.randint(low, high + 1, ())))
            buffer.seek(0)
            image = Image.open(buffer).convert("RGB")
        return np.asarray(image, dtype=np.uint8).copy()


def _uniform(n: int) -> np.ndarray:
    return torch.rand(n, dtype=torch.float64).numpy()
