import dataclasses
import math

import numpy as np
import pytest
from conftest import shared_file
from PIL import Image

from histoprog import resolution, slides
from histoprog.errors import SlideError
from histoprog.slides import rgba_to_rgb


def make_info(mpp: float, downsamples: tuple[float, ...], size: int = 40_000) -> slides.SlideInfo:
    dims = tuple((int(size / d), int(size / d)) for d in downsamples)
    return slides.SlideInfo(
        path="x.svs",
        width=size,
        height=size,
        level_dimensions=dims,
        level_downsamples=downsamples,
        mpp=mpp,
        mpp_source="metadata",
        objective_power=None,
        vendor=None,
        bounds=(0, 0, size, size),
    )


@pytest.mark.parametrize(
    ("mpp", "downsamples", "target", "level", "step", "read_px"),
    [
        (0.5, (1.0, 4.0, 16.0), 0.5, 0, 224, 224),  # 20x slide, 20x tiles: level 0
        (0.25, (1.0, 4.0, 16.0), 0.5, 0, 448, 448),  # 40x slide, 20x tiles: downsize from 0
        (0.25, (1.0, 2.0, 4.0), 0.5, 1, 448, 224),  # 40x with a 2x level: read level 1 as is
        (0.25, (1.0, 2.0, 4.0), 0.25, 0, 224, 224),
        (0.499, (1.0, 2.0003, 4.002), 0.5, 0, 224, 224),  # CMU-1: 0.499 mpp is within 1 %
        (0.2525, (1.0, 2.0, 4.0), 0.5, 1, 444, 222),  # level 1 at 0.505 mpp: within 1 %
    ],
)
def test_plan_read_level_and_sizes(mpp, downsamples, target, level, step, read_px):
    plan = slides.plan_read(make_info(mpp, downsamples), target, 224)
    assert plan.level == level
    assert plan.step_level0 == step
    assert plan.read_px == read_px
    assert math.isclose(plan.effective_mpp, step * mpp / 224)


def test_level_within_tolerance_is_used():
    info = make_info(0.2525, (1.0, 2.0, 4.0))
    # level 1 has 0.505 mpp, 1 % above 0.5: accepted at 1 % tolerance, not at 0.5 %
    assert slides.choose_level(info, 0.5, tolerance=0.01) == 1
    assert slides.choose_level(info, 0.5, tolerance=0.005) == 0


def test_target_finer_than_slide_reads_level0():
    assert slides.choose_level(make_info(1.0, (1.0, 4.0)), 0.5) == 0


@pytest.mark.parametrize(
    ("props", "sheet", "expected"),
    [
        ({"openslide.mpp-x": "0.2527"}, 0.5, (0.2527, "metadata")),
        ({}, 0.25, (0.25, "sheet")),
        ({"openslide.objective-power": "40"}, None, (0.25, "objective_power")),
        ({"openslide.objective-power": "20"}, float("nan"), (0.5, "objective_power")),
        ({"openslide.mpp-x": "0"}, 0.5, (0.5, "sheet")),
    ],
)
def test_resolve_mpp_order(props, sheet, expected):
    assert slides.resolve_mpp(props, sheet, "S1") == expected


def test_resolve_mpp_missing_names_mpp_column():
    with pytest.raises(SlideError, match=r"slide 'S1'.*resolution is unknown.*'mpp' column"):
        slides.resolve_mpp({}, None, "S1")


@pytest.mark.parametrize(
    "name", ["cmu-1-small-region_3level.svs", "cmu-1-small-region_3level_generic.tiff"]
)
def test_real_pyramids_plan_and_read(name):
    path = shared_file("slides", name)
    slide = slides.open_slide(path, "cmu")
    info = slides.slide_info(slide, path, "cmu", None)
    assert info.mpp == pytest.approx(0.499)
    assert info.mpp_source == "metadata"
    plan = slides.plan_read(info, 0.5, 224)
    assert (plan.level, plan.step_level0) == (0, 224)
    tile = slides.read_tile(slide, plan, 896, 448)
    assert tile.shape == (224, 224, 3) and tile.dtype.name == "uint8"
    coarse = slides.plan_read(info, 1.0, 112)
    assert coarse.level == 1 and coarse.read_px == 112
    assert slides.read_tile(slide, coarse, 896, 448).shape == (112, 112, 3)
    slide.close()


def test_objective_power_only_svs_vs_generic_tiff():
    path = shared_file("slides", "cmu-1-small-region.svs")
    slide = slides.open_slide(path, "cmu")
    assert slides.slide_info(slide, path, "cmu", None).objective_power == 20
    slide.close()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("unopenable.tiff", r"slide 'bad' .*unopenable.tiff.*OpenSlide cannot open it"),
        ("unreadable.svs", r"slide 'bad' .*unreadable.svs.*cannot decode its pixels"),
    ],
)
def test_broken_slides_raise_slide_error(name, message):
    with pytest.raises(SlideError, match=message):
        slides.open_slide(shared_file("slides", name), "bad")


def test_missing_slide_names_file(tmp_path):
    with pytest.raises(SlideError, match=r"slide 'gone' .*gone.svs.*does not exist"):
        slides.open_slide(tmp_path / "gone.svs", "gone")
    with pytest.raises(
        SlideError,
        match=rf"does not exist \(the slide table gives 'x/gone.svs', which resolves to "
        rf"'{tmp_path / 'x' / 'gone.svs'}'\).*relative to the table's folder",
    ):
        slides.open_slide(tmp_path / "x" / "gone.svs", "gone", as_written="x/gone.svs")


def test_low_resolution_view_matches_thumbnail_scale():
    path = shared_file("slides", "cmu-1-small-region.svs")
    slide = slides.open_slide(path, "cmu")
    info = slides.slide_info(slide, path, "cmu", None)
    rgb, transparent, scale = slides.read_low_resolution(slide, info, 8.0, chunk_px=512)
    assert scale == 16  # single level: level 0 reduced 16x (0.499 * 16 = 7.98 um/px)
    assert rgb.shape == (2967 // 16, 2220 // 16, 3)
    assert not transparent.any()
    whole, _, _ = slides.read_low_resolution(slide, info, 8.0, chunk_px=8192)
    assert (rgb == whole).all()  # chunking does not change the result
    slide.close()


def with_mpp(mpp: float, source: str) -> slides.SlideInfo:
    return dataclasses.replace(make_info(mpp, (1.0, 4.0)), mpp_source=source)


@pytest.mark.parametrize(
    ("info", "sheet", "message"),
    [
        (
            ("metadata", 0.25),
            0.5,
            r"slide 'S' \(x.svs\): the slide table gives mpp 0.5 but the file records 0.25 um/px "
            r"\(100% apart; at most 25% is accepted\).*slides.allow_unusual_mpp",
        ),
        (("sheet", 5.0), 5.0, r"its resolution \(sheet\) is implausible: 5 um/px is outside"),
        (("metadata", 0.05), None, r"\(metadata\) is implausible: 0.05 um/px is outside"),
    ],
)
def test_implausible_or_contradicted_resolution_fails_the_slide(info, sheet, message):
    source, mpp = info
    with pytest.raises(SlideError, match=message):
        resolution.check_slide_mpp(with_mpp(mpp, source), sheet, "S")
    resolution.check_slide_mpp(with_mpp(mpp, source), sheet, "S", allow_unusual=True)


@pytest.mark.parametrize(
    ("source", "mpp", "sheet"),
    [
        ("metadata", 0.2527, 0.25),  # scanners round: 1 % apart
        ("metadata", 0.2265, 0.25),  # Hamamatsu 40x against the nominal 0.25: 10.4 % apart
        ("objective_power", 0.25, 0.5),  # 10 / power is too rough to contradict the sheet
        ("sheet", 0.5, 0.5),
        ("metadata", 0.5, float("nan")),
    ],
)
def test_agreeing_or_uncomparable_resolution_passes(source, mpp, sheet):
    resolution.check_slide_mpp(with_mpp(mpp, source), sheet, "S")


def test_rgba_to_rgb_whitens_transparent_pixels_and_keeps_opaque_ones():
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    opaque = Image.fromarray(rgba, "RGBA")
    np.testing.assert_array_equal(np.asarray(rgba_to_rgb(opaque)), rgba[..., :3])
    rgba[:4, :, 3] = 0  # outside the scanned area
    out = np.asarray(rgba_to_rgb(Image.fromarray(rgba, "RGBA")))
    assert (out[:4] == 255).all()
    np.testing.assert_array_equal(out[4:], rgba[4:, :, :3])
