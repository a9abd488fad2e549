"""``histoprog tile``: tissue mask, tile grid and tile table of one slide."""

from __future__ import annotations

import argparse
import logging
from functools import partial
from pathlib import Path

import pandas as pd

from histoprog import slides, tiling
from histoprog.brightfield import check_brightfield
from histoprog.cli_options import add_outputs, add_slide_options
from histoprog.defaults import default
from histoprog.errors import SlideError
from histoprog.io import write_tsv
from histoprog.resolution import check_slide_mpp
from histoprog.stage import SlideStage, StageResult, save_picture

log = logging.getLogger("histoprog.tile")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``tile`` subcommand."""
    parser = subparsers.add_parser("tile", help="tile one slide (tile table + tissue-mask QC)")
    add_slide_options(parser)
    parser.add_argument("--sheet-mpp", type=float, default=None, help="mpp from the slide table")
    parser.add_argument(
        "--path-as-written", default=None, help="the slide table's path text (for messages)"
    )
    parser.add_argument(
        "--allow-unusual-mpp",
        action="store_true",
        help="accept an implausible mpp or one contradicting the slide table",
    )
    parser.add_argument(
        "--allow-non-he", action="store_true", help="tile a slide the H&E check rejects"
    )
    parser.add_argument(
        "--target-mpp", type=float, default=default("tile.crlm.mpp"), help="default: tile.crlm's"
    )
    parser.add_argument("--tile-px", type=int, default=default("tile.crlm.px"))
    parser.add_argument("--mpp-tolerance", type=float, default=default("tile.mpp_tolerance"))
    parser.add_argument("--lowres-mpp", type=float, default=default("tile.lowres_mpp"))
    for name in ("saturation_max", "value_min", "black_value_max", "max_blank_fraction"):
        flag = f"--{name.replace('_', '-')}"
        parser.add_argument(flag, type=float, default=default(f"tile.blank.{name}"))
    add_outputs(
        parser,
        tiles="tile table (TSV)",
        meta="slide/tiling metadata (JSON)",
        mask="tissue-mask QC image (PNG)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Tile one slide; a slide-level problem is recorded as ``status: failed``."""
    stage = SlideStage(
        "tile",
        args.slide_id,
        log,
        record=args.out_meta,
        outputs={args.out_tiles: write_tsv, args.out_mask: partial(save_picture, dpi=110)},
        failure_figure=args.out_mask,
        summary="{status}, {n_tiles} tissue tiles of {n_grid_tiles} grid tiles in "
        "{seconds:.2f} s ({rate:.0f} grid tiles/s)",
        count="n_grid_tiles",
    )
    blank = tiling.BlankParams(
        saturation_max=args.saturation_max,
        value_min=args.value_min,
        black_value_max=args.black_value_max,
        max_blank_fraction=args.max_blank_fraction,
    )
    params = {
        "target_mpp": args.target_mpp,
        "tile_px": args.tile_px,
        "mpp_tolerance": args.mpp_tolerance,
        "lowres_mpp": args.lowres_mpp,
        "blank": blank.to_dict(),
        "sheet_mpp": args.sheet_mpp,
        "allow_unusual_mpp": args.allow_unusual_mpp,
        "allow_non_he": args.allow_non_he,
    }
    log.info("slide %s: tiling %s (%d px tiles at %g um/px)", args.slide_id, args.slide,
             args.tile_px, args.target_mpp)  # fmt: skip
    stage.run(
        {"slide_id": args.slide_id, "slide_path": args.slide},
        params,
        lambda: tile_slide(args, blank),
        StageResult({"n_tiles": 0}, {args.out_tiles: pd.DataFrame(columns=[*tiling.TILE_COLUMNS])}),
    )


def tile_slide(args: argparse.Namespace, blank: tiling.BlankParams) -> StageResult:
    """Open, plan, mask and grid one slide; raise `SlideError` for slide-level problems."""
    slide = slides.open_slide(args.slide, args.slide_id, args.path_as_written)
    try:
        info = slides.slide_info(slide, Path(args.slide), args.slide_id, args.sheet_mpp)
        check_slide_mpp(info, args.sheet_mpp, args.slide_id, allow_unusual=args.allow_unusual_mpp)
        plan = slides.plan_read(info, args.target_mpp, args.tile_px, args.mpp_tolerance)
        grid = tiling.tile_grid(info, plan)
        rgb, transparent, scale = slides.read_low_resolution(slide, info, args.lowres_mpp)
    finally:
        slide.close()
    colours = check_brightfield(rgb, transparent, args.slide_id, allow=args.allow_non_he)
    tissue = ~tiling.blank_mask(rgb, transparent, blank)
    fractions = tiling.tissue_fractions(tissue, grid, scale)
    table = tiling.tile_table(grid, fractions, blank)
    if table.empty:
        raise SlideError(
            f"slide '{args.slide_id}' ({args.slide})",
            f"no tissue tile found: all {grid.rows * grid.cols} grid tiles are more than "
            f"{blank.max_blank_fraction:.0%} blank",
            "check the slide's tissue-mask QC image; if tissue is there but pale, lower "
            "tile.blank.value_min or raise tile.blank.saturation_max in config.yaml, "
            "otherwise remove the slide from the slide table",
        )
    meta = {
        "slide": info.to_dict(),
        "read": plan.to_dict(),
        "grid": grid.to_dict(),
        "lowres_scale": scale,
        "brightfield": colours.to_dict(),
        "n_grid_tiles": grid.rows * grid.cols,
        "n_tiles": len(table),
    }
    figure = tiling.mask_thumbnail(rgb, tissue, grid, scale, table, mpp=info.mpp)
    return StageResult(meta, {args.out_tiles: table, args.out_mask: figure})
