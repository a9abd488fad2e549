"""``histoprog geojson``: a slide's tiles and tumour region as QuPath GeoJSON.

Writes ``annotations.geojson`` (level-0 pixel coordinates of the slide file; format in
:mod:`histoprog.qupath` and results/README.md):

* ``--pipeline crlm`` (after ``classify``): one detection per classified tile, classified
  by its tissue class with its class probabilities as measurements, the tumour region
  (METHODS 4.2) as one annotation, and, given ``--thresholds``, each non-tumour tile's
  infiltrating/distal zone;
* ``--pipeline hcc`` (after ``mil_score``): one ``MIL tile`` detection per bag tile with
  its logit as the measurement ``mil_logit``.

A slide that failed upstream gets an empty FeatureCollection whose ``properties`` say
where and why (``status: failed``, ``failed_stage``, ``reason``), like the other stages'
records; the file is written atomically.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import pandas as pd

from histoprog.cli_options import add_region_options, add_slide_options, region_params
from histoprog.errors import InputError
from histoprog.provenance import provenance
from histoprog.stage import rate, read_upstream
from histoprog.status import FAILED, OK, upstream_failure

log = logging.getLogger("histoprog.geojson")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``geojson`` subcommand."""
    parser = subparsers.add_parser(
        "geojson", help="a slide's tiles and tumour region as QuPath GeoJSON"
    )
    parser.add_argument("--pipeline", choices=["crlm", "hcc"], required=True)
    add_slide_options(parser, slide_file=False)
    parser.add_argument("--tiles-meta", required=True, help="tiles.json from `histoprog tile`")
    crlm = parser.add_argument_group("crlm (classify outputs, tumour region)")
    crlm.add_argument("--classes", help="classes.tsv from classify")
    crlm.add_argument("--grid", help="class_grid.npy from classify")
    crlm.add_argument("--meta", help="class_counts.json from classify (status)")
    crlm.add_argument(
        "--thresholds", default=None, help="infiltration thresholds JSON (optional: zones)"
    )
    add_region_options(crlm)
    hcc = parser.add_argument_group("hcc (mil_score outputs)")
    hcc.add_argument("--mil-tiles", help="mil_tiles.tsv from mil_score")
    hcc.add_argument("--mil-score", help="mil_score.json from mil_score (status)")
    parser.add_argument("--out", required=True, help="annotations.geojson")
    parser.set_defaults(func=run)


def _require(args: argparse.Namespace, *names: str) -> None:
    """Stop with a message when a pipeline's inputs are not given."""
    missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is None]
    if missing:
        raise InputError(
            f"histoprog geojson --pipeline {args.pipeline}",
            f"needs {', '.join(missing)}",
            "pass the slide's outputs of the stage before it (see `histoprog geojson -h`)",
        )


def run(args: argparse.Namespace) -> None:
    """Build and write one slide's FeatureCollection."""
    from histoprog import qupath  # scipy (tumour region): only when the command runs

    started = time.perf_counter()
    record: dict[str, Any] = {"slide_id": args.slide_id, "pipeline": args.pipeline}
    params: dict[str, Any] = {"pipeline": args.pipeline}
    if args.pipeline == "crlm":
        _require(args, "classes", "grid", "meta")
        upstream = read_upstream(args.meta, "classify")
        region = region_params(args)
        params.update(region=region.__dict__, thresholds_file=args.thresholds)
    else:
        _require(args, "mil_tiles", "mil_score")
        upstream = read_upstream(args.mil_score, "mil_score")
    failure = upstream_failure(upstream)
    features: list[dict[str, Any]] = []
    if failure is not None:
        record.update(failure, n_detections=0)
    else:
        tiles_meta = read_upstream(args.tiles_meta, "tile")
        grid_meta = tiles_meta["grid"]
        if args.pipeline == "crlm":
            features, summary = _crlm(args, grid_meta, region, qupath)
        else:
            table = pd.read_csv(args.mil_tiles, sep="\t")
            features, summary = qupath.hcc_features(table, grid_meta)
            summary.update(
                {k: upstream.get(k) for k in ("score", "mean_logit", "group", "t") if k in upstream}
            )
        record.update(status=OK, **summary, **_geometry(tiles_meta))
    seconds = time.perf_counter() - started
    record.update(seconds=round(seconds, 3), provenance=provenance(params))
    qupath.write_geojson(args.out, qupath.feature_collection(features, record))
    if failure is not None:
        log.warning("slide %s: %s at '%s': %s; wrote an empty FeatureCollection", args.slide_id,
                    FAILED, failure["failed_stage"], failure["reason"])  # fmt: skip
    else:
        log.info("slide %s: %d detections%s in %.2f s (%.0f objects/s)", args.slide_id,
                 record["n_detections"],
                 f", tumour region {record['tumour_region_tiles']} tiles"
                 if "tumour_region_tiles" in record else "",
                 seconds, rate(len(features), seconds))  # fmt: skip


def _crlm(
    args: argparse.Namespace, grid_meta: dict[str, Any], region: Any, qupath: Any
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The CRLM features and summary (thresholds: optional)."""
    from histoprog.class_grid import load_grid
    from histoprog.thresholds import json_safe, load_thresholds

    thresholds = load_thresholds(args.thresholds) if args.thresholds else None
    grid = load_grid(args.grid)
    classes = pd.read_csv(args.classes, sep="\t")  # NA: an unreadable tile (left out)
    features, summary = qupath.crlm_features(classes, grid, grid_meta, region, thresholds)
    summary["thresholds"] = None if thresholds is None else json_safe(thresholds)
    return features, summary


def _geometry(tiles_meta: dict[str, Any]) -> dict[str, Any]:
    """The tile size and resolution facts a reader needs to place the tiles."""
    read = tiles_meta.get("read", {})
    slide = tiles_meta.get("slide", {})
    return {
        "coordinates": "level-0 pixels of the slide file",
        "tile_size_level0": int(tiles_meta["grid"]["step"]),
        "slide_mpp": slide.get("mpp"),
        "tile_mpp": read.get("effective_mpp"),
        "slide_bounds": slide.get("bounds"),
        "grid": tiles_meta["grid"],
    }
