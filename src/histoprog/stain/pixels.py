"""Pixel helpers shared by the stain normalisers: tile checks, pooling, optical density.

Everything here works on RGB ``uint8`` arrays; see :mod:`histoprog.stain.base` for the
conventions (stain matrix layout, background intensity).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from histoprog.errors import InputError

StainMatrix = tuple[tuple[float, float, float], tuple[float, float, float]]
"""A 2 x 3 stain matrix as nested tuples: rows H, E; columns OD of R, G, B."""

TORCHSTAIN_HEREF = ((0.5626, 0.7201, 0.4062), (0.2159, 0.8012, 0.5581))
"""torchstain's standard reference stain vectors ``HERef``, transposed to rows H, E."""
TORCHSTAIN_MAXCREF = (1.9705, 1.0308)
"""torchstain's standard reference maximum concentrations ``maxCRef`` (H, E)."""


def check_tile(tile: Any, what: str = "tile") -> np.ndarray:
    """Return ``tile`` as a C-contiguous uint8 H x W x 3 array or raise InputError."""
    if not isinstance(tile, np.ndarray):
        raise InputError(
            what, f"must be a numpy array, got {type(tile).__name__}", "pass an RGB array"
        )
    if tile.ndim != 3 or tile.shape[-1] != 3:
        fix = (
            "drop the alpha channel (tile[..., :3])"
            if tile.ndim == 3 and tile.shape[-1] == 4
            else ("pass one RGB tile of shape (height, width, 3)")
        )
        raise InputError(what, f"must have shape (height, width, 3), got {tile.shape}", fix)
    if tile.dtype != np.uint8:
        raise InputError(
            what,
            f"must have dtype uint8, got {tile.dtype}",
            "pass 8-bit RGB pixels (0..255), e.g. np.asarray(PIL_image.convert('RGB'))",
        )
    if tile.shape[0] == 0 or tile.shape[1] == 0:
        raise InputError(what, f"is empty (shape {tile.shape})", "pass a non-empty tile")
    return _writable(tile)


def check_batch(tiles: Any, what: str = "tile batch") -> np.ndarray:
    """Return ``tiles`` as a C-contiguous uint8 N x H x W x 3 array or raise InputError."""
    if not isinstance(tiles, np.ndarray) or tiles.ndim != 4 or tiles.shape[-1] != 3:
        shape = getattr(tiles, "shape", type(tiles).__name__)
        raise InputError(
            what,
            f"must be a numpy array of shape (n, height, width, 3), got {shape}",
            "stack equally sized RGB tiles with np.stack",
        )
    if tiles.dtype != np.uint8:
        raise InputError(what, f"must have dtype uint8, got {tiles.dtype}", "pass 8-bit RGB pixels")
    return _writable(tiles)


def _writable(a: np.ndarray) -> np.ndarray:
    """C-contiguous, writable view or copy (torch.from_numpy warns on read-only arrays)."""
    a = np.ascontiguousarray(a)
    return a if a.flags.writeable else a.copy()


def pool_pixels(
    tiles: Iterable[np.ndarray], max_pixels: int | None, seed: int
) -> tuple[np.ndarray, int, int]:
    """Concatenate the pixels of ``tiles`` (n x 3 uint8), subsampled to about ``max_pixels``.

    Subsampling keeps every ``k``-th pixel of each tile (``k = ceil(total / max_pixels)``)
    from a random (seeded) start, so every tile keeps its share, memory is read in order
    and the full pool is never built.

    Returns:
        (pixels, number of tiles, number of pixels before subsampling).
    """
    if isinstance(tiles, np.ndarray) and tiles.ndim == 3:
        raise InputError(
            "tiles",
            f"got a single array of shape {tiles.shape}, expected an iterable of tiles",
            "wrap a single tile in a list: fit([tile])",
        )
    checked = [check_tile(t, f"tile {i} of the fitting set") for i, t in enumerate(tiles)]
    if not checked:
        raise InputError(
            "tiles", "no tiles given to fit the stain parameters", "pass at least one tissue tile"
        )
    n_total = sum(t.shape[0] * t.shape[1] for t in checked)
    chunks = [t.reshape(-1, 3) for t in checked]
    if max_pixels is not None and n_total > max_pixels:
        rng = np.random.default_rng(seed)
        step = math.ceil(n_total / max_pixels)
        chunks = [c[int(rng.integers(min(step, c.shape[0]))) :: step] for c in chunks]
    pixels = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
    return pixels, len(checked), n_total


def od_table(background_intensity: float, *, plus_one: bool) -> np.ndarray:
    """Optical density of each 8-bit value 0..255 (float64), ``OD = -log(I' / I0)``.

    Args:
        background_intensity: ``I0``, see :class:`~histoprog.stain.base.StainNormalizer`.
        plus_one: ``I' = I + 1`` with no clipping (torchstain's Macenko); otherwise
            ``I' = max(I, 1)`` and OD clipped at 0 (Vahadane: values brighter than
            ``I0`` count as background).

    Index the table with uint8 pixels (``od_table(...)[pixels]``) for their OD.
    """
    values = np.arange(256)
    if plus_one:
        return -np.log((values + 1.0) / background_intensity)
    return np.maximum(-np.log(np.maximum(values, 1) / background_intensity), 0.0)


def unit_rows(m: np.ndarray) -> np.ndarray:
    """Scale the rows of ``m`` to unit Euclidean length."""
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def order_he(m: np.ndarray) -> np.ndarray:
    """Order a 2 x 3 stain matrix as (H, E): H has the larger red OD component."""
    return m if m[0, 0] >= m[1, 0] else m[::-1].copy()


def matrix_tuple(m: np.ndarray) -> StainMatrix:
    """2 x 3 array -> nested tuple of floats."""
    return (tuple(float(v) for v in m[0]), tuple(float(v) for v in m[1]))  # type: ignore[return-value]
