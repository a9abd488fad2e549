"""``histoprog stain``: fit the slide's Macenko stain parameters; before/after QC image."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import numpy as np
import pandas as pd

from histoprog import slides
from histoprog.cli_options import (
    add_macenko_options,
    add_outputs,
    add_seed,
    add_slide_options,
    add_tile_inputs,
    macenko_normalizer,
)
from histoprog.defaults import default
from histoprog.errors import InputError, SlideError
from histoprog.plots.stain_qc import stain_qc
from histoprog.stage import SlideStage, StageResult, read_upstream, save_picture

log = logging.getLogger("histoprog.stain")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``stain`` subcommand."""
    parser = subparsers.add_parser("stain", help="fit a slide's Macenko stain parameters")
    add_slide_options(parser)
    add_tile_inputs(parser)
    parser.add_argument("--fit", choices=["slide", "tile"], default=default("stain.fit"))
    parser.add_argument("--fit-tiles", type=int, default=default("stain.fit_tiles"))
    add_macenko_options(parser)
    parser.add_argument("--qc-tiles", type=int, default=default("stain.qc_tiles"))
    add_seed(parser, "stain.seed")
    add_outputs(parser, params="stain parameters (JSON)", qc="before/after QC image (PNG)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Fit and record stain parameters; pass on an upstream failure."""
    stage = SlideStage(
        "stain",
        args.slide_id,
        log,
        record=args.out_params,
        outputs={args.out_qc: save_picture},
        failure_figure=args.out_qc,
        summary="stain {status}, {n_fit_tiles} of {n_tiles} tissue tiles read in {seconds:.2f} s "
        "({rate:.1f} tiles/s)",
        count="n_fit_tiles",
    )
    params = {
        k: getattr(args, k)
        for k in ("fit", "fit_tiles", "target_image", "alpha", "beta", "io", "qc_tiles", "seed")
    }
    tiles_meta = read_upstream(args.tiles_meta, "tile")
    log.info("slide %s: Macenko %s fit on up to %d tiles of %s", args.slide_id, args.fit,
             args.fit_tiles, args.slide)  # fmt: skip
    stage.run(
        {"slide_id": args.slide_id, "method": "macenko", "fit": args.fit},
        params,
        lambda: fit_slide(args, tiles_meta),
        StageResult({}),
        upstream=[tiles_meta],
    )


def fit_slide(args: argparse.Namespace, tiles_meta: dict[str, Any]) -> StageResult:
    """Read sampled tissue tiles, fit (slide mode) and draw the before/after QC image."""
    normalizer = macenko_normalizer(args)
    table = pd.read_csv(args.tiles, sep="\t")
    rng = np.random.default_rng(args.seed)
    n_fit = min(args.fit_tiles, len(table))
    sample = table.iloc[np.sort(rng.choice(len(table), size=n_fit, replace=False))]
    plan = slides.ReadPlan(**tiles_meta["read"])
    slide = slides.open_slide(args.slide, args.slide_id)
    try:
        tiles = np.stack(
            [
                slides.read_tile(slide, plan, x, y)
                for x, y in zip(sample["x"], sample["y"], strict=True)
            ]
        )
    finally:
        slide.close()
    qc = tiles[: args.qc_tiles]
    fitted: dict[str, Any] = {
        "n_fit_tiles": n_fit,
        "n_tiles": len(table),
        "target": normalizer.target.to_dict(),
    }
    if args.fit == "slide":
        try:
            stain_params = normalizer.fit(tiles)
        except InputError as err:
            raise SlideError(
                f"slide '{args.slide_id}'",
                f"the slide-level Macenko fit failed on {n_fit} tissue tiles ({err.problem})",
                "check the tissue-mask QC image; use stain.fit: tile, or remove the slide",
            ) from err
        fitted["params"] = stain_params.to_dict()
        after = normalizer.transform_batch(qc, stain_params)
    else:
        after = np.stack([normalizer.transform_per_tile(tile)[0] for tile in qc])
    return StageResult(fitted, {args.out_qc: stain_qc(args.slide_id, qc, after, args.fit)})
