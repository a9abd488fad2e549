"""``histoprog mil_score``: a slide's MIL score, risk group and tile logits (METHODS 6.4).

Writes ``mil_score.json`` (status, ``score`` S, ``mean_logit`` T, ``group`` high/low at
the model's threshold t, tile count, model hash, provenance), ``mil_tiles.tsv`` (``row``,
``col``, ``x``, ``y``, ``logit`` of every tile of the bag) and ``mil_map.png`` (the bag's
tiles coloured by logit on the slide thumbnail, :mod:`histoprog.plots.mil_map`). A slide
whose nuclei stage failed passes the failure on (its map says why).
"""

from __future__ import annotations

import argparse
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from histoprog import slides
from histoprog.cli_options import add_outputs, add_slide_options, add_torch_options
from histoprog.device import select_device, set_threads
from histoprog.hcc.bags import Bag
from histoprog.hcc.mil import BagScore, score_bag
from histoprog.io import write_tsv
from histoprog.models import load_checkpoint
from histoprog.plots.mil_map import MilMap, mil_map
from histoprog.plots.slide_view import SlideView, slide_view
from histoprog.stage import (
    SlideStage,
    StageResult,
    read_upstream,
    save_picture,
    tiles_per_second,
)
from histoprog.status import upstream_failure

log = logging.getLogger("histoprog.mil_score")

HIGH, LOW = "high", "low"
TILE_COLUMNS = ("row", "col", "x", "y", "logit")
#: the MIL map's slide image: its long side (px)
MAP_PX = 1024


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``mil_score`` subcommand."""
    parser = subparsers.add_parser("mil_score", help="score one slide with the MIL model")
    add_slide_options(parser, patient_id=True)
    parser.add_argument("--tiles-meta", required=True, help="tiles.json from `histoprog tile`")
    parser.add_argument("--bag", required=True, help="nuclei.npz from `histoprog nuclei`")
    parser.add_argument("--nuclei-meta", required=True, help="nuclei.json")
    parser.add_argument("--model", required=True, help="MIL checkpoint (train_mil)")
    add_torch_options(parser, batch_size=64)
    add_outputs(parser, score="score record (JSON)", tiles="tile logits (TSV)", map="MIL map (PNG)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Score the bag; write the record, the tile logits and the MIL map."""
    stage = SlideStage(
        "mil_score",
        args.slide_id,
        log,
        record=args.out_score,
        outputs={args.out_tiles: write_tsv, args.out_map: save_picture},
        failure_figure=args.out_map,
        summary="MIL {status} {score}",
    )
    set_threads(args.threads)
    nuclei_meta = read_upstream(args.nuclei_meta, "nuclei")
    tiles_meta = read_upstream(args.tiles_meta, "tile")
    failed = upstream_failure(nuclei_meta) is not None
    # decompress the bag and read the slide's thumbnail while the model loads
    with ThreadPoolExecutor(2) as pool:
        bag_job = None if failed else pool.submit(Bag.load, args.bag)
        view_job = None if failed else pool.submit(thumbnail, args, tiles_meta)
        model, meta = load_checkpoint(args.model, expected_kind="mil", expected_in_channels=4)
        bag = None if bag_job is None else bag_job.result()
    cfg = meta["config"]

    def score() -> StageResult:
        device = select_device(args.device)
        scored = score_bag(
            model,
            bag,
            p=int(cfg["p"]),
            batch_size=args.batch_size,
            device=device,
            mean=meta["normalisation"]["mean"],
            std=meta["normalisation"]["std"],
        )
        fields = {
            "score": scored.score,
            "mean_logit": scored.mean_logit,
            "group": risk_group(scored.score, cfg["t"]),
            "n_tiles": len(bag),
            "device": str(device),
            "tiles_per_second": tiles_per_second(len(bag), stage.elapsed()),
        }
        tiles = {"row": bag.row, "col": bag.col, "x": bag.x, "y": bag.y, "logit": scored.logits}
        view = view_job.result()  # a SlideError here fails the slide
        figure = draw_map(args.slide_id, view, tiles_meta, nuclei_meta, bag, scored, cfg["t"])
        files = {args.out_tiles: pd.DataFrame(tiles), args.out_map: figure.image}
        return StageResult(fields, files)

    stage.run(
        {
            "slide_id": args.slide_id,
            "patient_id": args.patient_id,
            "t": cfg["t"],
            "p": cfg["p"],
            "model": {"path": args.model, "sha256": meta["sha256"]},
        },
        {"batch_size": args.batch_size},
        score,
        StageResult({}, {args.out_tiles: pd.DataFrame(columns=list(TILE_COLUMNS))}),
        upstream=[nuclei_meta],
    )


def risk_group(score: float, t: float) -> str:
    """The slide's group: high when S >= t (METHODS 6.4)."""
    return HIGH if score >= t else LOW


def thumbnail(args: argparse.Namespace, tiles_meta: dict[str, Any]) -> SlideView:
    """The slide at the map's size (read through :mod:`histoprog.slides`)."""
    info = slides.SlideInfo(**tiles_meta["slide"])
    rgb, scale = slides.read_thumbnail(args.slide, args.slide_id, info, MAP_PX)
    return slide_view(rgb, info.bounds[:2], scale, MAP_PX)


def draw_map(
    slide_id: str,
    view: SlideView,
    tiles_meta: dict[str, Any],
    nuclei_meta: dict[str, Any],
    bag: Bag,
    scored: BagScore,
    t: float,
) -> MilMap:
    """The MIL map of a scored bag; says so when the bag is a sample of the slide's tiles."""
    title = (
        f"slide {slide_id}: MIL score S = {scored.score:.3f}, "
        f"group {risk_group(scored.score, t)} "
        f"(high when S >= t = {t:g})"
    )
    note = bag_note(len(bag), int(nuclei_meta.get("n_tiles", len(bag))))
    return mil_map(
        view,
        bag.x,
        bag.y,
        tiles_meta["grid"]["step"],
        scored.logits,
        math.log(t / (1 - t)),
        scored.mean_logit,
        tiles_meta["slide"]["mpp"],
        title,
        note,
    )


def bag_note(n_bag: int, n_tissue: int) -> str | None:
    """The map's note when the bag holds fewer than the slide's ``n_tissue`` tissue tiles."""
    return f"bag: {n_bag} of {n_tissue} tissue tiles (random sample)" if n_bag < n_tissue else None
