"""Brightfield H&E check on a slide's low-resolution view: H&E passes; fluorescence,
false colour, hue-rotated and immunostained views fail with what was measured."""

import numpy as np
import pytest
from conftest import SHARED, shared_file
from PIL import Image
from skimage import data
from skimage.color import hsv2rgb, rgb2hsv

from histoprog import brightfield, slides
from histoprog.errors import SlideError
from histoprog.synth.render import SlideGeometry, SlideRenderer, TextureBank
from histoprog.synth.seeding import rng_for
from histoprog.synth.stain import random_stain

DAB = np.array([0.27, 0.57, 0.78]) / np.linalg.norm([0.27, 0.57, 0.78])


@pytest.fixture(scope="module")
def bank():
    return TextureBank.build(0.5, 11, n_variants=1)


def rendered(bank, seed):
    """A generated H&E slide's 8 um/px view (level 2 of a 20x, factor-4 pyramid) and stain."""
    grid = np.zeros((8, 8), np.int8)
    grid[1:-1, 1:-1] = np.arange(36).reshape(6, 6) % 7
    stain = random_stain(rng_for(seed, "s"))
    geometry = SlideGeometry.make(8, 8, 0.5, 3, 4)
    renderer = SlideRenderer(grid, geometry, bank, stain, rng_for(seed, "c"))
    return renderer.level_image(2), stain


def immunostained(rgb, stain):
    """The same tissue as DAB with a light hematoxylin counterstain (eosin becomes DAB)."""
    od = -np.log10(np.maximum(rgb.astype(float), 1.0) / stain.io)
    mat = np.asarray(stain.scales)[:, None] * stain.vectors
    conc = od.reshape(-1, 3) @ np.linalg.pinv(mat)
    ihc = np.stack([0.5 * stain.vectors[0], DAB]) * np.asarray(stain.scales)[:, None]
    out = stain.io * 10 ** -(conc @ ihc)
    return np.clip(out, 0, 255).round().astype(np.uint8).reshape(rgb.shape)


def fluorescent(rgb):
    """Dark background, hematoxylin as DAPI blue and eosin as green."""
    od = -np.log10(np.maximum(rgb.astype(float), 1.0) / 255.0)
    blue = np.clip(od[..., 0] / od[..., 0].max(), 0, 1)
    green = np.clip(od[..., 1] / od[..., 1].max(), 0, 1)
    return (np.stack([np.zeros_like(blue), green, blue], -1) * 255).astype(np.uint8)


def hue_rotated(rgb, degrees):
    hsv = rgb2hsv(rgb)
    hsv[..., 0] = (hsv[..., 0] + degrees / 360) % 1
    return (hsv2rgb(hsv) * 255).round().astype(np.uint8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generated_he_passes_with_margin(bank, seed):
    rgb, _ = rendered(bank, seed)
    stats = brightfield.check_brightfield(rgb, None, "S")
    assert stats.dark < 0.01 and stats.glass > 0.4 and stats.he_hue > 0.95


@pytest.mark.parametrize(
    "name",
    [
        "cmu-1-small-region.svs",
        "cmu-1-small-region_3level.svs",
        "cmu-1-small-region_3level_generic.tiff",
    ],
)
def test_real_he_slides_pass(name):
    path = shared_file("slides", name)
    slide = slides.open_slide(path, "cmu")
    info = slides.slide_info(slide, path, "cmu", None)
    rgb, transparent, _ = slides.read_low_resolution(slide, info, 8.0)
    slide.close()
    stats = brightfield.check_brightfield(rgb, transparent, "cmu")
    assert stats.dark < 0.01 and stats.glass > 0.5 and stats.he_hue > 0.95


def test_real_he_tiles_have_he_colours_and_no_dark_background():
    """Tiles are all tissue (no glass by nature): only darkness and hue apply to them."""
    paths = sorted(SHARED.glob("he-tiles/*")) + sorted(SHARED.glob("nuclei/images/*"))
    if not paths:
        pytest.skip("../shared/data is not present")
    for path in paths:
        stats = brightfield.measure(np.asarray(Image.open(path).convert("RGB")))
        assert stats.dark < 0.1 and stats.he_hue > 0.95, (path.name, stats)


def test_fluorescence_fails_as_dark_background(bank):
    rgb, _ = rendered(bank, 0)
    with pytest.raises(
        SlideError,
        match=r"slide 'F': it does not look like a brightfield H&E slide: dark background as in "
        r"fluorescence \(6\d% of the view has brightness below 25%; at most 50% is expected\)"
        r".*tile.allow_non_he",
    ):
        brightfield.check_brightfield(fluorescent(rgb), None, "F")


def test_false_colour_without_glass_fails(bank):
    rgb, _ = rendered(bank, 1)
    ycc_as_rgb = np.asarray(Image.fromarray(rgb).convert("YCbCr"))
    with pytest.raises(SlideError, match=r"no blank glass \(0.00% of the view .*tinted"):
        brightfield.check_brightfield(ycc_as_rgb, None, "Y")


@pytest.mark.parametrize("degrees", [60, 90, 120, 180, 240])
def test_hue_rotated_fails(bank, degrees):
    rgb, _ = rendered(bank, 2)
    with pytest.raises(SlideError, match=r"colours far from H&E stains \(only \d+% of the stained"):
        brightfield.check_brightfield(hue_rotated(rgb, degrees), None, "R")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_generated_immunostain_fails(bank, seed):
    rgb, stain = rendered(bank, seed)
    with pytest.raises(SlideError, match=r"colours far from H&E .*immunostain \(brown DAB\)"):
        brightfield.check_brightfield(immunostained(rgb, stain), None, "I")


def test_real_immunostain_fails():
    ihc = data.immunohistochemistry()  # shipped with scikit-image
    with pytest.raises(SlideError, match=r"only 6% of the stained pixels"):
        brightfield.check_brightfield(ihc, None, "ihc")
    shared = SHARED / "he-tiles" / "skimage_ihc.png"
    if shared.exists():
        with pytest.raises(SlideError, match="colours far from H&E"):
            brightfield.check_brightfield(np.asarray(Image.open(shared).convert("RGB")), None, "x")


def test_override_measures_without_failing(bank):
    rgb, _ = rendered(bank, 0)
    stats = brightfield.check_brightfield(fluorescent(rgb), None, "F", allow=True)
    assert stats.dark > brightfield.MAX_DARK
    assert stats.to_dict().keys() == {"dark", "glass", "stained", "he_hue"}


def test_transparent_pixels_are_left_out(bank):
    rgb, _ = rendered(bank, 0)
    padded = np.zeros((rgb.shape[0] * 3, rgb.shape[1], 3), np.uint8)  # black outside the scan
    padded[: rgb.shape[0]] = rgb
    transparent = np.ones(padded.shape[:2], bool)
    transparent[: rgb.shape[0]] = False
    assert brightfield.measure(padded, transparent) == brightfield.measure(rgb)
    with pytest.raises(SlideError, match="dark background"):
        brightfield.check_brightfield(padded, None, "P")


def test_no_stained_pixels_measures_no_hue():
    glass = np.full((50, 50, 3), 240, np.uint8)
    stats = brightfield.check_brightfield(glass, None, "blank")
    assert stats.he_hue is None and stats.glass == 1.0
