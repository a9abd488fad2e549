"""``histoprog mil_score``: a slide's MIL score, risk group and tile logits (METHODS 6.4).

Writes ``mil_score.json`` (status, ``score`` S, ``mean_logit`` T, ``group`` high/low at
the model's threshold t, tile count, model hash, provenance) and ``mil_tiles.tsv`` (``row``,
``col``, ``x``, ``y``, ``logit`` of every tile of the bag). A slide whose nuclei stage
failed passes the failure on.
"""

from __future__ import annotations

import argparse
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import torch

from histoprog.hcc.bags import Bag
from histoprog.hcc.mil import score_bag
from histoprog.io import read_json, write_json, write_tsv
from histoprog.models import load_checkpoint
from histoprog.provenance import provenance
from histoprog.status import OK, upstream_failure
from histoprog.train import select_device

log = logging.getLogger("histoprog.mil_score")

HIGH, LOW = "high", "low"
TILE_COLUMNS = ("row", "col", "x", "y", "logit")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``mil_score`` subcommand."""
    parser = subparsers.add_parser("mil_score", help="score one slide with the MIL model")
    parser.add_argument("--slide-id", required=True)
    parser.add_argument("--patient-id", required=True)
    parser.add_argument("--bag", required=True, help="nuclei.npz from `histoprog nuclei`")
    parser.add_argument("--nuclei-meta", required=True, help="nuclei.json")
    parser.add_argument("--model", required=True, help="MIL checkpoint (train_mil)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out-score", required=True, help="score record (JSON)")
    parser.add_argument("--out-tiles", required=True, help="tile logits (TSV)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Score the bag and write the record and the tile logits."""
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    failed = upstream_failure(read_json(args.nuclei_meta))
    with ThreadPoolExecutor(1) as pool:  # decompress the bag while the model loads
        pending = None if failed else pool.submit(Bag.load, args.bag)
        model, meta = load_checkpoint(args.model, expected_kind="mil", expected_in_channels=4)
        bag = None if pending is None else pending.result()
    cfg = meta["config"]
    record: dict[str, Any] = {
        "slide_id": args.slide_id,
        "patient_id": args.patient_id,
        "t": cfg["t"],
        "p": cfg["p"],
        "model": {"path": args.model, "sha256": meta["sha256"]},
    }
    tiles = pd.DataFrame(columns=list(TILE_COLUMNS))
    if bag is None:
        record.update(failed)
    else:
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
        seconds = time.perf_counter() - started
        record.update(
            status=OK,
            score=scored.score,
            mean_logit=scored.mean_logit,
            group=HIGH if scored.score >= cfg["t"] else LOW,
            n_tiles=len(bag),
            device=str(device),
            tiles_per_second=round(len(bag) / seconds, 2) if seconds > 0 else None,
        )
        tiles = pd.DataFrame(
            {"row": bag.row, "col": bag.col, "x": bag.x, "y": bag.y, "logit": scored.logits}
        )
    record["seconds"] = round(time.perf_counter() - started, 3)
    record["provenance"] = provenance({"batch_size": args.batch_size})
    write_tsv(args.out_tiles, tiles)
    write_json(args.out_score, record)
    log.info("slide %s: MIL %s %s", args.slide_id, record["status"], record.get("score", ""))
