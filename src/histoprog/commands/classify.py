"""``histoprog classify``: tissue class of every tile of one slide (METHODS 3.6).

Reads the slide's tissue tiles from its tile table (DataLoader workers each open the slide),
normalises them with the slide's stain parameters, runs the tissue classifier (CUDA with
float16 autocast when present, else CPU) and writes, under ``results/{cohort}/slides/{slide}/``:

* ``classes.tsv``: ``row``, ``col``, ``x``, ``y``, ``prob_<C>`` per class, ``class`` (name;
  ``NA`` for a tile that could not be read), ``read_ok`` (1/0);
* ``class_grid.npy``: int8 rows x cols, value i = ``histoprog.sof.CLASSES[i]``, -1 = no tile
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
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from histoprog import slides
from histoprog.data import (
    SlideTiles,
    check_stain_target,
    open_worker_slide,
    same_stain_target,
    to_model_input,
)
from histoprog.errors import InputError, SlideError
from histoprog.io import atomic_path, read_json, save_figure, save_image, write_json, write_tsv
from histoprog.models import file_sha256, load_checkpoint
from histoprog.plots.overlay import class_overlay
from histoprog.progress import batch_len, log_progress
from histoprog.provenance import provenance
from histoprog.sof import CLASSES, NO_TILE
from histoprog.stain import MacenkoNormalizer, MacenkoParams, load_target
from histoprog.status import FAILED, OK, failure_figure, failure_record, upstream_failure
from histoprog.train import select_device

log = logging.getLogger("histoprog.classify")

STAGE = "classify"
MAX_LISTED_FAILURES = 100


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``classify`` subcommand."""
    parser = subparsers.add_parser("classify", help="classify the tissue tiles of one slide")
    parser.add_argument("--slide", required=True, help="slide file")
    parser.add_argument("--slide-id", required=True)
    parser.add_argument("--tiles", required=True, help="tile table from `histoprog tile`")
    parser.add_argument("--tiles-meta", required=True, help="tiles.json from `histoprog tile`")
    parser.add_argument("--stain", required=True, help="stain.json from `histoprog stain`")
    parser.add_argument("--target-image", default=None, help="the stain stage's target image")
    parser.add_argument("--model", required=True, help="tissue classifier checkpoint (CRLM)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="tile-reading worker processes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument(
        "--max-failed-fraction",
        type=float,
        default=0.05,
        help="the slide fails when more than this share of its tiles cannot be read",
    )
    parser.add_argument("--thumbnail-px", type=int, default=1024, help="overlay long side")
    parser.add_argument("--force", action="store_true", help="recompute complete outputs")
    parser.add_argument("--out-classes", required=True, help="per-tile probabilities (TSV)")
    parser.add_argument("--out-grid", required=True, help="class grid (.npy)")
    parser.add_argument("--out-counts", required=True, help="class counts + status (JSON)")
    parser.add_argument("--out-overlay", required=True, help="overlay thumbnail (PNG)")
    parser.set_defaults(func=run)


@dataclass
class TilePredictions:
    """Model output for the tiles of a slide, in tile-table order.

    Attributes:
        probs: N x K softmax probabilities (NaN rows for unreadable tiles).
        read_ok: N flags, False where the tile could not be read.
        stain_ok: N flags, False where a per-tile stain fit failed (tile passed unchanged).
        seconds: wall time of the loop.
    """

    probs: np.ndarray
    read_ok: np.ndarray
    stain_ok: np.ndarray
    seconds: float


def predict_tiles(
    model: nn.Module,
    dataset: SlideTiles,
    *,
    batch_size: int,
    workers: int,
    device: torch.device,
    mean: list[float],
    std: list[float],
    progress: bool = False,
) -> TilePredictions:
    """Run ``model`` over every tile of ``dataset`` (float16 autocast on CUDA).

    Each worker opens the slide itself (``worker_init_fn``); the loader yields uint8 tiles,
    which are standardised on ``device``.
    """
    n, k = len(dataset), int(model.num_classes)
    probs = np.full((n, k), np.nan, dtype=np.float32)
    read_ok = np.zeros(n, dtype=bool)
    stain_ok = np.zeros(n, dtype=bool)
    cuda = device.type == "cuda"
    dataset.open()  # fails here, with the slide named, rather than inside a worker
    dataset.close()  # a forked worker must not share this handle
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        worker_init_fn=open_worker_slide,
        pin_memory=cuda,
        prefetch_factor=4 if workers else None,
    )
    model.to(device).eval()
    if cuda:
        model.to(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.float16) if cuda else nullcontext()
    started = time.perf_counter()
    batches = (
        log_progress(loader, "tiles", total=n, size=batch_len, logger=log) if progress else loader
    )
    try:
        with torch.inference_mode(), autocast:
            for tiles, index, ok, fit_ok in batches:
                logits = model(to_model_input(tiles, device, mean, std))
                batch_probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
                idx = index.numpy()
                good = ok.numpy().astype(bool)
                probs[idx[good]] = batch_probs[good]
                read_ok[idx] = good
                stain_ok[idx] = fit_ok.numpy().astype(bool)
    finally:
        dataset.close()
    return TilePredictions(probs, read_ok, stain_ok, time.perf_counter() - started)


def run(args: argparse.Namespace) -> None:
    """Classify one slide's tiles; record and pass on slide-level failures."""
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not 0 <= args.max_failed_fraction <= 1:
        raise InputError(
            "--max-failed-fraction",
            f"is {args.max_failed_fraction}",
            "give a share in [0, 1] (tissue.classify.max_failed_fraction)",
        )
    tiles_meta = _read_stage_json(args.tiles_meta, "tile")
    stain_meta = _read_stage_json(args.stain, "stain")
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
    record: dict[str, Any] = {"slide_id": args.slide_id, "classes": list(CLASSES)}
    failed = upstream_failure(tiles_meta) or upstream_failure(stain_meta)
    if failed:
        _write_failed(args, record, failed, tiles_meta, params, started)
        return
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
    try:
        pred = predict_tiles(
            model, dataset, batch_size=args.batch_size, workers=args.workers, device=device,
            mean=meta["normalisation"]["mean"], std=meta["normalisation"]["std"], progress=True,
        )  # fmt: skip
    except SlideError as err:
        log.error("%s", err)
        _write_failed(args, record, failure_record(STAGE, str(err)), tiles_meta, params, started)
        return
    n_failed = int((~pred.read_ok).sum())
    failed_share = n_failed / max(len(table), 1)
    record.update(_failed_tiles(table, pred.read_ok))
    if failed_share > args.max_failed_fraction:
        reason = (
            f"{n_failed} of {len(table)} tiles ({failed_share:.1%}) could not be read, more "
            f"than the {args.max_failed_fraction:.1%} allowed "
            "(tissue.classify.max_failed_fraction); the slide file is probably damaged: "
            "re-copy it, or raise the threshold"
        )
        log.error("slide %s: %s", args.slide_id, reason)
        _write_failed(args, record, failure_record(STAGE, reason), tiles_meta, params, started)
        return
    grid_meta = tiles_meta["grid"]
    labels = np.where(pred.read_ok, np.nan_to_num(pred.probs).argmax(axis=1), NO_TILE)
    grid = np.full((grid_meta["rows"], grid_meta["cols"]), NO_TILE, dtype=np.int8)
    grid[table["row"].to_numpy(), table["col"].to_numpy()] = labels
    counts = {c: int((labels == i).sum()) for i, c in enumerate(CLASSES)}
    record.update(
        status=OK,
        n_tiles=len(table),
        n_classified=int(pred.read_ok.sum()),
        n_stain_fit_failed=int((pred.read_ok & ~pred.stain_ok).sum()),
        counts=counts,
        grid_shape=list(grid.shape),
        model={"path": args.model, "sha256": meta["sha256"], **meta["architecture"]},
        device=str(device),
        mixed_precision=device.type == "cuda",
        tiles_per_second=round(len(table) / pred.seconds, 2) if pred.seconds > 0 else None,
    )
    write_tsv(args.out_classes, _classes_table(table, pred, labels))
    _save_grid(args.out_grid, grid)
    save_image(args.out_overlay, _overlay(args, tiles_meta, grid, counts))
    record["seconds"] = round(time.perf_counter() - started, 3)
    record["provenance"] = provenance(params)
    write_json(args.out_counts, record)
    log.info(
        "slide %s: %d tiles classified (%d unreadable) in %.1f s, %.1f tiles/s on %s: %s",
        args.slide_id, record["n_classified"], n_failed, record["seconds"],
        record["tiles_per_second"] or math.nan, device, counts,
    )  # fmt: skip


def _read_stage_json(path: str, stage: str) -> dict[str, Any]:
    """An upstream per-slide JSON, or a message that names the stage to run."""
    if not Path(path).is_file():
        raise InputError(
            f"{stage} output '{path}'",
            "does not exist",
            f"run `histoprog {stage}` for this slide first (the workflow's '{stage}' rule)",
        )
    return read_json(path)


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
    long_side_um = max(info.bounds[2], info.bounds[3]) * info.mpp
    target_mpp = max(info.mpp, long_side_um / max(args.thumbnail_px, 16))
    slide = slides.open_slide(args.slide, args.slide_id)
    try:
        rgb, _, scale = slides.read_low_resolution(slide, info, target_mpp)
    finally:
        slide.close()
    g = tiles_meta["grid"]
    grid_origin = (g.get("origin_x", 0), g.get("origin_y", 0))
    title = f"slide {args.slide_id}: {sum(counts.values())} tiles classified"
    return class_overlay(
        rgb, info.bounds[:2], scale, grid, grid_origin, g["step"], CLASSES, counts, title
    )


def _write_failed(
    args: argparse.Namespace,
    record: dict[str, Any],
    failure: dict[str, Any],
    tiles_meta: dict[str, Any],
    params: dict[str, Any],
    started: float,
) -> None:
    """Write every output of a failed slide (empty table, all -1 grid, failure figure)."""
    grid_meta = tiles_meta.get("grid") or {}
    shape = (int(grid_meta.get("rows", 0)), int(grid_meta.get("cols", 0)))
    columns = ["row", "col", "x", "y", *[f"prob_{c}" for c in CLASSES], "class", "read_ok"]
    write_tsv(args.out_classes, pd.DataFrame(columns=columns))
    _save_grid(args.out_grid, np.full(shape, NO_TILE, dtype=np.int8))
    figure = failure_figure(args.slide_id, failure["failed_stage"], failure["reason"])
    save_figure(args.out_overlay, figure, dpi=100)
    record.update(failure, n_tiles=int(tiles_meta.get("n_tiles", 0)), grid_shape=list(shape))
    record.setdefault("counts", {c: 0 for c in CLASSES})
    record["seconds"] = round(time.perf_counter() - started, 3)
    record["provenance"] = provenance(params)
    write_json(args.out_counts, record)
    log.warning("slide %s: %s at '%s': %s", args.slide_id, FAILED,
                failure["failed_stage"], failure["reason"])  # fmt: skip


def _save_grid(path: str, grid: np.ndarray) -> None:
    """``np.save`` atomically (the temporary name keeps the ``.npy`` suffix)."""
    with atomic_path(path) as tmp:
        np.save(tmp, grid)
