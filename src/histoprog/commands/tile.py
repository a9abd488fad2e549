"""``histoprog tile``: tissue mask, tile grid and tile table of one slide."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from histoprog import slides, tiling
from histoprog.errors import SlideError
from histoprog.io import save_image, write_json, write_tsv
from histoprog.provenance import provenance
from histoprog.status import OK, failure_figure, failure_record

log = logging.getLogger("histoprog.tile")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``tile`` subcommand."""
    parser = subparsers.add_parser("tile", help="tile one slide (tile table + tissue-mask QC)")
    parser.add_argument("--slide", required=True, help="slide file")
    parser.add_argument("--slide-id", required=True)
    parser.add_argument("--sheet-mpp", type=float, default=None, help="mpp from the slide table")
    parser.add_argument("--target-mpp", type=float, default=0.5)
    parser.add_argument("--tile-px", type=int, default=224)
    parser.add_argument("--mpp-tolerance", type=float, default=0.01)
    parser.add_argument("--lowres-mpp", type=float, default=8.0)
    parser.add_argument("--saturation-max", type=float, default=0.07)
    parser.add_argument("--value-min", type=float, default=0.85)
    parser.add_argument("--black-value-max", type=float, default=0.05)
    parser.add_argument("--max-blank-fraction", type=float, default=0.5)
    parser.add_argument("--out-tiles", required=True, help="tile table (TSV)")
    parser.add_argument("--out-meta", required=True, help="slide/tiling metadata (JSON)")
    parser.add_argument("--out-mask", required=True, help="tissue-mask QC image (PNG)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Tile one slide; a slide-level problem is recorded as ``status: failed``."""
    started = time.perf_counter()
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
    }
    meta: dict[str, Any] = {"slide_id": args.slide_id, "slide_path": args.slide}
    log.info("slide %s: tiling %s (%d px tiles at %g um/px)", args.slide_id, args.slide,
             args.tile_px, args.target_mpp)  # fmt: skip
    try:
        table, meta_ok, figure = tile_slide(args, blank)
    except SlideError as err:
        log.error("%s", err)
        meta.update(failure_record("tile", str(err)), n_tiles=0)
        table = pd.DataFrame(columns=list(tiling.TILE_COLUMNS))
        figure = failure_figure(args.slide_id, "tile", str(err))
    else:
        meta.update(meta_ok, status=OK)
    meta["seconds"] = round(time.perf_counter() - started, 3)
    meta["provenance"] = provenance(params)
    write_tsv(args.out_tiles, table)
    save_image(args.out_mask, figure)
    write_json(args.out_meta, meta)
    n_grid = meta.get("n_grid_tiles", 0)
    log.info(
        "slide %s: %s, %d tissue tiles of %d grid tiles in %.2f s (%.0f grid tiles/s)",
        args.slide_id,
        meta["status"],
        meta["n_tiles"],
        n_grid,
        meta["seconds"],
        n_grid / meta["seconds"] if meta["seconds"] > 0 else 0.0,
    )


def tile_slide(
    args: argparse.Namespace, blank: tiling.BlankParams
) -> tuple[pd.DataFrame, dict[str, Any], Any]:
    """Open, plan, mask and grid one slide; raise `SlideError` for slide-level problems."""
    slide = slides.open_slide(args.slide, args.slide_id)
    try:
        info = slides.slide_info(slide, Path(args.slide), args.slide_id, args.sheet_mpp)
        plan = slides.plan_read(info, args.target_mpp, args.tile_px, args.mpp_tolerance)
        grid = tiling.tile_grid(info, plan)
        rgb, transparent, scale = slides.read_low_resolution(slide, info, args.lowres_mpp)
    finally:
        slide.close()
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
        "n_grid_tiles": grid.rows * grid.cols,
        "n_tiles": len(table),
    }
    figure = tiling.mask_thumbnail(rgb, tissue, grid, scale, table)
    return table, meta, figure
