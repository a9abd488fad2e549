"""Tests for histoprog.stain: Macenko (vs torchstain), Vahadane, interface and factory."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchstain.torch.normalizers.macenko import TorchMacenkoNormalizer

from histoprog.errors import InputError
from histoprog.plots import stain_qc as qc
from histoprog.stain import (
    NORMALIZERS,
    TORCHSTAIN_BACKGROUND_INTENSITY,
    VAHADANE_BACKGROUND_INTENSITY,
    MacenkoNormalizer,
    MacenkoParams,
    StainNormalizer,
    VahadaneNormalizer,
    VahadaneParams,
    load_target,
    make_normalizer,
)
from histoprog.stain.pixels import od_table

HE_TILES = Path(__file__).resolve().parents[2] / "shared" / "data" / "he-tiles"
# Ruifrok & Johnston's H and E optical densities (rows H, E), and a second, bluer staining
RUIFROK = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11]])
BLUER = np.array([[0.55, 0.72, 0.42], [0.20, 0.85, 0.48]])


def macenko(target: np.ndarray | None = None, **options) -> MacenkoNormalizer:
    """Macenko with torchstain's background intensity (config stain.io's shipped value)."""
    return MacenkoNormalizer(target, TORCHSTAIN_BACKGROUND_INTENSITY, **options)


def vahadane(target: np.ndarray | None = None, **options) -> VahadaneNormalizer:
    """Vahadane with the HCC workflow's background intensity."""
    return VahadaneNormalizer(target, VAHADANE_BACKGROUND_INTENSITY, **options)


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
    norm = macenko()
    params = norm.fit([tile])
    ours = norm.transform(tile, params)
    ref = torchstain_normalize(tile)
    diff = np.abs(ours.astype(int) - ref)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    out, ok = norm.transform_per_tile(tile)
    assert ok
    diff = np.abs(out.astype(int) - ref)  # float rounding at the truncation
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_single_tile_fit_equals_torchstain_real(real_tiles):
    norm = macenko()
    for tile in [*real_tiles[:3], load_rgb("CRC-VAL-HE-7K-NORM-TCGA-YLVCMEHK.tif")]:
        diff = np.abs(
            norm.transform(tile, norm.fit([tile])).astype(int) - torchstain_normalize(tile)
        )
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_slide_fit_close_to_per_tile_real(real_tiles):
    norm = macenko()
    params = norm.fit(real_tiles)
    assert params.n_tiles == 9 and params.n_pixels == 9 * 224 * 224
    slide = norm.transform_batch(np.stack(real_tiles), params)
    per_tile = np.stack([norm.transform_per_tile(t)[0] for t in real_tiles])
    assert np.abs(slide.astype(int) - per_tile).mean() < 8


def test_slide_fit_synthetic_recovers_stains_and_matches_per_tile():
    tiles = synth_tiles(RUIFROK, 6, seed=2)
    norm = macenko()
    params = norm.fit(tiles)
    assert angles(params.matrix, RUIFROK).max() < 3
    slide = norm.transform_batch(np.stack(tiles), params)
    per_tile = np.stack([torchstain_normalize(t) for t in tiles])
    assert np.abs(slide.astype(int) - per_tile).mean() < 2


def test_transform_batch_equals_transform():
    tiles = synth_tiles(BLUER, 3, seed=3, size=32)
    norm = macenko()
    params = norm.fit(tiles)
    batch = norm.transform_batch(np.stack(tiles), params, chunk=2)
    for t, b in zip(tiles, batch, strict=True):
        np.testing.assert_array_equal(norm.transform(t, params), b)


def test_tensor_transform_is_bit_identical_to_numpy():
    """classify on a GPU normalises batches with transform_tensor instead of the workers."""
    tiles = synth_tiles(BLUER, 3, seed=4, size=32)
    norm = macenko()
    params = norm.fit(tiles)
    rng = np.random.default_rng(0)  # every 8-bit value, not only tissue colours
    batch = np.concatenate([np.stack(tiles), rng.integers(0, 256, (2, 32, 32, 3), np.uint8)])
    out = norm.transform_tensor(torch.from_numpy(batch), params)
    assert out.dtype == torch.uint8 and out.shape == batch.shape
    np.testing.assert_array_equal(out.numpy(), norm.transform_batch(batch, params))
    assert not np.array_equal(out.numpy(), batch)  # it did normalise


def test_identity_when_source_matches_target_synthetic():
    target = synth_tiles(BLUER, 1, seed=4)[0]
    norm = macenko(target)
    out = norm.transform(target, norm.fit([target]))
    assert np.abs(out.astype(int) - target).mean() < 1.0


def test_identity_when_source_matches_target_real():
    target = load_rgb("torchstain_target.png")
    norm = macenko(target)
    out = norm.transform(target, norm.fit([target]))
    # OD outside the stain plane is projected away; truncation adds ~0.5
    assert np.abs(out.astype(int) - target).mean() < 4


def test_target_image_sets_reference():
    target = synth_tiles(BLUER, 1, seed=5)[0]
    norm = macenko(target)
    assert angles(norm.target.matrix, BLUER).max() < 3
    default = macenko().target
    np.testing.assert_allclose(default.matrix, [[0.5626, 0.7201, 0.4062], [0.2159, 0.8012, 0.5581]])
    np.testing.assert_allclose(default.max_conc, [1.9705, 1.0308], rtol=1e-6)


def test_macenko_params_json_roundtrip():
    norm = macenko()
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
    norm = macenko()
    blank = np.full((64, 64, 3), 245, dtype=np.uint8)
    out, ok = norm.transform_per_tile(blank)
    assert not ok
    np.testing.assert_array_equal(out, blank)


def test_fit_failures():
    norm = macenko()
    blank = np.full((64, 64, 3), 245, dtype=np.uint8)
    with pytest.raises(InputError, match="too few tissue pixels for a Macenko fit"):
        norm.fit([blank, blank])
    with pytest.raises(InputError, match="no tiles given"):
        norm.fit([])
    with pytest.raises(InputError, match=r"wrap a single tile in a list"):
        norm.fit(blank)
    with pytest.raises(InputError, match="target image: has too few tissue pixels"):
        macenko(blank)
    with pytest.raises(InputError, match="Io=255"):
        MacenkoNormalizer(None, 255).transform(blank, norm.fit(synth_tiles(RUIFROK, 1, 7, 48)))


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
    norm = macenko()
    params = norm.target
    with pytest.raises(InputError, match=match):
        norm.transform(tile, params)
    with pytest.raises(InputError, match=match):
        norm.transform_per_tile(tile)
    with pytest.raises(InputError, match=match):
        norm.fit([tile])


def test_bad_batch():
    norm = macenko()
    with pytest.raises(InputError, match=r"shape \(n, height, width, 3\)"):
        norm.transform_batch(np.zeros((8, 8, 3), dtype=np.uint8), norm.target)
    with pytest.raises(InputError, match="dtype uint8"):
        norm.transform_batch(np.zeros((2, 8, 8, 3)), norm.target)


def test_stain_qc_tiles_unchanged_and_labels_left_of_them():
    """Tiles are pasted as they are (scaled to TILE_PX when larger); the title and the row
    labels lie outside them, each label in the left margin beside its row."""
    before = np.full((3, 40, 40, 3), 180, dtype=np.uint8)
    after = np.full((3, 40, 40, 3), 120, dtype=np.uint8)
    px = np.asarray(qc.stain_qc("s1", before, after, "slide"))
    dark = px.max(axis=2) < 90  # text (the tiles are grey 180 and 120)
    column = px[:, qc.LABEL_PX + 10]
    tops = [int(np.flatnonzero((column == level).all(axis=1))[0]) for level in (180, 120)]
    assert dark[: tops[0]].any()  # the title, above the tiles
    for top, level in zip(tops, (180, 120), strict=True):
        for i in range(3):
            x = qc.LABEL_PX + i * (40 + qc.GAP)
            assert (px[top : top + 40, x : x + 40] == level).all()
        assert dark[top : top + 40, : qc.LABEL_PX].any()  # its label, in the margin
    assert not dark[tops[0] :, qc.LABEL_PX :].any()
    big = qc.stain_qc("s1", np.zeros((2, 300, 300, 3), np.uint8), after[:2], "tile")
    assert big.width == qc.LABEL_PX + 2 * (qc.TILE_PX + qc.GAP)


# ----------------------------------------------------------------------------- Vahadane


@pytest.fixture(scope="module")
def vahadane_synth() -> tuple[VahadaneNormalizer, VahadaneParams, list[np.ndarray]]:
    tiles = synth_tiles(RUIFROK, 4, seed=10, size=64, io=255.0, offset=0.0)
    norm = vahadane(n_dict_pixels=1000)
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
    refit = vahadane(n_dict_pixels=1000).fit(list(out))
    assert angles(refit.matrix, norm.target.matrix).max() < 3
    np.testing.assert_allclose(refit.max_conc, norm.target.max_conc, rtol=0.1)


def test_vahadane_identity_and_json():
    target = synth_tiles(BLUER, 1, seed=11, size=64, io=255.0, offset=0.0)[0]
    norm = vahadane(target, n_dict_pixels=1000)
    assert angles(norm.target.matrix, BLUER).max() < 3
    out = norm.transform(target, norm.target)
    assert np.abs(out.astype(int) - target).mean() < 1.0
    back = VahadaneParams.from_dict(json.loads(json.dumps(norm.target.to_dict())))
    assert back == norm.target


def test_vahadane_failures():
    norm = vahadane(n_dict_pixels=500)
    blank = np.full((64, 64, 3), 250, dtype=np.uint8)
    with pytest.raises(InputError, match="too few tissue pixels for a Vahadane fit"):
        norm.fit([blank])
    eosin_only = np.full((64, 64, 3), 0, dtype=np.uint8)
    eosin_only[:] = np.rint(255 * np.exp(-0.8 * unit(RUIFROK[1]))).astype(np.uint8)
    with pytest.raises(InputError, match="fewer than two distinct stains"):
        norm.fit([eosin_only])
    with pytest.raises(InputError, match="must be VahadaneParams"):
        norm.transform(blank, macenko().target)
    with pytest.raises(InputError, match="dtype uint8"):
        norm.transform(blank.astype(float), norm.target)


def test_transform_views_and_empty_batch():
    tile = synth_tiles(RUIFROK, 1, seed=8, size=64)[0][:, :40]  # non-square
    view = np.rot90(tile)
    view.flags.writeable = False
    norm = macenko()
    params = norm.fit([tile])
    np.testing.assert_array_equal(
        norm.transform(view, params), np.rot90(norm.transform(tile, params))
    )
    empty = norm.transform_batch(np.zeros((0, 8, 8, 3), dtype=np.uint8), params)
    assert empty.shape == (0, 8, 8, 3)


# ----------------------------------------------------------------------------- interface, factory

#: background intensity per method as the workflow passes it, and fast fit options
WORKFLOW_IO = {
    "macenko": TORCHSTAIN_BACKGROUND_INTENSITY,
    "vahadane": VAHADANE_BACKGROUND_INTENSITY,
}
FAST = {"macenko": {}, "vahadane": {"n_dict_pixels": 500}}


def test_factory_builds_each_method():
    assert set(NORMALIZERS) == {"macenko", "vahadane"}
    m = make_normalizer("macenko", target=None, background_intensity=250, alpha=2, beta=0.2)
    assert type(m) is MacenkoNormalizer
    assert (m.background_intensity, m.alpha, m.beta, m.target.Io) == (250.0, 2.0, 0.2, 250.0)
    v = make_normalizer("vahadane", target=None, background_intensity=255, lambda_=0.2, seed=3)
    assert type(v) is VahadaneNormalizer
    assert (v.background_intensity, v.lambda_, v.seed, v.target.Io) == (255.0, 0.2, 3, 255.0)


def test_factory_unknown_name_lists_the_allowed_ones():
    with pytest.raises(InputError, match=r"is 'reinhard', not one of \['macenko', 'vahadane'\]"):
        make_normalizer("reinhard", target=None, background_intensity=240)


@pytest.mark.parametrize("method", sorted(NORMALIZERS))
def test_constructors_share_one_argument_order(method):
    params = list(inspect.signature(NORMALIZERS[method]).parameters.values())
    assert [p.name for p in params[:2]] == ["target", "background_intensity"]
    for p in params[:2]:  # no default: the caller passes the configured value
        assert p.default is inspect.Parameter.empty
        assert p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert params[2:] and all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[2:])
    with pytest.raises(TypeError, match="background_intensity"):
        make_normalizer(method, target=None)


@pytest.mark.parametrize("method", sorted(NORMALIZERS))
@pytest.mark.parametrize("bad", [0, -240])
def test_background_intensity_must_be_positive(method, bad):
    with pytest.raises(InputError, match="background intensity: must be positive"):
        make_normalizer(method, target=None, background_intensity=bad)


@pytest.fixture(scope="module", params=sorted(NORMALIZERS))
def fitted(request) -> tuple[StainNormalizer, object, list[np.ndarray]]:
    method = request.param
    io = WORKFLOW_IO[method]
    offset = 1.0 if method == "macenko" else 0.0  # each method's OD convention
    tiles = synth_tiles(RUIFROK, 2, seed=20, size=48, io=io, offset=offset)
    norm = make_normalizer(method, target=None, background_intensity=io, **FAST[method])
    return norm, norm.fit(tiles), tiles


def test_interface_fit_params_and_transforms(fitted):
    norm, params, tiles = fitted
    assert isinstance(norm, StainNormalizer)
    assert type(params) is norm.params_type and params.method == norm.method
    assert params.Io == norm.background_intensity == norm.target.Io
    assert params.n_tiles == 2 and params.n_pixels == 2 * 48 * 48
    assert angles(params.matrix, RUIFROK).max() < 5
    d = json.loads(json.dumps(params.to_dict()))
    assert d["method"] == norm.method and d["Io"] == norm.background_intensity
    assert norm.params_type.from_dict(d) == params
    batch = norm.transform_batch(np.stack(tiles), params)
    assert batch.shape == (2, 48, 48, 3) and batch.dtype == np.uint8
    for tile, out in zip(tiles, batch, strict=True):
        np.testing.assert_array_equal(norm.transform(tile, params), out)


def test_interface_refuses_foreign_params(fitted):
    norm, params, tiles = fitted
    other = next(m for m in NORMALIZERS if m != norm.method)
    foreign = make_normalizer(other, target=None, background_intensity=norm.background_intensity)
    with pytest.raises(InputError, match=f"must be {norm.params_type.__name__}, got"):
        norm.transform(tiles[0], foreign.target)
    with pytest.raises(InputError, match=f"expected '{norm.method}'"):
        norm.params_type.from_dict(foreign.target.to_dict())
    darker = make_normalizer(norm.method, target=None, background_intensity=200)
    with pytest.raises(InputError, match=r"background intensity Io=2\d\d.0, this normaliser"):
        darker.transform_batch(np.stack(tiles), params)


def test_od_table_conventions():
    v = np.arange(256)
    np.testing.assert_allclose(od_table(240, plus_one=True), -np.log((v + 1) / 240), rtol=0)
    vahadane_od = od_table(255, plus_one=False)
    assert vahadane_od[0] == vahadane_od[1] == pytest.approx(np.log(255))
    assert vahadane_od[255] == 0 and np.all(vahadane_od >= 0)
    assert od_table(240, plus_one=False)[250] == 0  # brighter than I0: background
    assert od_table(240, plus_one=True)[250] < 0  # torchstain does not clip


def test_load_target(tmp_path):
    from PIL import Image

    assert load_target(None) is None and load_target("") is None
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., 1] = 200
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(tmp_path / "target.png")
    got = load_target(str(tmp_path / "target.png"))
    assert got.shape == (4, 5, 3) and got.dtype == np.uint8 and np.all(got[..., 1] == 200)
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(InputError, match="cannot be read as an image"):
        load_target(str(tmp_path / "bad.png"))
