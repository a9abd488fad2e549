"""``histoprog train_unet``: train the nuclei U-net on image/mask pairs (METHODS 6.1)."""

from __future__ import annotations

import argparse
import logging

from histoprog.cli_options import (
    add_outputs,
    add_require_weights,
    add_seed,
    add_torch_options,
    check_required_weights,
)
from histoprog.device import select_device, set_threads
from histoprog.hcc.unet import (
    LOSSES,
    LR_SCHEDULES,
    UnetConfig,
    UnetTraining,
    save_unet,
    train_unet,
)
from histoprog.io import save_figure, write_tsv
from histoprog.plots.hcc import unet_curves

log = logging.getLogger("histoprog.train_unet")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train_unet`` subcommand."""
    d, t = UnetConfig(), UnetTraining()
    parser = subparsers.add_parser("train_unet", help="train the nuclei U-net (heat maps)")
    parser.add_argument("--nuclei", required=True, help="folder with images/ and masks/")
    parser.add_argument("--encoder", default=d.encoder, help="smp encoder (resnet34 published)")
    parser.add_argument("--weights", default=d.weights, help="imagenet | none | a file")
    add_require_weights(parser)
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--crop", type=int, default=d.crop, help="crop side fed to the U-net")
    parser.add_argument("--crops-per-image", type=int, default=d.crops_per_image)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--val-fraction", type=float, default=d.val_fraction)
    parser.add_argument("--image-mpp", type=float, default=d.image_mpp, help="the images' mpp")
    parser.add_argument(
        "--target-mpp", type=float, default=d.target_mpp, help="mpp of the tiles at inference"
    )
    parser.add_argument(
        "--stain-sigma", type=float, default=t.stain_sigma, help="HED stain jitter (0: none)"
    )
    parser.add_argument(
        "--colour-jitter",
        type=float,
        default=t.colour_jitter,
        help="brightness/contrast/saturation/hue jitter (0: none)",
    )
    parser.add_argument("--loss", choices=LOSSES, default=t.loss, help="training loss")
    parser.add_argument(
        "--lr-schedule", choices=LR_SCHEDULES, default=t.lr_schedule, help="per-epoch lr"
    )
    add_seed(parser, "hcc.unet.seed")
    add_torch_options(parser, batch_size=d.batch_size, workers=d.workers, section="hcc")
    add_outputs(
        parser,
        model="U-net checkpoint (.pt)",
        history="training history (TSV)",
        curve="learning curves (PNG)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    """Train, then write the checkpoint, the history table and the learning curves."""
    set_threads(args.threads)
    check_required_weights(args, args.encoder)
    cfg = UnetConfig(
        encoder=args.encoder,
        weights=None if str(args.weights).lower() == "none" else args.weights,
        epochs=args.epochs,
        crop=args.crop,
        crops_per_image=args.crops_per_image,
        batch_size=args.batch_size,
        lr=args.lr,
        val_fraction=args.val_fraction,
        image_mpp=args.image_mpp,
        target_mpp=args.target_mpp,
        seed=args.seed,
        workers=args.workers,
    )
    training = UnetTraining(
        stain_sigma=args.stain_sigma,
        colour_jitter=args.colour_jitter,
        loss=args.loss,
        lr_schedule=args.lr_schedule,
    )
    result = train_unet(args.nuclei, cfg, select_device(args.device), training=training)
    save_unet(args.out_model, result, cfg, training)
    write_tsv(args.out_history, result.history)
    title = f"nuclei U-net ({cfg.encoder}), best validation Dice {result.best_val_dice:.3f}"
    save_figure(args.out_curve, unet_curves(result.history, title), dpi=100)
    log.info(
        "U-net: best validation Dice %.4f at epoch %d (%d training, %d validation images)",
        result.best_val_dice, result.best_epoch, result.n_train_images, result.n_val_images,
    )  # fmt: skip
