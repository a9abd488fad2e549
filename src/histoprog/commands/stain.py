"""``histoprog stain``: fit the slide's Macenko stain parameters; before/after QC image."""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from histoprog import slides
from histoprog.errors import InputError, SlideError
from histoprog.io import read_json, save_figure, write_json
from histoprog.provenance import provenance
from histoprog.stain import MacenkoNormalizer, load_target
from histoprog.status import OK, failure_figure, failure_record, upstream_failure

log = logging.getLogger("histoprog.stain")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``stain`` subcommand."""
    parser = subparsers.add_parser("stain", help="fit a slide's Macenko stain parameters")
    parser.add_argument("--slide", required=True)
    parser.add_argument("--slide-id", required=True)
    parser.add_argument("--tiles", required=True, help="tile table from `histoprog tile`")
    parser.add_argument("--tiles-meta", required=True, help="tile metadata from `histoprog tile`")
    parser.add_argument("--fit", choices=["slide", "tile"], default="slide")
    parser.add_argument("--fit-tiles", type=int, default=200)
    parser.add_argument("--target-image", default=None)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--beta", type=float, default=0.15)
    parser.add_argument("--io", type=float, default=240.0)
    parser.add_argument("--qc-tiles", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-params", required=True)
    parser.add_argument("--out-qc", required=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Fit and record stain parameters; pass on an upstream failure."""
    started = time.perf_counter()
    params = {
        k: getattr(args, k)
        for k in ("fit", "fit_tiles", "target_image", "alpha", "beta", "io", "qc_tiles", "seed")
    }
    tiles_meta = read_json(args.tiles_meta)
    record: dict[str, Any] = {"slide_id": args.slide_id, "method": "macenko", "fit": args.fit}
    log.info("slide %s: Macenko %s fit on up to %d tiles of %s", args.slide_id, args.fit,
             args.fit_tiles, args.slide)  # fmt: skip
    failed = upstream_failure(tiles_meta)
    if failed:
        record.update(failed)
        figure = failure_figure(args.slide_id, failed["failed_stage"], failed["reason"])
    else:
        normalizer = MacenkoNormalizer(
            load_target(args.target_image), args.io, alpha=args.alpha, beta=args.beta
        )
        try:
            fitted, figure = fit_slide(args, tiles_meta, normalizer)
        except SlideError as err:
            log.error("%s", err)
            record.update(failure_record("stain", str(err)))
            figure = failure_figure(args.slide_id, "stain", str(err))
        else:
            record.update(fitted, status=OK)
    record["seconds"] = round(time.perf_counter() - started, 3)
    record["provenance"] = provenance(params)
    save_figure(args.out_qc, figure, dpi=100)
    write_json(args.out_params, record)
    n_read = record.get("n_fit_tiles", 0)
    log.info(
        "slide %s: stain %s, %d of %d tissue tiles read in %.2f s (%.1f tiles/s)",
        args.slide_id,
        record["status"],
        n_read,
        record.get("n_tiles", 0),
        record["seconds"],
        n_read / record["seconds"] if record["seconds"] > 0 else 0.0,
    )


def fit_slide(
    args: argparse.Namespace, tiles_meta: dict[str, Any], normalizer: MacenkoNormalizer
) -> tuple[dict[str, Any], Any]:
    """Read sampled tissue tiles, fit (slide mode) and draw the before/after QC image."""
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
    return fitted, qc_figure(args.slide_id, qc, after, args.fit)


def qc_figure(slide_id: str, before: np.ndarray, after: np.ndarray, fit: str) -> Any:
    """Sample tiles before (top row) and after (bottom row) normalisation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(before)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(before[i])
        axes[1, i].imshow(after[i])
    for ax in axes.ravel():
        ax.set_axis_off()
    axes[0, 0].set_title("before", loc="left", fontsize=9)
    axes[1, 0].set_title(f"after (Macenko, {fit} fit)", loc="left", fontsize=9)
    fig.suptitle(f"slide {slide_id}", fontsize=10)
    fig.tight_layout()
    return fig
