"""histoprog's numpy Macenko against torchstain's torch backend itself, and the stain stage
without PyTorch or matplotlib.

Measured here (tiles of 224 px; torch 2.15 with MKL, numpy 2.4 with OpenBLAS): per-tile
stain vectors within 2.7e-5 and maxC within 6.1e-6 of torchstain's on 16 generated and
23 real tiles, 3.7e-5 of the normalised values one grey level apart (none more); slide
fits on 1 M-pixel pools within 6e-6 (stain vectors) and 1.2e-5 (maxC).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED, packages_loaded
from PIL import Image
from torchstain.torch.normalizers.macenko import TorchMacenkoNormalizer
from torchstain.torch.utils import cov as torchstain_cov

from histoprog.cli import main
from histoprog.stain import TORCHSTAIN_BACKGROUND_INTENSITY, MacenkoNormalizer
from histoprog.stain.macenko import _covariance, _od_table32, _plane, _stain_vectors
from histoprog.stain.pixels import pool_pixels
from histoprog.synth.patches import render_patch_sheet

HE_TILES = SHARED / "he-tiles"
SIZE = 224
#: tolerances: stain vectors (unit columns, absolute), maxC (relative), the share of
#: normalised values one grey level apart (none may differ by more)
HE_ATOL, MAXC_RTOL, MAX_SHARE = 1e-4, 5e-5, 5e-4


@cache
def generated_tiles() -> tuple[np.ndarray, ...]:
    """16 tiles of 224 px: two of each of eight generated textures with their own stains."""
    classes = ("TUM", "STR", "NORM", "LYM", "DEB", "MUS", "TUM", "STR")
    sheets = [render_patch_sheet(c, 2 * SIZE, 0.5, 3, i, 1.0) for i, c in enumerate(classes)]
    return tuple(s[o : o + SIZE, o : o + SIZE].copy() for s in sheets for o in (0, SIZE))


def real_tiles() -> tuple[np.ndarray, ...]:
    """The 224-px tiles of the H&E images in ../shared/data/he-tiles (skip when absent)."""
    if not HE_TILES.is_dir():
        pytest.skip(f"{HE_TILES} not present")
    tiles = []
    for path in sorted(HE_TILES.glob("*")):
        image = np.asarray(Image.open(path).convert("RGB"))
        for r in range(0, image.shape[0] - SIZE + 1, SIZE):
            for c in range(0, image.shape[1] - SIZE + 1, SIZE):
                tiles.append(image[r : r + SIZE, c : c + SIZE].copy())
    return tuple(tiles)


@pytest.fixture(scope="module", params=["generated", "real"])
def tiles(request: pytest.FixtureRequest) -> tuple[np.ndarray, ...]:
    return generated_tiles() if request.param == "generated" else real_tiles()


def torchstain_fit(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """torchstain's HE (as rows H, E) and maxC fitted on pixels (P x 3) as a 1-row mosaic."""
    ts = TorchMacenkoNormalizer()
    ts.fit(torch.from_numpy(pixels).T.reshape(3, 1, -1), Io=TORCHSTAIN_BACKGROUND_INTENSITY)
    return ts.HERef.numpy().T, ts.maxCRef.numpy()


def test_per_tile_fit_and_normalisation_equal_torchstain(tiles: tuple[np.ndarray, ...]) -> None:
    norm = MacenkoNormalizer(None, TORCHSTAIN_BACKGROUND_INTENSITY)
    differing = total = 0
    for tile in tiles:
        params = norm.fit([tile])
        he, max_c = torchstain_fit(tile.reshape(-1, 3))
        np.testing.assert_allclose(params.matrix, he, rtol=0, atol=HE_ATOL)
        np.testing.assert_allclose(params.max_conc, max_c, rtol=MAXC_RTOL)
        ts = TorchMacenkoNormalizer()
        ref = ts.normalize(torch.from_numpy(tile).permute(2, 0, 1), stains=False)[0].numpy()
        out, ok = norm.transform_per_tile(tile)
        assert ok
        diff = np.abs(out.astype(int) - ref)
        assert diff.max() <= 1
        differing += int((diff > 0).sum())
        total += diff.size
    assert differing <= MAX_SHARE * total, f"{differing} of {total} values differ"


def test_slide_fit_on_a_pool_equals_torchstain(tiles: tuple[np.ndarray, ...]) -> None:
    """The pooled slide fit is torchstain's fit on a one-row mosaic of the pooled pixels."""
    rng = np.random.default_rng(0)
    pool = [np.rot90(tiles[i], int(rng.integers(4))) for i in rng.integers(len(tiles), size=40)]
    norm = MacenkoNormalizer(None, TORCHSTAIN_BACKGROUND_INTENSITY, max_pixels=1_000_000)
    params = norm.fit(pool)
    he, max_c = torchstain_fit(pool_pixels(pool, norm.max_pixels, norm.seed)[0])
    np.testing.assert_allclose(params.matrix, he, rtol=0, atol=HE_ATOL)
    np.testing.assert_allclose(params.max_conc, max_c, rtol=MAXC_RTOL)


def tissue_od(tile: np.ndarray) -> np.ndarray:
    od = _od_table32(TORCHSTAIN_BACKGROUND_INTENSITY)[tile.reshape(-1, 3)]
    return od[np.all(od >= np.float32(0.15), axis=1)]


def test_covariance_sums_as_torch() -> None:
    """The covariance follows torch's float32 summation (bit-identical on the machine the
    module docstring names); numpy's own matrix product differs by up to ~1e-5 here."""
    for tile in generated_tiles()[::3]:
        odhat = tissue_od(tile)
        ref = torchstain_cov(torch.from_numpy(odhat).T).numpy()
        np.testing.assert_allclose(_covariance(odhat), ref, rtol=1e-6, atol=0)


@pytest.mark.parametrize("alpha", [1.0, 2.0, 5.0])
def test_stain_vectors_do_not_depend_on_eigenvector_signs(alpha: float) -> None:
    """Flipping an eigenvector reflects the angles and swaps the two percentiles: the same
    stain vectors (exactly for the principal one at alpha 1, to float rounding otherwise)."""
    for tile in generated_tiles()[::4]:
        odhat = tissue_od(tile)
        plane = _plane(odhat)
        phi_y = odhat @ plane[:, 1]
        assert np.all(phi_y < 0)  # angles in (-pi, 0): off atan2's branch cut at +-pi
        ref = _stain_vectors(odhat, plane, alpha)
        for signs in ([1, -1], [-1, 1], [-1, -1]):
            flipped = _stain_vectors(odhat, plane * np.float32(signs), alpha)
            if alpha == 1.0 and signs == [1, -1]:
                np.testing.assert_array_equal(flipped, ref)
            np.testing.assert_allclose(flipped, ref, rtol=0, atol=1e-6)


def test_stain_stage_loads_neither_torch_nor_matplotlib(tmp_path: Path) -> None:
    """The per-slide stain stage, run on a small generated slide, imports no PyTorch."""
    from histoprog.synth.render import SlideGeometry, SlideRenderer, TextureBank
    from histoprog.synth.seeding import rng_for
    from histoprog.synth.slide_writer import write_slide
    from histoprog.synth.stain import random_stain

    grid = np.zeros((8, 8), np.int8)
    grid[1:-1, 1:-1] = np.arange(36).reshape(6, 6) % 7
    renderer = SlideRenderer(
        grid,
        SlideGeometry.make(8, 8, 0.5, 3, 4),
        TextureBank.build(0.5, 11, n_variants=1),
        random_stain(rng_for(3, "s")),
        rng_for(3, "c"),
    )
    slide = write_slide(tmp_path / "s.svs", renderer, fmt="svs", mpp=0.5, magnification=20)
    common = ["--slide", str(slide), "--slide-id", "s"]
    tiles = [str(tmp_path / n) for n in ("tiles.tsv", "tiles.json", "mask.png")]
    assert main(["tile", *common, "--out-tiles", tiles[0], "--out-meta", tiles[1],
                 "--out-mask", tiles[2]]) == 0  # fmt: skip
    for fit in ("slide", "tile"):
        argv = [
            "stain", *common, "--tiles", tiles[0], "--tiles-meta", tiles[1], "--fit", fit,
            "--fit-tiles", "20", "--out-params", str(tmp_path / f"{fit}.json"),
            "--out-qc", str(tmp_path / f"{fit}.png"),
        ]  # fmt: skip
        code = f"from histoprog.cli import main\nassert main({argv!r}) == 0"
        assert packages_loaded(code, {"torch", "torchstain", "matplotlib"}) == []
        with Image.open(tmp_path / f"{fit}.png") as qc:
            assert qc.width > 8 * 100
