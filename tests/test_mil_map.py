"""The MIL map of `histoprog mil_score` (mil_map.png) on a generated HCC slide.

One generated 20x slide (16 x 16 grid), tiled at the HCC plan, a 16-tile bag (a sample of
its tissue tiles) from an untrained U-net, scored by an untrained MIL MobileNetV2.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import openslide
import pandas as pd
import pytest
from PIL import Image
from test_hcc_pipeline import (
    hcc_cohort,
    mil_score_args,
    nuclei_args,
    run_stage,
    save_mil_file,
    save_unet_file,
    tile_slide,
)

from histoprog.commands import mil_score
from histoprog.hcc.bags import Bag
from histoprog.hcc.mil import BagScore
from histoprog.plots.colours import diverging_rgb
from histoprog.plots.mil_map import ALPHA, FOOTER_PX, LEGEND_PX, MilMap
from histoprog.plots.pil_text import header_px
from histoprog.plots.slide_view import SlideView

SLIDE = "map-001"


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A generated slide, tiled, its bag of 16 tiles and its mil_score outputs."""
    root = tmp_path_factory.mktemp("mil_map")
    cohort = hcc_cohort(root / "cohort", "map", 1, seed=11)
    d = tile_slide(cohort, SLIDE, root / SLIDE)
    run_stage(*nuclei_args(cohort, SLIDE, d, save_unet_file(root / "unet.pt")))
    run_stage(*mil_score_args(cohort, SLIDE, d, save_mil_file(root / "mil.pt")))
    return {"dir": d, "slide": cohort / "slides" / f"{SLIDE}.tiff"}


def redraw(scored: dict[str, Path]) -> tuple[MilMap, SlideView]:
    """The map as mil_score draws it, from the stage's outputs, and the plain thumbnail."""
    d = scored["dir"]
    tiles_meta = json.loads((d / "tiles.json").read_text())
    record = json.loads((d / "mil_score.json").read_text())
    logits = pd.read_csv(d / "mil_tiles.tsv", sep="\t")["logit"].to_numpy()
    args = SimpleNamespace(slide=scored["slide"], slide_id=SLIDE)
    view = mil_score.thumbnail(args, tiles_meta)
    figure = mil_score.draw_map(
        SLIDE,
        view,
        tiles_meta,
        json.loads((d / "nuclei.json").read_text()),
        Bag.load(d / "nuclei.npz"),
        BagScore(record["score"], record["mean_logit"], logits),
        record["t"],
    )
    return figure, view


def test_map_is_written_with_the_score(scored: dict[str, Path]) -> None:
    d = scored["dir"]
    record = json.loads((d / "mil_score.json").read_text())
    assert record["status"] == "ok" and record["n_tiles"] == 16
    figure, view = redraw(scored)
    with Image.open(d / "mil_map.png") as written:
        assert np.array_equal(np.asarray(written.convert("RGB")), np.asarray(figure.image))
    height, width = view.image.shape[:2]
    assert max(height, width) == mil_score.MAP_PX
    # title and the sample note: two lines above the slide, legend and scale bar beside/below
    assert figure.offset == (0, header_px(2))
    assert figure.image.size[0] == width + LEGEND_PX
    assert figure.image.size[1] >= header_px(2) + height + FOOTER_PX


def test_map_tiles_are_at_the_bag_coordinates(scored: dict[str, Path]) -> None:
    d = scored["dir"]
    figure, view = redraw(scored)
    bag = Bag.load(d / "nuclei.npz")
    step = json.loads((d / "tiles.json").read_text())["grid"]["step"]
    height, width = view.image.shape[:2]
    with openslide.OpenSlide(scored["slide"]) as slide:
        slide_w, slide_h = slide.dimensions
    # the whole slide spans the view: level-0 coordinates / downsample, within a pixel
    expected = np.stack(
        [bag.x * width / slide_w, bag.y * height / slide_h,
         (bag.x + step) * width / slide_w, (bag.y + step) * height / slide_h], axis=-1,
    )  # fmt: skip
    assert len(figure.boxes) == len(bag) == 16
    assert np.abs(figure.boxes - expected).max() <= 1.0
    # the canvas differs from the plain thumbnail inside the bag's tiles and nowhere else
    ox, oy = figure.offset
    canvas = np.asarray(figure.image).astype(int)[oy : oy + height, ox : ox + width]
    changed = (canvas != view.image).any(axis=-1)
    inside = np.zeros_like(changed)
    for c0, r0, c1, r1 in np.rint(figure.boxes).astype(int):
        inside[r0:r1, c0:c1] = True
        assert changed[r0 + 1 : r1 - 1, c0 + 1 : c1 - 1].all()
    assert not changed[~inside].any()
    # each tile's centre: the thumbnail blended with its logit's colour, centred at logit t
    record = json.loads((d / "mil_score.json").read_text())
    logits = pd.read_csv(d / "mil_tiles.tsv", sep="\t")["logit"].to_numpy()
    centre = math.log(record["t"] / (1 - record["t"]))
    colours = diverging_rgb((logits - centre) / np.abs(logits - centre).max())
    for (c0, r0, c1, r1), colour in zip(np.rint(figure.boxes).astype(int), colours, strict=True):
        r, c = (r0 + r1) // 2, (c0 + c1) // 2
        blended = (1 - ALPHA) * view.image[r, c] + ALPHA * colour
        assert np.abs(canvas[r, c] - blended).max() <= 1


def test_sample_note() -> None:
    assert mil_score.bag_note(16, 180) == "bag: 16 of 180 tissue tiles (random sample)"
    assert mil_score.bag_note(180, 180) is None
