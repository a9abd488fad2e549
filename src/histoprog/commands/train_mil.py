"""``histoprog train_mil``: train the MIL MobileNetV2 on labelled training bags (METHODS 6.3-6.6).

Labels come from the clinical table (:func:`histoprog.hcc.labels.mil_labels`): good = no
recurrence with follow-up >= ``--good-months``, poor = recurrence before
``--poor-months``; the other patients, and slides whose nuclei stage failed, are left out.
Writes the checkpoint (kind ``mil``), the history, the learning curves and a label table
(cohort, slide_id, patient_id, time, event, label, use).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from histoprog.analysis.features import read_clinical
from histoprog.cli_options import (
    add_outcome_options,
    add_outputs,
    add_require_weights,
    add_seed,
    add_threshold_option,
    add_torch_options,
    bag_size,
    check_required_weights,
)
from histoprog.data import IMAGENET_MEAN, IMAGENET_STD
from histoprog.defaults import default
from histoprog.device import select_device, set_threads
from histoprog.errors import InputError
from histoprog.hcc.bags import HEAT_MEAN, HEAT_STD
from histoprog.hcc.labels import check_classes, label_counts, mil_labels
from histoprog.hcc.mil import BATCH_NORM, MilConfig, TrainingSlide, train_mil
from histoprog.io import read_json, save_figure, write_tsv
from histoprog.models import architecture_of, save_checkpoint
from histoprog.plots.hcc import mil_curves
from histoprog.sheets import read_table, require_columns

log = logging.getLogger("histoprog.train_mil")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train_mil`` subcommand."""
    d = MilConfig()
    parser = subparsers.add_parser("train_mil", help="train the MIL slide-score model")
    parser.add_argument(
        "--cohort",
        nargs=4,
        action="append",
        required=True,
        metavar=("NAME", "SLIDES", "SLIDE_DIR", "CLINICAL"),
        help="a training cohort: name, slide table, folder of per-slide outputs "
        "(<dir>/<slide>/nuclei.npz), clinical table; repeat per cohort",
    )
    add_outcome_options(parser, "hcc")
    parser.add_argument("--good-months", type=float, default=default("hcc.mil.good_months"))
    parser.add_argument("--poor-months", type=float, default=default("hcc.mil.poor_months"))
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--lr-step", type=int, default=d.lr_step, help="epochs per lr halving")
    parser.add_argument("--l2", type=float, default=d.l2)
    add_threshold_option(parser)
    parser.add_argument("--power", type=int, default=d.power, help="generalised-mean power p")
    parser.add_argument("--bag-size", type=bag_size, default=d.bag_size)
    parser.add_argument("--val-fraction", type=float, default=d.val_fraction)
    parser.add_argument("--weights", default=d.weights, help="imagenet | none | a file")
    add_require_weights(parser)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument(
        "--batch-norm",
        choices=BATCH_NORM,
        default=d.batch_norm,
        help="frozen: statistics estimated once over the training bags; batch: each step's "
        "bags as one batch",
    )
    parser.add_argument(
        "--class-weights",
        choices=("none", "balanced"),
        default=d.class_weights,
        help="cross-entropy weight per class: none (the paper) or balanced (n / (2 n_class))",
    )
    parser.add_argument(
        "--bags-per-step", type=int, default=d.bags_per_step, help="bags per optimiser step"
    )
    parser.add_argument(
        "--sampling",
        choices=("shuffle", "balanced"),
        default=d.sampling,
        help="shuffle: every bag once per epoch; balanced: each step half good, half poor",
    )
    parser.add_argument(
        "--fit-bias",
        action=argparse.BooleanOptionalAction,
        default=d.fit_bias,
        help="refit the tile head's bias on the training bags after every epoch",
    )
    parser.add_argument(
        "--keep",
        choices=("val_bce", "val_loss", "last"),
        default=d.keep,
        help="kept epoch: lowest validation cross-entropy or Eq. 4 loss, or the last",
    )
    add_seed(parser, "hcc.mil.seed")
    add_torch_options(parser, section="hcc")
    add_outputs(
        parser,
        model="MIL checkpoint (.pt)",
        history="training history (TSV)",
        curve="learning curves (PNG)",
        labels="label table (TSV)",
    )
    parser.set_defaults(func=run)


def label_table(
    cohorts: list[list[str]], time: str, event: str, good: float, poor: float
) -> pd.DataFrame:
    """One row per slide of the training cohorts with its patient's label and bag path."""
    tables = []
    for name, slides_path, slide_dir, clinical_path in cohorts:
        slides = read_table(slides_path, "slide table")
        require_columns(
            slides, ["slide_id", "patient_id"], f"slide table '{slides_path}'", "add the column"
        )
        clinical = read_clinical(clinical_path, name, time, event)
        labels = mil_labels(clinical, time, event, good, poor)
        merged = slides[["slide_id", "patient_id"]].merge(labels, on="patient_id", how="left")
        merged["label"] = merged["label"].fillna("no_clinical_row")
        merged.insert(0, "cohort", name)
        merged["bag"] = [str(Path(slide_dir) / s / "nuclei.npz") for s in merged["slide_id"]]
        tables.append(merged)
    table = pd.concat(tables, ignore_index=True)
    table["use"] = table["label"]
    return table


def mark_failed_slides(table: pd.DataFrame) -> None:
    """Set ``use`` to ``failed_slide`` for labelled slides whose nuclei stage failed."""
    for i, row in table[table["use"].isin(["good", "poor"])].iterrows():
        meta = Path(row["bag"]).with_name("nuclei.json")
        if not meta.is_file():
            raise InputError(
                f"slide '{row['slide_id']}' of training cohort '{row['cohort']}'",
                f"has no nuclei output ({meta})",
                "run the nuclei stage for it first",
            )
        if read_json(meta).get("status") != "ok":
            table.loc[i, "use"] = "failed_slide"


def _counts(table: pd.DataFrame) -> dict[str, int]:
    counts = label_counts(table[table["use"].isin(["good", "poor"])])
    for key in ("left_out", "failed_slide", "no_clinical_row"):
        counts[key] = int((table["use"] == key).sum())
    return counts


def run(args: argparse.Namespace) -> None:
    """Label, train, write the model, history, curves and label table."""
    set_threads(args.threads)
    check_required_weights(args, "mobilenet_v2")
    table = label_table(args.cohort, args.time, args.event, args.good_months, args.poor_months)
    names = ", ".join(c[0] for c in args.cohort)
    where = f"training cohort(s) {names}"
    check_classes(_counts(table), where, args.good_months, args.poor_months)
    mark_failed_slides(table)
    counts = _counts(table)
    log.info("MIL training labels (slides): %s", counts)
    check_classes(counts, f"{where} (slides whose nuclei stage worked)", args.good_months,
                  args.poor_months)  # fmt: skip
    usable = table[table["use"].isin(["good", "poor"])]
    slides = [
        TrainingSlide(r.slide_id, f"{r.cohort}/{r.patient_id}", float(r.y), r.bag)
        for r in usable.itertuples()
    ]
    cfg = MilConfig(
        epochs=args.epochs,
        lr=args.lr,
        lr_step=args.lr_step,
        l2=args.l2,
        threshold=args.threshold,
        power=args.power,
        bag_size=args.bag_size,
        val_fraction=args.val_fraction,
        seed=args.seed,
        weights=None if str(args.weights).lower() == "none" else args.weights,
        augment=not args.no_augment,
        batch_norm=args.batch_norm,
        class_weights=args.class_weights,
        bags_per_step=args.bags_per_step,
        sampling=args.sampling,
        fit_bias=args.fit_bias,
        keep=args.keep,
    )
    try:
        result = train_mil(slides, cfg, select_device(args.device))
    except InputError as err:
        raise InputError(f"{err.what} (training cohort(s) {names})", err.problem, err.fix) from None
    split = {s: "train" for s in result.train_slides} | {s: "validation" for s in result.val_slides}
    table["split"] = [split.get(s, "") for s in table["slide_id"]]
    save_checkpoint(
        args.out_model,
        result.model,
        kind="mil",
        architecture=architecture_of(result.model, "mil"),
        class_names=None,
        normalisation={
            "mean": [*IMAGENET_MEAN, HEAT_MEAN],
            "std": [*IMAGENET_STD, HEAT_STD],
            "channels": ["R", "G", "B", "nuclei heat map"],
            "stain": "vahadane",
        },
        config={**cfg.to_dict(), "good_months": args.good_months, "poor_months": args.poor_months},
        metrics={
            "best_epoch": result.best_epoch,
            "val_bce": result.best_val_bce,
            "label_counts": counts,
            "n_train_slides": len(result.train_slides),
            "n_val_slides": len(result.val_slides),
            "init_source": getattr(result.model, "init_source", None),
        },
    )
    write_tsv(args.out_history, result.history)
    write_tsv(args.out_labels, table.drop(columns=["bag"]))
    title = (
        f"MIL MobileNetV2: {counts['good']} good / {counts['poor']} poor slides "
        f"({counts['left_out']} left out); kept epoch {result.best_epoch}"
    )
    save_figure(args.out_curve, mil_curves(result.history, title), dpi=100)
    if result.val_slides:
        log.info("MIL: kept epoch %d (validation cross-entropy %.4f)", result.best_epoch,
                 result.best_val_bce)  # fmt: skip
    else:
        log.info("MIL: kept epoch %d (no validation split, val_fraction 0)", result.best_epoch)
