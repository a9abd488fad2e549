"""``histoprog nuclei``: a slide's MIL bag with nuclei heat maps (METHODS 6.1-6.2).

Writes, under ``results/{cohort}/slides/{slide}/``:

* ``nuclei.npz``: up to ``--bag-size`` random tissue tiles (seeded), read at the tile
  stage's plan but resized to ``--tile-px`` (224), Vahadane-normalised with the slide's own
  parameters (fitted here on up to ``--fit-tiles`` of them), and the U-net heat map of each
  (uint8); arrays ``tiles``, ``heat``, ``row``, ``col``, ``x``, ``y``, compressed;
* ``nuclei.json``: status, counts, Vahadane parameters, model hash, timing, provenance;
* ``nuclei_qc.png``: tiles beside their heat maps.

A slide whose tile stage failed, that has no tissue tile, whose stain fit fails or none of
whose tiles can be read gets ``status: failed`` (and an empty bag) instead of stopping the
cohort.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from histoprog.data import SlideTiles
from histoprog.errors import SlideError
from histoprog.hcc.bags import Bag, build_bag, choose_bag, fit_stain, montage_indices, scaled_plan
from histoprog.hcc.qc import nuclei_montage, save_png
from histoprog.hcc.unet import check_tile_size
from histoprog.io import read_json, save_figure, write_json
from histoprog.models import load_checkpoint
from histoprog.provenance import provenance
from histoprog.slides import ReadPlan
from histoprog.stain import VAHADANE_BACKGROUND_INTENSITY, load_target, make_normalizer
from histoprog.status import OK, failure_figure, failure_record, upstream_failure
from histoprog.train import select_device

log = logging.getLogger("histoprog.nuclei")

STAGE = "nuclei"


def bag_size_arg(text: str) -> int | None:
    """``all`` -> None, else a positive integer."""
    if text.lower() == "all":
        return None
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("bag size must be >= 1 or 'all'")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``nuclei`` subcommand."""
    parser = subparsers.add_parser("nuclei", help="a slide's bag of tiles with heat maps")
    parser.add_argument("--slide", required=True)
    parser.add_argument("--slide-id", required=True)
    parser.add_argument("--tiles", required=True, help="tile table from `histoprog tile`")
    parser.add_argument("--tiles-meta", required=True, help="tiles.json from `histoprog tile`")
    parser.add_argument("--model", required=True, help="U-net checkpoint (train_unet)")
    parser.add_argument("--tile-px", type=int, default=224, help="tiles are resized to this")
    parser.add_argument("--bag-size", type=bag_size_arg, default=128, help="tiles or 'all'")
    parser.add_argument("--fit-tiles", type=int, default=200, help="tiles of the stain fit")
    parser.add_argument("--target-image", default=None, help="Vahadane target image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="tile-reading processes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--qc-tiles", type=int, default=8)
    parser.add_argument("--out-bag", required=True, help="bag file (.npz)")
    parser.add_argument("--out-meta", required=True, help="status and parameters (JSON)")
    parser.add_argument("--out-qc", required=True, help="QC montage (PNG)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Build and write one slide's bag; record and pass on slide-level failures."""
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    check_tile_size(args.tile_px)
    tiles_meta = read_json(args.tiles_meta)
    params = {
        k: getattr(args, k) for k in ("tile_px", "bag_size", "fit_tiles", "target_image", "seed")
    }
    record: dict[str, Any] = {"slide_id": args.slide_id, "stain_method": "vahadane"}
    unet, meta = load_checkpoint(args.model, expected_kind="unet", expected_in_channels=3)
    record["model"] = {"path": args.model, "sha256": meta["sha256"], **meta["architecture"]}
    failed = upstream_failure(tiles_meta)
    if failed is None:
        try:
            run_result = _build(args, tiles_meta, unet, meta)
        except SlideError as err:
            log.error("%s", err)
            failed = failure_record(STAGE, str(err))
    if failed is not None:
        record.update(failed, n_bag=0)
        empty = np.zeros((0, args.tile_px, args.tile_px), np.uint8)
        Bag(empty[..., None].repeat(3, -1), empty, *(np.zeros(0, np.int64),) * 4).save(args.out_bag)
        figure = failure_figure(args.slide_id, failed["failed_stage"], failed["reason"])
        save_figure(args.out_qc, figure, dpi=100)
    else:
        bag, info = run_result
        record.update(info, status=OK)
        bag.save(args.out_bag)
        pick = montage_indices(len(bag), args.qc_tiles)
        save_png(args.out_qc, nuclei_montage(bag.tiles[pick], bag.heat[pick], args.slide_id))
    record["seconds"] = round(time.perf_counter() - started, 3)
    record["provenance"] = provenance(params)
    write_json(args.out_meta, record)
    log.info("slide %s: nuclei %s in %.2f s", args.slide_id, record["status"], record["seconds"])


def _build(
    args: argparse.Namespace, tiles_meta: dict[str, Any], unet: torch.nn.Module, meta: dict
) -> tuple[Bag, dict[str, Any]]:
    """Select, fit the stain, read/normalise and run the U-net; raise SlideError."""
    table = pd.read_csv(args.tiles, sep="\t")
    if table.empty:
        raise SlideError(
            f"slide '{args.slide_id}'",
            "has no tissue tiles, so its bag would be empty",
            "check the tissue-mask QC image (tile.blank thresholds) or remove the slide",
        )
    plan = scaled_plan(ReadPlan(**tiles_meta["read"]), args.tile_px)
    chosen = choose_bag(len(table), args.bag_size, args.seed)
    sub = table.iloc[chosen]
    xy = sub[["x", "y"]].to_numpy()
    fit_pick = choose_bag(len(sub), args.fit_tiles, args.seed + 1)
    normalizer = make_normalizer(
        "vahadane",
        target=load_target(args.target_image),
        background_intensity=VAHADANE_BACKGROUND_INTENSITY,
        seed=args.seed,
    )
    stain = fit_stain(args.slide, args.slide_id, plan, xy[fit_pick], normalizer)
    dataset = SlideTiles(args.slide, args.slide_id, plan, xy, normalizer, stain)
    device = select_device(args.device)
    result = build_bag(
        dataset,
        unet,
        sub[["row", "col"]].to_numpy(),
        batch_size=args.batch_size,
        workers=args.workers,
        device=device,
    )
    if result.n_unreadable:
        log.warning("slide %s: %d unreadable tiles left out", args.slide_id, result.n_unreadable)
    info = {
        "n_tiles": len(table),
        "n_bag": len(result.bag),
        "n_unreadable": result.n_unreadable,
        "n_fit_tiles": len(fit_pick),
        "stain": stain.to_dict(),
        "stain_target": normalizer.target.to_dict(),
        "read": plan.to_dict(),
        "device": str(device),
        "tiles_per_second": round(len(sub) / result.seconds, 2) if result.seconds > 0 else None,
        "unet_val_dice": meta["metrics"].get("val_dice"),
    }
    return result.bag, info
