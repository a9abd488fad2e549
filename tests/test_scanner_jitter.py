"""Scanner-like variation of training patches: stain (HED), resampling filter, JPEG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_data import he_patch

from histoprog.data import PatchFolder
from histoprog.scanner_jitter import ScannerJitter, jitter_hed


def test_identity_stain_jitter_keeps_the_patch() -> None:
    patch = he_patch()
    out = jitter_hed(patch, np.ones(3), np.zeros(3))
    assert np.abs(out.astype(int) - patch.astype(int)).max() <= 1


def test_more_hematoxylin_darkens_and_blues_nuclei() -> None:
    patch = he_patch()
    more_h = jitter_hed(patch, np.array([1.5, 1.0, 1.0]), np.zeros(3))
    diff = more_h.astype(float) - patch.astype(float)
    assert diff.mean() < -1  # more stain absorbs more light
    # hematoxylin absorbs red most: the red channel loses most
    assert diff[..., 0].mean() < diff[..., 2].mean()


def test_box_filter_without_stain_or_jpeg_is_the_block_mean() -> None:
    rng = np.random.default_rng(0)
    patch = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    jitter = ScannerJitter(stain_sigma=0, filters=("box",), jpeg_probability=0)
    out = jitter(patch, 16)
    block = patch.reshape(16, 2, 16, 2, 3).astype(float).mean(axis=(1, 3))
    assert out.shape == (16, 16, 3)
    assert np.abs(out - block).max() <= 1


def test_jitter_is_random_but_seeded() -> None:
    patch = he_patch()
    jitter = ScannerJitter()
    torch.manual_seed(3)
    a = [jitter(patch, 24) for _ in range(4)]
    torch.manual_seed(3)
    b = [jitter(patch, 24) for _ in range(4)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(a[0], x) for x in a[1:])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"filters": ("nearest",)},
        {"filters": ()},
        {"stain_sigma": 1.0},
        {"jpeg_probability": 1.5},
        {"jpeg_quality": (90, 80)},
    ],
)
def test_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ScannerJitter(**kwargs)


def test_patch_folder_applies_jitter_before_normalisation(tmp_path: Path) -> None:
    for name in ("BACK", "TUM"):
        (tmp_path / name).mkdir()
        Image.fromarray(he_patch()).save(tmp_path / name / "a.png")
    plain = PatchFolder(tmp_path, ["BACK", "TUM"], stain="tile", tile_px=16)
    jittered = plain.with_augment(None, ScannerJitter(jpeg_probability=1.0))
    torch.manual_seed(0)
    tile, label = jittered[1]
    assert tile.shape == (16, 16, 3) and tile.dtype == torch.uint8 and label == 1
    assert not torch.equal(tile, plain[1][0])
