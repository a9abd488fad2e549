"""``histoprog classify``: tissue class of every tile of one slide (METHODS 3.6).

Reads the slide's tissue tiles from its tile table (DataLoader workers each open the slide),
normalises them with the slide's stain parameters, runs the tissue classifier (CUDA with
float16 autocast when present, else CPU) and writes, under ``results/{cohort}/slides/{slide}/``:

* ``classes.tsv``: ``row``, ``col``, ``x``, ``y``, ``prob_<C>`` per class, ``class`` (name;
  ``NA`` for a tile that could not be read), ``read_ok`` (1/0);
* ``class_grid.npy``: int8 rows x cols, value i = ``histoprog.classes.CLASSES[i]``, -1 = no tile
  (not tissue, or unreadable);
* ``class_counts.json``: status, tiles per class, failed tiles, timing, model and provenance;
* ``overlay.png``: the class grid over a slide thumbnail, with a legend.

A tile that fails to read is recorded; the slide fails (``status: failed``) only when more
than ``--max-failed-fraction`` of its tiles fail. A slide whose tile or stain stage failed
passes that failure on. Outputs are written atomically; a re-run with the same model and
inputs finds them complete and returns (``--force`` recomputes).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from histoprog import slides
from histoprog.class_grid import save_grid
from histoprog.classes import CLASSES, NO_TILE
from histoprog.cli_options import (
    add_outputs,
    add_slide_options,
    add_target_image,
    add_tile_inputs,
    add_torch_options,
)
from histoprog.data import SlideTiles, check_stain_target, same_stain_target
from histoprog.defaults import default
from histoprog.device import select_device, set_threads
from histoprog.errors import InputError
from histoprog.inference import TilePredictions, predict_tiles
from histoprog.io import read_json, write_tsv
from histoprog.models import file_sha256, load_checkpoint
from histoprog.plots.overlay import class_overlay
from histoprog.stage import (
    SlideFailure,
    SlideStage,
    StageResult,
    read_upstream,
    save_picture,
    tiles_per_second,
)
from histoprog.stain import MacenkoNormalizer, MacenkoParams, load_target

log = logging.getLogger("histoprog.classify")

STAGE = "classify"
MAX_LISTED_FAILURES = 100


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``classify`` subcommand."""
    parser = subparsers.add_parser("classify", help="classify the tissue tiles of one slide")
    add_slide_options(parser)
    add_tile_inputs(parser)
    parser.add_argument("--stain", required=True, help="stain.json from `histoprog stain`")
    add_target_image(parser, "the stain stage's target image")
    parser.add_argument("--model", required=True, help="tissue classifier checkpoint (CRLM)")
    add_torch_options(
        parser,
        batch_size=default("tissue.classify.batch_size"),
        workers=default("tissue.classify.workers"),
        section="tissue.classify",
    )
    parser.add_argument(
        "--max-failed-fraction",
        type=float,
        default=default("tissue.classify.max_failed_fraction"),
        help="the slide fails when more than this share of its tiles cannot be read",
    )
    parser.add_argument(
        "--thumbnail-px",
        type=int,
        default=default("tissue.classify.thumbnail_px"),
        help="overlay: the slide image's long side (px)",
    )
    parser.add_argument("--force", action="store_true", help="recompute complete outputs")
    add_outputs(
        parser,
        classes="per-tile probabilities (TSV)",
        grid="class grid (.npy)",
        counts="class counts + status (JSON)",
        overlay="overlay thumbnail (PNG)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Classify one slide's tiles; record and pass on slide-level failures."""
    stage = SlideStage(
        STAGE,
        args.slide_id,
        log,
        record=args.out_counts,
        outputs={
            args.out_classes: write_tsv,
            args.out_grid: save_grid,
            args.out_overlay: save_picture,
        },
        failure_figure=args.out_overlay,
        summary="{n_classified} tiles classified ({n_failed_tiles} unreadable) in {seconds:.1f} s, "
        "{tiles_per_second} tiles/s on {device}: {counts}",
    )
    set_threads(args.threads)
    if not 0 <= args.max_failed_fraction <= 1:
        raise InputError(
            "--max-failed-fraction",
            f"is {args.max_failed_fraction}",
            "give a share in [0, 1] (tissue.classify.max_failed_fraction)",
        )
    tiles_meta = read_upstream(args.tiles_meta, "tile")
    stain_meta = read_upstream(args.stain, "stain")
    inputs = {"tiles_sha256": file_sha256(args.tiles), "stain_sha256": file_sha256(args.stain)}
    model_sha = file_sha256(args.model) if Path(args.model).is_file() else None
    params = {
        "model_sha256": model_sha,
        "max_failed_fraction": args.max_failed_fraction,
        "target_image": args.target_image,
        **inputs,
    }
    if not args.force and _complete(args, params):
        log.info("slide %s: outputs are complete for this model and input; nothing to do",
                 args.slide_id)  # fmt: skip
        return
    stage.run(
        {"slide_id": args.slide_id, "classes": list(CLASSES)},
        params,
        lambda: classify_slide(args, tiles_meta, stain_meta),
        _failed_outputs(args, tiles_meta),
        upstream=[tiles_meta, stain_meta],
    )


def classify_slide(
    args: argparse.Namespace, tiles_meta: dict[str, Any], stain_meta: dict[str, Any]
) -> StageResult:
    """Classify every tissue tile; the slide fails when too many cannot be read."""
    model, meta = load_checkpoint(
        args.model, expected_kind="tissue_classifier", expected_class_names=CLASSES
    )
    normalizer, stain_params = _stain_setup(args, stain_meta, meta)
    trained_px = meta["normalisation"].get("tile_px") or meta["config"].get("patch_px")
    if trained_px and trained_px != tiles_meta["read"]["tile_px"]:
        log.warning(
            "slide %s: tiles are %d px, the model was trained on %d px patches; check tile.px",
            args.slide_id, tiles_meta["read"]["tile_px"], trained_px,
        )  # fmt: skip
    table = pd.read_csv(args.tiles, sep="\t")
    device = select_device(args.device)
    log.info("slide %s: classifying %d tiles on %s (batch %d, %d workers)", args.slide_id,
             len(table), device, args.batch_size, args.workers)  # fmt: skip
    dataset = SlideTiles(
        args.slide,
        args.slide_id,
        slides.ReadPlan(**tiles_meta["read"]),
        table[["x", "y"]].to_numpy(),
        normalizer,
        stain_params,
    )
    pred = predict_tiles(
        model, dataset, batch_size=args.batch_size, workers=args.workers, device=device,
        mean=meta["normalisation"]["mean"], std=meta["normalisation"]["std"], progress=log,
    )  # fmt: skip
    unreadable = _failed_tiles(table, pred.read_ok)
    n_failed = unreadable["n_failed_tiles"]
    failed_share = n_failed / max(len(table), 1)
    if failed_share > args.max_failed_fraction:
        raise SlideFailure(
            f"{n_failed} of {len(table)} tiles ({failed_share:.1%}) could not be read, more "
            f"than the {args.max_failed_fraction:.1%} allowed "
            "(tissue.classify.max_failed_fraction); the slide file is probably damaged: "
            "re-copy it, or raise the threshold",
            unreadable,
        )
    grid_meta = tiles_meta["grid"]
    labels = np.where(pred.read_ok, np.nan_to_num(pred.probs).argmax(axis=1), NO_TILE)
    grid = np.full((grid_meta["rows"], grid_meta["cols"]), NO_TILE, dtype=np.int8)
    grid[table["row"].to_numpy(), table["col"].to_numpy()] = labels
    counts = {c: int((labels == i).sum()) for i, c in enumerate(CLASSES)}
    fields = {
        **unreadable,
        "n_tiles": len(table),
        "n_classified": int(pred.read_ok.sum()),
        "n_stain_fit_failed": int((pred.read_ok & ~pred.stain_ok).sum()),
        "counts": counts,
        "grid_shape": list(grid.shape),
        "model": {"path": args.model, "sha256": meta["sha256"], **meta["architecture"]},
        "device": str(device),
        "mixed_precision": device.type == "cuda",
        "tiles_per_second": tiles_per_second(len(table), pred.seconds),
    }
    files = {
        args.out_classes: _classes_table(table, pred, labels),
        args.out_grid: grid,
        args.out_overlay: _overlay(args, tiles_meta, grid, counts),
    }
    return StageResult(fields, files)


def _complete(args: argparse.Namespace, params: dict[str, Any]) -> bool:
    """Whether all outputs exist and were made by this model from these inputs."""
    outputs = (args.out_classes, args.out_grid, args.out_counts, args.out_overlay)
    if not all(Path(p).is_file() for p in outputs):
        return False
    try:
        previous = read_json(args.out_counts).get("provenance", {}).get("params", {})
    except ValueError:
        return False
    return previous == params


def _stain_setup(
    args: argparse.Namespace, stain_meta: dict[str, Any], model_meta: dict[str, Any]
) -> tuple[MacenkoNormalizer, MacenkoParams | None]:
    """The normaliser (the stain stage's target) and the slide's parameters (slide fit)."""
    where = f"slide '{args.slide_id}': stain output '{args.stain}'"
    target = stain_meta.get("target")
    fit = stain_meta.get("fit")
    if not isinstance(target, dict) or fit not in {"slide", "tile"}:
        raise InputError(
            where,
            "lacks the stain target or the fit mode (not written by `histoprog stain`?)",
            "delete it and re-run the stain rule for this slide",
        )
    params = None
    if fit == "slide":
        if "params" not in stain_meta:
            raise InputError(
                where,
                "has status ok but no fitted stain parameters ('params')",
                "delete it and re-run the stain rule for this slide",
            )
        params = MacenkoParams.from_dict(stain_meta["params"])
    try:
        normalizer = MacenkoNormalizer(
            load_target(args.target_image),
            target["Io"],
            alpha=target["alpha"],
            beta=target["beta"],
        )
    except KeyError as err:
        raise InputError(where, f"its target lacks {err}", "re-run the stain rule") from err
    if not same_stain_target(normalizer.target.to_dict(), target):
        raise InputError(
            where,
            "was normalised to another stain target than --target-image gives",
            "pass the stain stage's target image (stain.target_image), or re-run the stain rule",
        )
    check_stain_target(model_meta.get("normalisation") or {}, target, f"model '{args.model}'")
    return normalizer, params


def _failed_tiles(table: pd.DataFrame, read_ok: np.ndarray) -> dict[str, Any]:
    """Count and (the first 100) grid positions of unreadable tiles."""
    bad = table.loc[~read_ok, ["row", "col"]]
    return {
        "n_failed_tiles": len(bad),
        "failed_tiles": bad.head(MAX_LISTED_FAILURES).to_numpy().tolist(),
    }


def _classes_table(table: pd.DataFrame, pred: TilePredictions, labels: np.ndarray) -> pd.DataFrame:
    """``row, col, x, y, prob_<C>..., class, read_ok``."""
    out = table[["row", "col", "x", "y"]].reset_index(drop=True).copy()
    for i, name in enumerate(CLASSES):
        out[f"prob_{name}"] = pred.probs[:, i].astype(np.float64)
    out["class"] = [CLASSES[i] if i >= 0 else "NA" for i in labels]
    out["read_ok"] = pred.read_ok.astype(int)
    return out


def _overlay(
    args: argparse.Namespace, tiles_meta: dict[str, Any], grid: np.ndarray, counts: dict[str, int]
) -> Image.Image:
    """The class grid over a thumbnail of the slide (PIL; no matplotlib in this stage)."""
    info = slides.SlideInfo(**tiles_meta["slide"])
    rgb, scale = slides.read_thumbnail(args.slide, args.slide_id, info, args.thumbnail_px)
    g = tiles_meta["grid"]
    grid_origin = (g.get("origin_x", 0), g.get("origin_y", 0))
    title = f"slide {args.slide_id}: {sum(counts.values())} tiles classified"
    return class_overlay(
        rgb,
        info.bounds[:2],
        scale,
        grid,
        grid_origin,
        g["step"],
        CLASSES,
        counts,
        title,
        long_side_px=args.thumbnail_px,
        mpp=info.mpp,
    )


def _failed_outputs(args: argparse.Namespace, tiles_meta: dict[str, Any]) -> StageResult:
    """A failed slide's outputs: an empty table and an all -1 grid (the figure says why)."""
    grid_meta = tiles_meta.get("grid") or {}
    shape = (int(grid_meta.get("rows", 0)), int(grid_meta.get("cols", 0)))
    columns = ["row", "col", "x", "y", *[f"prob_{c}" for c in CLASSES], "class", "read_ok"]
    fields = {
        "n_tiles": int(tiles_meta.get("n_tiles", 0)),
        "grid_shape": list(shape),
        "counts": {c: 0 for c in CLASSES},
    }
    files = {
        args.out_classes: pd.DataFrame(columns=columns),
        args.out_grid: np.full(shape, NO_TILE, dtype=np.int8),
    }
    return StageResult(fields, files)
