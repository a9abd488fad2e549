"""``histoprog train_tissue``: train one stage of the tissue classifier (METHODS 3.3-3.4)."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterable
from typing import Any

from torch.utils.data import DataLoader

from histoprog.cli_options import (
    add_outputs,
    add_patch_stain_options,
    add_require_weights,
    add_seed,
    add_torch_options,
    check_required_weights,
    patch_normalizer,
)
from histoprog.defaults import default
from histoprog.device import select_device, set_threads
from histoprog.errors import InputError
from histoprog.io import save_figure, write_tsv
from histoprog.plots.tissue import learning_curves
from histoprog.progress import batch_len, log_progress
from histoprog.scanner_jitter import ScannerJitter
from histoprog.train import (
    LR_SCHEDULES,
    TrainConfig,
    save_tissue_checkpoint,
    train_tissue_classifier,
)

log = logging.getLogger("histoprog.train_tissue")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train_tissue`` subcommand."""
    parser = subparsers.add_parser(
        "train_tissue", help="train the tissue classifier on an ImageFolder of patches"
    )
    parser.add_argument("--patches", required=True, help="ImageFolder root: one folder per class")
    parser.add_argument(
        "--classes", nargs="+", required=True, help="class names in output order (folder names)"
    )
    parser.add_argument(
        "--backbone", default=default("tissue.backbone"), help="resnet50 | resnet34 | resnet18"
    )
    parser.add_argument(
        "--weights",
        default=default("tissue.weights"),
        help="initial weights: imagenet (torch hub cache), none, or a file (stage 2: the "
        "stage-1 checkpoint)",
    )
    add_require_weights(parser)
    add_patch_stain_options(parser)
    parser.add_argument(
        "--tile-px", type=int, default=default("tissue.tile_px"), help="resize patches to this"
    )
    jitter = ScannerJitter()  # its defaults are the CLI's
    parser.add_argument(
        "--jitter-stain-sigma",
        type=float,
        default=jitter.stain_sigma,
        help="HED stain jitter of training patches (0 = none)",
    )
    parser.add_argument(
        "--jitter-filters",
        default=",".join(jitter.filters),
        help="resampling filters drawn from when resizing training patches (comma-separated)",
    )
    parser.add_argument(
        "--jitter-jpeg-probability",
        type=float,
        default=jitter.jpeg_probability,
        help="chance of a JPEG round trip per training patch (0 = never)",
    )
    parser.add_argument("--epochs", type=int, default=default("tissue.epochs"))
    parser.add_argument(
        "--patience", type=int, default=default("tissue.patience"), help="0 = no early stopping"
    )
    parser.add_argument("--lr", type=float, default=default("tissue.lr"))
    parser.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default=default("tissue.lr_schedule"),
        help="constant or cosine",
    )
    parser.add_argument("--momentum", type=float, default=default("tissue.momentum"))
    parser.add_argument("--val-fraction", type=float, default=default("tissue.val_fraction"))
    add_seed(parser, "tissue.seed")
    add_torch_options(
        parser, batch_size=default("tissue.batch_size"), workers=default("tissue.workers")
    )
    add_outputs(
        parser,
        model="checkpoint (.pt)",
        history="learning curve table (TSV)",
        curve="learning curve figure (PNG)",
    )
    parser.set_defaults(func=run)


def make_jitter(args: argparse.Namespace) -> ScannerJitter:
    """The training patches' scanner-like variation from ``--jitter-*``."""
    try:
        return ScannerJitter(
            stain_sigma=args.jitter_stain_sigma,
            filters=tuple(f.strip() for f in args.jitter_filters.split(",") if f.strip()),
            jpeg_probability=args.jitter_jpeg_probability,
        )
    except ValueError as err:
        raise InputError("tissue.jitter", str(err), "fix the tissue.jitter keys in config") from err


def progress_lines(batches: Iterable[Any], description: str) -> Iterable[Any]:
    """Plain progress lines over one pass's batches (the rule's log), patches counted."""
    total = len(batches.dataset) if isinstance(batches, DataLoader) else None
    return log_progress(
        batches, description, total=total, size=batch_len, interval=30.0, unit="patches"
    )


def run(args: argparse.Namespace) -> None:
    """Train, then write the checkpoint, the learning-curve table and figure."""
    started = time.perf_counter()
    set_threads(args.threads)
    check_required_weights(args, args.backbone)
    cfg = TrainConfig(
        epochs=args.epochs,
        patience=args.patience,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        momentum=args.momentum,
        val_fraction=args.val_fraction,
        seed=args.seed,
        num_workers=args.workers,
    )
    weights = None if args.weights.strip().lower() in {"none", ""} else args.weights
    model, result, info = train_tissue_classifier(
        args.patches,
        args.classes,
        backbone=args.backbone,
        weights=weights,
        cfg=cfg,
        stain=args.stain,
        normalizer=patch_normalizer(args),
        tile_px=args.tile_px,
        jitter=make_jitter(args),
        device=select_device(args.device),
        progress=progress_lines,
    )
    info["stain_options"] = {
        "target_image": args.target_image, "alpha": args.alpha, "beta": args.beta, "io": args.io
    }  # fmt: skip
    save_tissue_checkpoint(args.out_model, model, args.classes, result, info)
    write_tsv(args.out_history, result.history)
    title = f"{args.backbone}, {len(args.classes)} classes: kept epoch {result.best_epoch}"
    save_figure(args.out_curve, learning_curves(result.history, title), dpi=110)
    log.info(
        "kept epoch %d of %d (validation loss %.4f, accuracy %.3f)%s in %.1f s",
        result.best_epoch,
        result.epochs_run,
        result.best_val_loss,
        result.best_val_accuracy,
        ", stopped early" if result.stopped_early else "",
        time.perf_counter() - started,
    )
