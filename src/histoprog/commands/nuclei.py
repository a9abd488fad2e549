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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from histoprog.cli_options import (
    add_outputs,
    add_seed,
    add_slide_options,
    add_target_image,
    add_tile_inputs,
    add_torch_options,
    bag_size,
)
from histoprog.data import SlideTiles
from histoprog.defaults import default
from histoprog.device import select_device, set_threads
from histoprog.errors import SlideError
from histoprog.hcc.bags import Bag, build_bag, choose_bag, fit_stain, montage_indices, scaled_plan
from histoprog.hcc.qc import nuclei_montage
from histoprog.hcc.unet import check_tile_size
from histoprog.models import load_checkpoint
from histoprog.slides import ReadPlan
from histoprog.stage import SlideStage, StageResult, read_upstream, save_picture, tiles_per_second
from histoprog.stain import VAHADANE_BACKGROUND_INTENSITY, load_target, make_normalizer

log = logging.getLogger("histoprog.nuclei")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``nuclei`` subcommand."""
    parser = subparsers.add_parser("nuclei", help="a slide's bag of tiles with heat maps")
    add_slide_options(parser)
    add_tile_inputs(parser)
    parser.add_argument("--model", required=True, help="U-net checkpoint (train_unet)")
    parser.add_argument(
        "--tile-px",
        type=int,
        default=default("hcc.mil.tile_px_in"),
        help="tiles are resized to this",
    )
    parser.add_argument(
        "--bag-size",
        type=bag_size,
        default=str(default("hcc.nuclei.bag_size")),
        help="tiles or 'all'",
    )
    parser.add_argument(
        "--fit-tiles",
        type=int,
        default=default("hcc.nuclei.fit_tiles"),
        help="tiles of the stain fit",
    )
    add_target_image(parser, "Vahadane target image")
    add_seed(parser, "hcc.nuclei.seed")
    add_torch_options(
        parser,
        batch_size=default("hcc.nuclei.batch"),
        workers=default("hcc.nuclei.workers"),
        section="hcc",
    )
    parser.add_argument("--qc-tiles", type=int, default=default("hcc.nuclei.qc_tiles"))
    add_outputs(
        parser, bag="bag file (.npz)", meta="status and parameters (JSON)", qc="QC montage (PNG)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Build and write one slide's bag; record and pass on slide-level failures."""
    stage = SlideStage(
        "nuclei",
        args.slide_id,
        log,
        record=args.out_meta,
        outputs={args.out_bag: _save_bag, args.out_qc: save_picture},
        failure_figure=args.out_qc,
        summary="nuclei {status} in {seconds:.2f} s",
    )
    set_threads(args.threads)
    check_tile_size(args.tile_px)
    tiles_meta = read_upstream(args.tiles_meta, "tile")
    params = {
        k: getattr(args, k) for k in ("tile_px", "bag_size", "fit_tiles", "target_image", "seed")
    }
    unet, meta = load_checkpoint(args.model, expected_kind="unet", expected_in_channels=3)
    empty = np.zeros((0, args.tile_px, args.tile_px), np.uint8)
    no_bag = Bag(empty[..., None].repeat(3, -1), empty, *(np.zeros(0, np.int64),) * 4)
    stage.run(
        {
            "slide_id": args.slide_id,
            "stain_method": "vahadane",
            "model": {"path": args.model, "sha256": meta["sha256"], **meta["architecture"]},
        },
        params,
        lambda: build_slide_bag(args, tiles_meta, unet, meta),
        StageResult({"n_bag": 0}, {args.out_bag: no_bag}),
        upstream=[tiles_meta],
    )


def _save_bag(path: Path, bag: Bag) -> None:
    """Write a bag file."""
    bag.save(path)


def build_slide_bag(
    args: argparse.Namespace, tiles_meta: dict[str, Any], unet: torch.nn.Module, meta: dict
) -> StageResult:
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
        "tiles_per_second": tiles_per_second(len(sub), result.seconds),
        "unet_val_dice": meta["metrics"].get("val_dice"),
    }
    pick = montage_indices(len(result.bag), args.qc_tiles)
    montage = nuclei_montage(result.bag.tiles[pick], result.bag.heat[pick], args.slide_id)
    return StageResult(info, {args.out_bag: result.bag, args.out_qc: montage})
