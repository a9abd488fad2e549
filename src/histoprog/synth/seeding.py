"""Deterministic random streams: one independent generator per (seed, purpose, index).

Every random draw in :mod:`histoprog.synth` comes from :func:`rng_for`, so a patient's
layout, its slide's stain and its survival time do not depend on how many other patients
were generated or in which order.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["rng_for"]


def _key(part: int | str) -> int:
    """Map a key part to a non-negative 32-bit integer (strings by CRC32, stable)."""
    if isinstance(part, str):
        return zlib.crc32(part.encode("utf-8"))
    if part < 0:
        raise ValueError(f"seed parts must be non-negative, got {part}")
    return int(part)


def rng_for(seed: int, *keys: int | str) -> np.random.Generator:
    """A numpy Generator for ``seed`` and a purpose path such as ``("layout", 3)``.

    Args:
        seed: the cohort (or command) seed.
        *keys: purpose names and indices; strings are hashed with CRC32.

    Returns:
        A PCG64 generator whose stream is a pure function of ``seed`` and ``keys``.
    """
    return np.random.default_rng(np.random.SeedSequence([_key(seed), *map(_key, keys)]))
