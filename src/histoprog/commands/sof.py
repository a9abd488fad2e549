"""``histoprog sof``: spatial organisation features of one slide's class grid (METHODS 4).

Reads the ``classify`` stage's class grid and status, the infiltration thresholds fitted on
the discovery cohort (``histoprog gmm_thresholds``, or a model.json), and writes the slide's
SOF record (JSON) and figure. A slide that failed upstream passes its failure on; one with
too little tumour gets status ``insufficient_tumour`` and NaN region-based SOFs.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from histoprog.errors import InputError
from histoprog.io import read_json, save_figure, write_json
from histoprog.provenance import provenance
from histoprog.sof import RegionParams, compute_sofs, distance_to_region, tumour_region
from histoprog.status import failure_figure, upstream_failure

log = logging.getLogger("histoprog.sof")


def add_region_args(parser: argparse.ArgumentParser) -> None:
    """Add the tumour-region options (config ``crlm.region``)."""
    defaults = RegionParams()
    parser.add_argument("--dilation", type=int, default=defaults.dilation)
    parser.add_argument("--erosion", type=int, default=defaults.erosion)
    parser.add_argument("--min-component-tiles", type=int, default=defaults.min_component_tiles)
    parser.add_argument("--min-tumour-tiles", type=int, default=defaults.min_tumour_tiles)


def region_params(args: argparse.Namespace) -> RegionParams:
    """RegionParams from the parsed options."""
    return RegionParams(
        dilation=args.dilation,
        erosion=args.erosion,
        min_component_tiles=args.min_component_tiles,
        min_tumour_tiles=args.min_tumour_tiles,
    )


def load_grid(path: str) -> np.ndarray:
    """A class grid from ``.npy``; a clear error if it cannot be read."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(
            f"class grid '{path}'",
            f"it cannot be read as a .npy array ({err})",
            "re-run the classify stage for this slide",
        ) from err


def load_thresholds(path: str) -> dict[str, float]:
    """Infiltration thresholds from ``infiltration_thresholds.json`` or a ``model.json``.

    JSON null (a class without a fitted threshold) becomes NaN.
    """
    data = read_json(path)
    values = data.get("thresholds", data.get("gmm_thresholds"))
    if not isinstance(values, Mapping):
        raise InputError(
            f"thresholds file '{path}'",
            "has no 'thresholds' (or model.json 'gmm_thresholds') mapping",
            "point it at results/analysis/crlm/infiltration_thresholds.json or a model.json",
        )
    return {c: math.nan if v is None else float(v) for c, v in values.items()}


def json_safe(record: Mapping[str, Any]) -> dict[str, Any]:
    """Replace NaN floats by None (JSON null)."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``sof`` subcommand."""
    parser = subparsers.add_parser("sof", help="spatial organisation features of one slide")
    parser.add_argument("--grid", required=True, help="class grid (.npy) from classify")
    parser.add_argument("--meta", required=True, help="class_counts.json (status)")
    parser.add_argument("--thresholds", required=True, help="infiltration thresholds JSON")
    parser.add_argument("--slide-id", required=True)
    parser.add_argument("--patient-id", required=True)
    add_region_args(parser)
    parser.add_argument("--out", required=True, help="SOF record (JSON)")
    parser.add_argument("--out-figure", required=True, help="per-slide SOF figure (PNG)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Compute and write one slide's SOFs and figure."""
    from histoprog.plots.survival import sof_slide_figure

    started = time.perf_counter()
    params = region_params(args)
    thresholds = load_thresholds(args.thresholds)
    record: dict[str, Any] = {"slide_id": args.slide_id, "patient_id": args.patient_id}
    failed = upstream_failure(read_json(args.meta))
    if failed:
        record.update(failed)
        figure = failure_figure(args.slide_id, failed["failed_stage"], failed["reason"])
    else:
        grid = load_grid(args.grid)
        record.update(compute_sofs(grid, thresholds, params))
        region = tumour_region(grid, params)
        figure = sof_slide_figure(
            grid.astype(int),
            region,
            distance_to_region(region),
            thresholds,
            f"slide {args.slide_id}: {record['status']}, {record['n_tissue']} tissue tiles, "
            f"tumour region {record['tumour_region_tiles']} tiles",
        )
    record["seconds"] = round(time.perf_counter() - started, 3)
    record["provenance"] = provenance(
        {"region": params.__dict__, "thresholds_file": args.thresholds}
    )
    record["thresholds"] = json_safe(thresholds)
    save_figure(args.out_figure, figure, dpi=100)
    write_json(args.out, json_safe(record))
    n_tissue = record.get("n_tissue") or 0
    log.info(
        "slide %s: sof %s, %d tissue tiles, tumour region %s tiles in %.2f s (%.0f tiles/s)",
        args.slide_id,
        record["status"],
        n_tissue,
        record.get("tumour_region_tiles"),
        record["seconds"],
        n_tissue / record["seconds"] if record["seconds"] > 0 else 0.0,
    )
