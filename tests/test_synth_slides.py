"""Synthetic slides: OpenSlide reads both formats at 20x/40x with the right metadata, levels
and pixels; class colours at known grid cells; streaming large slides."""

import colorsys
import tracemalloc

import numpy as np
import openslide
import pytest

from histoprog.errors import InputError
from histoprog.sof import CLASSES
from histoprog.synth.large import write_large_slide
from histoprog.synth.render import SlideGeometry, SlideRenderer, TextureBank
from histoprog.synth.seeding import rng_for
from histoprog.synth.slide_writer import write_slide
from histoprog.synth.stain import random_stain

C = {c: i for i, c in enumerate(CLASSES)}


def _grid(rows=8, cols=8):
    """A known layout: a band of every class, row by row, BACK margin."""
    g = np.zeros((rows, cols), np.int8)
    names = ["TUM", "STR", "LYM", "HEP", "MUC", "DEB"]
    for r in range(1, rows - 1):
        g[r, 1:-1] = C[names[(r - 1) % len(names)]]
    return g


@pytest.fixture(scope="module")
def banks():
    return {mpp: TextureBank.build(mpp, 11, n_variants=1) for mpp in (0.5, 0.25)}


def _renderer(banks, mpp, factor, grid=None, seed=0):
    g = _grid() if grid is None else grid
    geom = SlideGeometry.make(g.shape[0], g.shape[1], mpp, 3, factor)
    return SlideRenderer(g, geom, banks[mpp], random_stain(rng_for(seed, "s")), rng_for(seed, "c"))


@pytest.mark.parametrize(
    "fmt,mpp,factor",
    [("svs", 0.5, 4), ("tiff", 0.5, 2), ("svs", 0.25, 2), ("tiff", 0.25, 4)],
)
def test_openslide_reads_metadata_levels_and_pixels(tmp_path, banks, fmt, mpp, factor):
    r = _renderer(banks, mpp, factor)
    path = write_slide(tmp_path / f"s.{fmt}", r, fmt=fmt, mpp=mpp, magnification=10 / mpp)
    s = openslide.OpenSlide(path)
    props = s.properties
    assert props["openslide.vendor"] == ("aperio" if fmt == "svs" else "generic-tiff")
    assert float(props["openslide.mpp-x"]) == pytest.approx(mpp)
    assert float(props["openslide.mpp-y"]) == pytest.approx(mpp)
    if fmt == "svs":
        assert float(props["openslide.objective-power"]) == 10 / mpp
    cell = int(112 / mpp)
    n = 8
    w0, h0 = n * cell + int(100 * cell / 224), n * cell + int(100 * cell / 224)
    assert s.level_count == 3
    assert s.dimensions == (w0, h0)
    for k in range(3):
        d = factor**k
        assert s.level_dimensions[k] == (w0 // d, h0 // d)
        wk, hk = s.level_dimensions[k]
        assert s.level_downsamples[k] == pytest.approx((w0 / wk + h0 / hk) / 2)
        assert s.level_downsamples[k] == pytest.approx(d, rel=0.01)
        got = np.asarray(s.read_region((0, 0), k, s.level_dimensions[k]).convert("RGB"))
        ref = r.level_image(k)
        assert got.shape == ref.shape
        err = np.abs(got.astype(np.float32) - ref)
        assert err.mean() < 6.0, (k, err.mean())  # JPEG error grows with detail per pixel
        # Per-cell means agree closely (no colour-space shift).
        ck = cell // d
        gm = got[: n * ck, : n * ck].reshape(n, ck, n, ck, 3).mean((1, 3))
        rm = ref[: n * ck, : n * ck].reshape(n, ck, n, ck, 3).mean((1, 3))
        assert np.abs(gm - rm).max() < 3.0
    # Level k equals the block mean of level 0 (before JPEG): compare a cell's mean.
    c0 = np.asarray(s.read_region((3 * cell, 4 * cell), 0, (cell, cell)).convert("RGB"))
    c2 = np.asarray(s.read_region((3 * cell, 4 * cell), 2, (cell // factor**2,) * 2).convert("RGB"))
    np.testing.assert_allclose(c0.mean((0, 1)), c2.mean((0, 1)), atol=3.0)


def _hsv(rgb):
    return colorsys.rgb_to_hsv(*(rgb / 255.0))


def test_known_cells_decode_to_their_class_colours(tmp_path, banks):
    r = _renderer(banks, 0.5, 4)
    s = openslide.OpenSlide(
        write_slide(tmp_path / "c.svs", r, fmt="svs", mpp=0.5, magnification=20)
    )

    def cell(row, col):
        return np.asarray(s.read_region((col * 224, row * 224), 0, (224, 224)).convert("RGB"))

    stats = {}
    for name, row in [("TUM", 1), ("STR", 2), ("LYM", 3), ("HEP", 4), ("MUC", 5), ("DEB", 6)]:
        px = cell(row, 5).reshape(-1, 3).astype(float)
        stats[name] = px.mean(0)
        h, sat, v = _hsv(px.mean(0))
        assert sat > 0.07, name  # stained tissue is not blank
    back = cell(0, 5).reshape(-1, 3).astype(float)
    h, sat, v = _hsv(back.mean(0))
    assert sat < 0.07 and v > 0.85  # BACK is blank by the tiler's rule
    assert back.std(0).max() < 5
    # Lymphocytes (dense hematoxylin) absorb the most red; mucin is the palest tissue;
    # stroma and hepatocytes are eosin-dominated (red > blue), lymphocytes are not.
    red = {k: v[0] for k, v in stats.items()}
    brightness = {k: v.mean() for k, v in stats.items()}
    assert min(red, key=red.get) == "LYM"
    assert max(brightness, key=brightness.get) == "MUC"
    for name in ("STR", "HEP"):
        assert stats[name][0] > stats[name][2]
    assert stats["LYM"][2] > stats["LYM"][1]
    # Edge strip: partial tiles exist (the slide is wider than the whole cells).
    assert s.dimensions[0] - 8 * 224 == 100


def test_slide_without_mpp_and_svs_with_appmag_only(tmp_path, banks):
    r = _renderer(banks, 0.5, 2)
    t = openslide.OpenSlide(
        write_slide(tmp_path / "n.tiff", r, fmt="tiff", mpp=None, magnification=None)
    )
    assert "openslide.mpp-x" not in t.properties
    assert "openslide.objective-power" not in t.properties
    a = openslide.OpenSlide(
        write_slide(tmp_path / "a.svs", r, fmt="svs", mpp=None, magnification=20)
    )
    assert a.properties["openslide.vendor"] == "aperio"
    assert "openslide.mpp-x" not in a.properties
    assert float(a.properties["openslide.objective-power"]) == 20


def test_same_seed_same_pixels(tmp_path, banks):
    a = write_slide(
        tmp_path / "a.tiff", _renderer(banks, 0.5, 2), fmt="tiff", mpp=0.5, magnification=20
    )
    b = write_slide(
        tmp_path / "b.tiff", _renderer(banks, 0.5, 2), fmt="tiff", mpp=0.5, magnification=20
    )
    assert a.read_bytes() == b.read_bytes()


def test_bad_writer_arguments(tmp_path, banks):
    r = _renderer(banks, 0.5, 2)
    with pytest.raises(InputError, match="format"):
        write_slide(tmp_path / "x.ndpi", r, fmt="ndpi", mpp=0.5, magnification=20)
    with pytest.raises(InputError, match="multiple of 16"):
        write_slide(tmp_path / "x.tiff", r, fmt="tiff", mpp=0.5, magnification=20, tile=100)
    with pytest.raises(InputError, match="pyramid"):
        SlideGeometry.make(16, 16, 0.5, 4, 4)  # 224 px cells are not divisible by 64


def _peak(fn):
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_large_slide_streams_with_bounded_memory(tmp_path):
    _, peak4k = _peak(
        lambda: write_large_slide(tmp_path / "b4.tiff", 4000, seed=1, texture_variants=1)
    )
    info, peak8k = _peak(
        lambda: write_large_slide(
            tmp_path / "big.tiff", 8000, seed=1, texture_variants=1, grid_path=tmp_path / "big.npy"
        )
    )
    w, h = info.size
    assert w >= 8000 and h >= 8000
    raw = w * h * 3
    # Streaming: 4x the area costs far less than 4x the memory (bank + one band of tiles,
    # which grows with the width only), and less than one level-0 copy.
    assert peak8k < 1.6 * peak4k, (peak4k / 2**20, peak8k / 2**20)
    assert peak8k < 0.75 * raw
    s = openslide.OpenSlide(info.path)
    assert s.dimensions == (w, h)
    assert s.level_count == 3
    assert float(s.properties["openslide.mpp-x"]) == 0.5
    grid = np.load(tmp_path / "big.npy")
    assert grid.shape == ((h - 100) // 224, (w - 100) // 224)
    # Tissue, not blank: the centre cell is a tissue class and looks stained.
    rr, cc = np.argwhere(grid == C["TUM"])[len(np.argwhere(grid == C["TUM"])) // 2]
    px = np.asarray(s.read_region((int(cc) * 224, int(rr) * 224), 0, (224, 224)).convert("RGB"))
    assert _hsv(px.reshape(-1, 3).mean(0))[1] > 0.15
    with pytest.raises(InputError, match="below 1000"):
        write_large_slide(tmp_path / "tiny.tiff", 500)
