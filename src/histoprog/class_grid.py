"""Class-grid files (``.npy``, codes as in :mod:`histoprog.classes`): read and write."""

from __future__ import annotations

import os

import numpy as np

from histoprog.errors import InputError
from histoprog.io import atomic_path


def load_grid(path: str | os.PathLike[str]) -> np.ndarray:
    """A class grid from ``.npy``; a clear error if it cannot be read."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(
            f"class grid '{path}'",
            f"it cannot be read as a .npy array ({err})",
            "re-run the classify stage for this slide",
        ) from err


def save_grid(path: str | os.PathLike[str], grid: np.ndarray) -> None:
    """``np.save`` atomically (the temporary name keeps the ``.npy`` suffix)."""
    with atomic_path(path) as tmp:
        np.save(tmp, grid)
