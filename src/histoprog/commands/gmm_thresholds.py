"""``histoprog gmm_thresholds``: infiltrating/distal thresholds from discovery slides.

Pools, per non-tumour class, the distances to the tumour region of every tile of every
discovery slide (slides that failed upstream are skipped and listed; slides without a
tumour region contribute nothing) and fits the two-component Gaussian mixtures of
METHODS 4.4 (:func:`histoprog.sof.fit_infiltration_thresholds`).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import numpy as np

from histoprog.class_grid import load_grid
from histoprog.cli_options import add_cohort_slides, add_region_options, add_seed, region_params
from histoprog.errors import InputError
from histoprog.io import read_json, write_json
from histoprog.provenance import provenance
from histoprog.sof import NON_TUMOUR_CLASSES, class_distances, fit_infiltration_thresholds
from histoprog.status import FAILED
from histoprog.thresholds import json_safe

log = logging.getLogger("histoprog.gmm_thresholds")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gmm_thresholds`` subcommand."""
    parser = subparsers.add_parser(
        "gmm_thresholds", help="fit infiltration thresholds on the discovery cohort's grids"
    )
    add_cohort_slides(parser)
    parser.add_argument("--grid-name", default="class_grid.npy")
    parser.add_argument("--meta-name", default="class_counts.json")
    parser.add_argument("--cohort", required=True, help="discovery cohort name (recorded)")
    add_seed(parser, "crlm.seed")
    add_region_options(parser)
    parser.add_argument("--out", required=True, help="thresholds JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Pool distances, fit, write the thresholds JSON."""
    params = region_params(args)
    pooled: dict[str, list[np.ndarray]] = {c: [] for c in NON_TUMOUR_CLASSES}
    used, no_region, failed = [], [], []
    for slide in args.slide_ids:
        folder = f"{args.slides_dir}/{slide}"
        if read_json(f"{folder}/{args.meta_name}").get("status") == FAILED:
            failed.append(slide)
            continue
        dists = class_distances(load_grid(f"{folder}/{args.grid_name}"), params)
        if all(d.size == 0 for d in dists.values()):
            no_region.append(slide)
            continue
        used.append(slide)
        for c, d in dists.items():
            pooled[c].append(d)
    if not used:
        raise InputError(
            f"discovery cohort '{args.cohort}'",
            f"none of its {len(args.slide_ids)} slides has a tumour region "
            f"({len(failed)} failed upstream, {len(no_region)} without enough tumour)",
            "check the classify outputs, or give fitted thresholds in config key "
            "crlm.infiltration_thresholds",
        )
    joined = {c: np.concatenate(v) if v else np.empty(0) for c, v in pooled.items()}
    thresholds = fit_infiltration_thresholds(joined, seed=args.seed)
    out: dict[str, Any] = {
        "cohort": args.cohort,
        "thresholds": json_safe(thresholds),
        "n_distances": {c: int(d.size) for c, d in joined.items()},
        "slides_used": used,
        "slides_without_region": no_region,
        "slides_failed": failed,
        "method": "2-component 1-D GMM per class (tied vs full variance, lower BIC); "
        "threshold = largest distance assigned to the lower-mean component",
        "provenance": provenance({"region": params.__dict__, "seed": args.seed}),
    }
    write_json(args.out, out)
    log.info(
        "thresholds from %d slides (%d without region, %d failed): %s",
        len(used),
        len(no_region),
        len(failed),
        thresholds,
    )
