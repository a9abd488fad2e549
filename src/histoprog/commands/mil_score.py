"""``histoprog mil_score``: a slide's MIL score, risk group and tile logits (METHODS 6.4).

Writes ``mil_score.json`` (status, ``score`` S, ``mean_logit`` T, ``group`` high/low at
the model's threshold t, tile count, model hash, provenance) and ``mil_tiles.tsv`` (``row``,
``col``, ``x``, ``y``, ``logit`` of every tile of the bag). A slide whose nuclei stage
failed passes the failure on.
"""

from __future__ import annotations

import argparse
import logging
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from histoprog.cli_options import add_outputs, add_slide_options, add_torch_options
from histoprog.device import select_device, set_threads
from histoprog.hcc.bags import Bag
from histoprog.hcc.mil import score_bag
from histoprog.io import write_tsv
from histoprog.models import load_checkpoint
from histoprog.stage import SlideStage, StageResult, read_upstream, tiles_per_second
from histoprog.status import upstream_failure

log = logging.getLogger("histoprog.mil_score")

HIGH, LOW = "high", "low"
TILE_COLUMNS = ("row", "col", "x", "y", "logit")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``mil_score`` subcommand."""
    parser = subparsers.add_parser("mil_score", help="score one slide with the MIL model")
    add_slide_options(parser, slide_file=False, patient_id=True)
    parser.add_argument("--bag", required=True, help="nuclei.npz from `histoprog nuclei`")
    parser.add_argument("--nuclei-meta", required=True, help="nuclei.json")
    parser.add_argument("--model", required=True, help="MIL checkpoint (train_mil)")
    add_torch_options(parser, batch_size=64)
    add_outputs(parser, score="score record (JSON)", tiles="tile logits (TSV)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Score the bag and write the record and the tile logits."""
    stage = SlideStage(
        "mil_score",
        args.slide_id,
        log,
        record=args.out_score,
        outputs={args.out_tiles: write_tsv},
        summary="MIL {status} {score}",
    )
    set_threads(args.threads)
    nuclei_meta = read_upstream(args.nuclei_meta, "nuclei")
    with ThreadPoolExecutor(1) as pool:  # decompress the bag while the model loads
        pending = None if upstream_failure(nuclei_meta) else pool.submit(Bag.load, args.bag)
        model, meta = load_checkpoint(args.model, expected_kind="mil", expected_in_channels=4)
        bag = None if pending is None else pending.result()
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
            "group": HIGH if scored.score >= cfg["t"] else LOW,
            "n_tiles": len(bag),
            "device": str(device),
            "tiles_per_second": tiles_per_second(len(bag), stage.elapsed()),
        }
        tiles = {"row": bag.row, "col": bag.col, "x": bag.x, "y": bag.y, "logit": scored.logits}
        return StageResult(fields, {args.out_tiles: pd.DataFrame(tiles)})

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
