"""``histoprog evaluate_tissue``: test-folder metrics of a tissue classifier (METHODS 3.5)."""

from __future__ import annotations

import argparse
import logging

import pandas as pd
from torch.utils.data import DataLoader

from histoprog.cli_options import (
    add_outputs,
    add_patch_stain_options,
    add_torch_options,
    patch_normalizer,
)
from histoprog.data import PatchFolder, check_stain_target
from histoprog.defaults import default
from histoprog.device import select_device, set_threads
from histoprog.evaluation import evaluate_predictions, predict
from histoprog.io import save_figure, write_json, write_tsv
from histoprog.models import load_checkpoint
from histoprog.plots.tissue import confusion_heatmap, roc_curves
from histoprog.progress import batch_len, log_progress
from histoprog.provenance import provenance

log = logging.getLogger("histoprog.evaluate_tissue")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate_tissue`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate_tissue", help="evaluate a tissue classifier on an independent test folder"
    )
    parser.add_argument("--model", required=True, help="tissue classifier checkpoint")
    parser.add_argument("--patches", required=True, help="test ImageFolder root")
    parser.add_argument(
        "--classes", nargs="+", default=None, help="expected classes (default: the model's)"
    )
    add_patch_stain_options(parser)
    add_torch_options(
        parser,
        batch_size=default("tissue.classify.batch_size"),
        workers=default("tissue.classify.workers"),
        section="tissue.classify",
    )
    add_outputs(
        parser,
        metrics="per-class metrics (TSV)",
        summary="accuracy etc. (JSON)",
        confusion="confusion counts (TSV)",
        roc="ROC curves (PNG)",
        heatmap="confusion heat map (PNG)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Predict the test folder and write metrics, confusion matrix and figures."""
    set_threads(args.threads)
    model, meta = load_checkpoint(
        args.model, expected_kind="tissue_classifier", expected_class_names=args.classes
    )
    names = list(meta["class_names"])
    norm = meta.get("normalisation") or {}
    normalizer = patch_normalizer(args)
    target = normalizer.target.to_dict() if normalizer is not None else None
    check_stain_target(norm, target, f"model checkpoint '{args.model}'")
    dataset = PatchFolder(
        args.patches,
        names,
        stain=args.stain,
        normalizer=normalizer,
        tile_px=norm.get("tile_px"),
    )
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers)
    device = select_device(args.device)
    batches = log_progress(loader, "patches", total=len(dataset), size=batch_len, logger=log)
    labels, probs = predict(model, batches, device, mean=norm.get("mean"), std=norm.get("std"))
    result = evaluate_predictions(labels, probs, names)
    write_tsv(args.out_metrics, result.per_class)
    write_tsv(args.out_confusion, result.confusion_table())
    summary = {
        **result.summary,
        "classes": names,
        "model": {"path": args.model, "sha256": meta["sha256"], **meta["architecture"]},
        "patches": args.patches,
        "provenance": provenance({"stain": args.stain, "target_image": args.target_image}),
    }
    write_json(args.out_summary, summary)
    save_figure(args.out_roc, roc_curves(result), dpi=110)
    save_figure(args.out_heatmap, confusion_heatmap(result), dpi=110)
    log.info(
        "%d test patches: accuracy %.4f, macro AUC %.4f\n%s",
        len(labels),
        result.accuracy,
        result.summary["macro_auc"],
        pd.DataFrame(result.per_class).to_string(index=False),
    )
