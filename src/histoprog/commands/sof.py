"""``histoprog sof``: spatial organisation features of one slide's class grid (METHODS 4).

Reads the ``classify`` stage's class grid and status, the infiltration thresholds fitted on
the discovery cohort (``histoprog gmm_thresholds``, or a model.json), and writes the slide's
SOF record (JSON) and figure. A slide that failed upstream passes its failure on; one with
too little tumour gets status ``insufficient_tumour`` and NaN region-based SOFs.
"""

from __future__ import annotations

import argparse
import logging

from histoprog.class_grid import load_grid
from histoprog.cli_options import add_outputs, add_region_options, add_slide_options, region_params
from histoprog.sof import RegionParams, compute_sofs, distance_to_region, tumour_region
from histoprog.stage import SlideStage, StageResult, read_upstream, save_picture
from histoprog.thresholds import json_safe, load_thresholds

log = logging.getLogger("histoprog.sof")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sof`` subcommand."""
    parser = subparsers.add_parser("sof", help="spatial organisation features of one slide")
    parser.add_argument("--grid", required=True, help="class grid (.npy) from classify")
    parser.add_argument("--meta", required=True, help="class_counts.json (status)")
    parser.add_argument("--thresholds", required=True, help="infiltration thresholds JSON")
    add_slide_options(parser, slide_file=False, patient_id=True)
    add_region_options(parser)
    parser.add_argument("--out", required=True, help="SOF record (JSON)")
    add_outputs(parser, figure="per-slide SOF figure (PNG)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Compute and write one slide's SOFs and figure."""
    stage = SlideStage(
        "sof",
        args.slide_id,
        log,
        record=args.out,
        outputs={args.out_figure: save_picture},
        failure_figure=args.out_figure,
        summary="sof {status}, {n_tissue} tissue tiles, tumour region {tumour_region_tiles} "
        "tiles in {seconds:.2f} s ({rate:.0f} tiles/s)",
        count="n_tissue",
    )
    params = region_params(args)
    thresholds = load_thresholds(args.thresholds)
    stage.run(
        {
            "slide_id": args.slide_id,
            "patient_id": args.patient_id,
            "thresholds": json_safe(thresholds),
        },
        {"region": params.__dict__, "thresholds_file": args.thresholds},
        lambda: slide_sofs(args, thresholds, params),
        StageResult({}),
        upstream=[read_upstream(args.meta, "classify")],
    )


def slide_sofs(
    args: argparse.Namespace, thresholds: dict[str, float], params: RegionParams
) -> StageResult:
    """The slide's SOFs (NaN as null) and its figure."""
    from histoprog.plots.sof_figure import sof_figure

    grid = load_grid(args.grid)
    sofs = compute_sofs(grid, thresholds, params)
    region = tumour_region(grid, params)
    figure = sof_figure(
        grid.astype(int),
        region,
        distance_to_region(region),
        thresholds,
        f"slide {args.slide_id}: {sofs['status']}, {sofs['n_tissue']} tissue tiles, "
        f"tumour region {sofs['tumour_region_tiles']} tiles",
    )
    return StageResult(json_safe(sofs), {args.out_figure: figure.image})
