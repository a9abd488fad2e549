"""Tests for histoprog.stain: Macenko (vs torchstain) and Vahadane normalisers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchstain.torch.normalizers.macenko import TorchMacenkoNormalizer

from histoprog.errors import InputError
from histoprog.stain import MacenkoNormalizer, MacenkoParams, VahadaneNormalizer, VahadaneParams

HE_TILES = Path(__file__).resolve().parents[2] / "shared" / "data" / "he-tiles"
# Ruifrok & Johnston's H and E optical densities (rows H, E), and a second, bluer staining
RUIFROK = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]])
BLUER = np.array([[0.55, 0.72, 0.42], [0.20, 0.85, 0.48]])


def unit(m: np.ndarray) -> np.ndarray:
    return m / np.linalg.norm(m, axis=-1, keepdims=True)


def angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise angles in degrees between two 2 x 3 stain matrices."""
    cos = np.sum(unit(np.asarray(a)) * unit(np.asarray(b)), axis=1)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def synth_tiles(
    w: np.ndarray, n: int, seed: int, size: int = 96, io: float = 240.0, offset: float = 1.0
) -> list[np.ndarray]:
    """Beer-Lambert tiles: pixels of H only, E only, both, and background (I = Io e^-OD - 1)."""
    rng = np.random.default_rng(seed)
    w = unit(w)
    tiles = []
    for _ in range(n):
        k = size * size
        kind = rng.choice(4, k, p=[0.1, 0.3, 0.3, 0.3])
        c = rng.gamma(2.0, 0.35, (k, 2))
        c[kind == 0] = rng.uniform(0, 0.02, (int((kind == 0).sum()), 2))
        c[kind == 1, 1] = 0
        c[kind == 2, 0] = 0
        rgb = io * np.exp(-(c @ w)) - offset + rng.normal(0, 0.5, (k, 3))
        tiles.append(np.clip(np.rint(rgb), 0, 255).astype(np.uint8).reshape(size, size, 3))
    return tiles


def torchstain_normalize(tile: np.ndarray) -> np.ndarray:
    ts = TorchMacenkoNormalizer()
    out, _, _ = ts.normalize(torch.from_numpy(tile.copy()).permute(2, 0, 1), stains=False)
    return out.numpy().astype(np.uint8)


def load_rgb(name: str) -> np.ndarray:
    from PIL import Image

    path = HE_TILES / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def real_tiles() -> list[np.ndarray]:
    im = load_rgb("tiatoolbox_target_image.png")
    return [im[r : r + 224, c : c + 224] for r in range(0, 672, 224) for c in range(0, 672, 224)]


# ----------------------------------------------------------------------------- Macenko


def test_single_tile_fit_equals_torchstain_synthetic():
    tile = synth_tiles(RUIFROK, 1, seed=1)[0]
    norm = MacenkoNormalizer()
    params = norm.fit([tile])
    ours = norm.transform(tile, params)
    ref = torchstain_normalize(tile)
    diff = np.abs(ours.astype(int) - ref)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    out, ok = norm.transform_per_tile(tile)
    assert ok
    np.testing.assert_array_equal(out, ref)


def test_single_tile_fit_equals_torchstain_real(real_tiles):
    norm = MacenkoNormalizer()
    for tile in [*real_tiles[:3], load_rgb("CRC-VAL-HE-7K-NORM-TCGA-YLVCMEHK.tif")]:
        diff = np.abs(
            norm.transform(tile, norm.fit([tile])).astype(int) - torchstain_normalize(tile)
        )
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_slide_fit_close_to_per_tile_real(real_tiles):
    norm = MacenkoNormalizer()
    params = norm.fit(real_tiles)
    assert params.n_tiles == 9 and params.n_pixels == 9 * 224 * 224
    slide = norm.transform_batch(np.stack(real_tiles), params)
    per_tile = np.stack([norm.transform_per_tile(t)[0] for t in real_tiles])
    assert np.abs(slide.astype(int) - per_tile).mean() < 8


def test_slide_fit_synthetic_recovers_stains_and_matches_per_tile():
    tiles = synth_tiles(RUIFROK, 6, seed=2)
    norm = MacenkoNormalizer()
    params = norm.fit(tiles)
    assert angles(params.matrix, RUIFROK).max() < 3
    slide = norm.transform_batch(np.stack(tiles), params)
    per_tile = np.stack([torchstain_normalize(t) for t in tiles])
    assert np.abs(slide.astype(int) - per_tile).mean() < 2


def test_transform_batch_equals_transform():
    tiles = synth_tiles(BLUER, 3, seed=3, size=32)
    norm = MacenkoNormalizer()
    params = norm.fit(tiles)
    batch = norm.transform_batch(np.stack(tiles), params, chunk=2)
    for t, b in zip(tiles, batch, strict=True):
        np.testing.assert_array_equal(norm.transform(t, params), b)


def test_identity_when_source_matches_target_synthetic():
    target = synth_tiles(BLUER, 1, seed=4)[0]
    norm = MacenkoNormalizer(target=target)
    out = norm.transform(target, norm.fit([target]))
    assert np.abs(out.astype(int) - target).mean() < 1.0


def test_identity_when_source_matches_target_real():
    target = load_rgb("torchstain_target.png")
    norm = MacenkoNormalizer(target=target)
    out = norm.transform(target, norm.fit([target]))
    # OD outside the stain plane is projected away; truncation adds ~0.5
    assert np.abs(out.astype(int) - target).mean() < 4


def test_target_image_sets_reference():
    target = synth_tiles(BLUER, 1, seed=5)[0]
    norm = MacenkoNormalizer(target=target)
    assert angles(norm.target.matrix, BLUER).max() < 3
    default = MacenkoNormalizer().target
    np.testing.assert_allclose(default.matrix, [[0.5626, 0.7201, 0.4062], [0.2159, 0.8012, 0.5581]])
    np.testing.assert_allclose(default.max_conc, [1.9705, 1.0308], rtol=1e-6)


def test_macenko_params_json_roundtrip():
    norm = MacenkoNormalizer()
    params = norm.fit(synth_tiles(RUIFROK, 1, seed=6, size=48))
    back = MacenkoParams.from_dict(json.loads(json.dumps(params.to_dict())))
    assert back == params
    with pytest.raises(InputError, match="expected 'macenko'"):
        MacenkoParams.from_dict({**params.to_dict(), "method": "vahadane"})
    with pytest.raises(InputError, match=r"missing key\(s\) \['max_conc'\]"):
        MacenkoParams.from_dict({k: v for k, v in params.to_dict().items() if k != "max_conc"})
    with pytest.raises(InputError, match="2 x 3"):
        MacenkoParams.from_dict({**params.to_dict(), "stain_matrix": [[1, 2], [3, 4]]})


def test_per_tile_blank_passes_through():
    norm = MacenkoNormalizer()
    blank = np.full((64, 64, 3), 245, dtype=np.uint8)
    out, ok = norm.transform_per_tile(blank)
    assert not ok
    np.testing.assert_array_equal(out, blank)


def test_fit_failures():
    norm = MacenkoNormalizer()
    blank = np.full((64, 64, 3), 245, dtype=np.uint8)
    with pytest.raises(InputError, match="too few tissue pixels for a Macenko fit"):
        norm.fit([blank, blank])
    with pytest.raises(InputError, match="no tiles given"):
        norm.fit([])
    with pytest.raises(InputError, match=r"wrap a single tile in a list"):
        norm.fit(blank)
    with pytest.raises(InputError, match="target image: has too few tissue pixels"):
        MacenkoNormalizer(target=blank)
    with pytest.raises(InputError, match="Io=255"):
        MacenkoNormalizer(Io=255).transform(blank, norm.fit(synth_tiles(RUIFROK, 1, 7, 48)))


@pytest.mark.parametrize(
    ("tile", "match"),
    [
        (np.zeros((8, 8, 3), dtype=np.float32), "dtype uint8"),
        (np.zeros((8, 8, 4), dtype=np.uint8), "drop the alpha channel"),
        (np.zeros((8, 8), dtype=np.uint8), r"shape \(height, width, 3\)"),
        (np.zeros((0, 8, 3), dtype=np.uint8), "is empty"),
        ([[1, 2, 3]], "numpy array"),
    ],
)
def test_bad_tiles(tile, match):
    norm = MacenkoNormalizer()
    params = norm.target
    with pytest.raises(InputError, match=match):
        norm.transform(tile, params)
    with pytest.raises(InputError, match=match):
        norm.transform_per_tile(tile)
    with pytest.raises(InputError, match=match):
        norm.fit([tile])


def test_bad_batch():
    norm = MacenkoNormalizer()
    with pytest.raises(InputError, match=r"shape \(n, height, width, 3\)"):
        norm.transform_batch(np.zeros((8, 8, 3), dtype=np.uint8), norm.target)
    with pytest.raises(InputError, match="dtype uint8"):
        norm.transform_batch(np.zeros((2, 8, 8, 3)), norm.target)


# ----------------------------------------------------------------------------- Vahadane


@pytest.fixture(scope="module")
def vahadane_synth() -> tuple[VahadaneNormalizer, VahadaneParams, list[np.ndarray]]:
    tiles = synth_tiles(RUIFROK, 4, seed=10, size=64, io=255.0, offset=0.0)
    norm = VahadaneNormalizer(n_dict_pixels=1000)
    return norm, norm.fit(tiles), tiles


def test_vahadane_recovers_known_stains(vahadane_synth):
    _, params, _ = vahadane_synth
    assert angles(params.matrix, RUIFROK).max() < 3  # also checks the H, E order
    assert np.all(params.matrix >= 0)
    assert params.n_tiles == 4 and params.n_pixels == 4 * 64 * 64


def test_vahadane_maps_to_target(vahadane_synth):
    norm, params, tiles = vahadane_synth
    out = norm.transform_batch(np.stack(tiles), params)
    assert out.shape == (4, 64, 64, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[1], norm.transform(tiles[1], params))
    refit = VahadaneNormalizer(n_dict_pixels=1000).fit(list(out))
    assert angles(refit.matrix, norm.target.matrix).max() < 3
    np.testing.assert_allclose(refit.max_conc, norm.target.max_conc, rtol=0.1)


def test_vahadane_identity_and_json():
    target = synth_tiles(BLUER, 1, seed=11, size=64, io=255.0, offset=0.0)[0]
    norm = VahadaneNormalizer(target=target, n_dict_pixels=1000)
    assert angles(norm.target.matrix, BLUER).max() < 3
    out = norm.transform(target, norm.target)
    assert np.abs(out.astype(int) - target).mean() < 1.0
    back = VahadaneParams.from_dict(json.loads(json.dumps(norm.target.to_dict())))
    assert back == norm.target


def test_vahadane_failures():
    norm = VahadaneNormalizer(n_dict_pixels=500)
    blank = np.full((64, 64, 3), 250, dtype=np.uint8)
    with pytest.raises(InputError, match="too few tissue pixels for a Vahadane fit"):
        norm.fit([blank])
    eosin_only = np.full((64, 64, 3), 0, dtype=np.uint8)
    eosin_only[:] = np.rint(255 * np.exp(-0.8 * unit(RUIFROK[1]))).astype(np.uint8)
    with pytest.raises(InputError, match="fewer than two distinct stains"):
        norm.fit([eosin_only])
    with pytest.raises(InputError, match="must be VahadaneParams"):
        norm.transform(blank, MacenkoNormalizer().target)
    with pytest.raises(InputError, match="dtype uint8"):
        norm.transform(blank.astype(float), norm.target)


def test_transform_views_and_empty_batch():
    tile = synth_tiles(RUIFROK, 1, seed=8, size=64)[0][:, :40]  # non-square
    view = np.rot90(tile)
    view.flags.writeable = False
    norm = MacenkoNormalizer()
    params = norm.fit([tile])
    np.testing.assert_array_equal(
        norm.transform(view, params), np.rot90(norm.transform(tile, params))
    )
    empty = norm.transform_batch(np.zeros((0, 8, 8, 3), dtype=np.uint8), params)
    assert empty.shape == (0, 8, 8, 3)
