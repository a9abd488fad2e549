"""Nuclei U-net training and heat-map inference (METHODS 6.1).

Training: ``smp.Unet`` (:func:`histoprog.models.build_unet`), Adam, the Dice loss with
eps 1e-8 summed over the batch, random crops with flips/rotations
(:class:`~histoprog.hcc.nuclei_data.NucleiCrops`), a seeded split by image; the hard Dice
of the held-out grid crops is computed every epoch and the weights of the epoch with the
highest validation Dice are kept. Inputs are ImageNet-standardised RGB.
:class:`UnetTraining` adds options beyond the published recipe (stain and colour jitter,
Dice + BCE loss, a cosine learning-rate schedule); its defaults are the published recipe.

Inference: :func:`heat_maps` gives the sigmoid probability of every pixel as uint8
(``round(255 p)``).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from histoprog.data import IMAGENET_MEAN, IMAGENET_STD, to_model_input
from histoprog.defaults import default
from histoprog.errors import InputError
from histoprog.hcc.nuclei_data import (
    NucleiCrops,
    grid_crops,
    load_nuclei_pairs,
    split_pairs,
    window_px,
)
from histoprog.inference import batch_slices, run_model
from histoprog.models import (
    DiceLoss,
    architecture_of,
    build_unet,
    dice_coefficient,
    save_checkpoint,
)
from histoprog.models.weights import WeightsSpec

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_dice", "lr", "seconds", "best")

#: training losses and learning-rate schedules of :class:`UnetTraining` (first: published)
LOSSES = ("dice", "dice_bce")
LR_SCHEDULES = ("constant", "cosine")

#: the U-net's input size must be a multiple of this (five 2x poolings of the encoder)
SIZE_MULTIPLE = 32


@dataclass(frozen=True)
class UnetConfig:
    """U-net training settings (config ``hcc.unet``).

    Attributes:
        encoder: smp encoder (``resnet34`` published).
        weights: encoder initial weights: ``imagenet`` (cache only), a file, or ``none``.
        epochs: training epochs.
        crop: crop side fed to the network (px, multiple of 32).
        crops_per_image: random crops per training image and epoch.
        batch_size: crops per step.
        lr: Adam learning rate.
        val_fraction: share of the images held out for validation.
        image_mpp: resolution of the nuclei images (MoNuSeg: 0.25).
        target_mpp: resolution of the tiles at inference (0.25 * 512 / 224).
        seed: split, crops, initialisation and shuffling.
        workers: DataLoader worker processes.
    """

    encoder: str = default("hcc.unet.encoder")
    weights: str | None = default("hcc.unet.weights")
    epochs: int = default("hcc.unet.epochs")
    crop: int = default("hcc.unet.crop")
    crops_per_image: int = default("hcc.unet.crops_per_image")
    batch_size: int = default("hcc.unet.batch")
    lr: float = default("hcc.unet.lr")
    val_fraction: float = default("hcc.unet.val_fraction")
    image_mpp: float = default("hcc.unet.image_mpp")
    # the HCC tiles at the MIL input scale, as the workflow computes it (hcc.smk)
    target_mpp: float = (
        default("tile.hcc.mpp") * default("tile.hcc.px") / default("hcc.mil.tile_px_in")
    )
    seed: int = default("hcc.unet.seed")
    workers: int = default("hcc.unet.workers")

    def __post_init__(self) -> None:
        problems = [
            f"{name}={getattr(self, name)} must be {rule}"
            for name, rule, ok in (
                ("epochs", ">= 1", self.epochs >= 1),
                ("crop", "a positive multiple of 32", self.crop > 0 and self.crop % 32 == 0),
                ("crops_per_image", ">= 1", self.crops_per_image >= 1),
                ("batch_size", ">= 2", self.batch_size >= 2),
                ("lr", "> 0", self.lr > 0),
                ("workers", ">= 0", self.workers >= 0),
            )
            if not ok
        ]
        if problems:
            raise InputError("U-net settings", "; ".join(problems), "fix the hcc.unet keys")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (stored in the checkpoint)."""
        return asdict(self)


@dataclass(frozen=True)
class UnetTraining:
    """Training options beyond the published recipe (no ``hcc.unet`` keys yet).

    Attributes:
        stain_sigma: HED stain jitter of the training crops
            (:func:`~histoprog.hcc.nuclei_data.jitter_stain`; 0 = none, published).
        colour_jitter: brightness, contrast, saturation and hue jitter of the training
            crops after the stain jitter (:func:`~histoprog.hcc.nuclei_data.jitter_colour`;
            0 = none, published).
        loss: ``dice`` (published) or ``dice_bce``: the Dice loss plus the mean binary
            cross-entropy of the pixels.
        lr_schedule: ``constant`` (published) or ``cosine``: the learning rate falls from
            ``lr`` to 0 over the epochs (cosine annealing, stepped once per epoch).
    """

    stain_sigma: float = 0.0
    colour_jitter: float = 0.0
    loss: Literal["dice", "dice_bce"] = "dice"
    lr_schedule: Literal["constant", "cosine"] = "constant"

    def __post_init__(self) -> None:
        problems = [
            f"{name}={getattr(self, name)!r} must be {rule}"
            for name, rule, ok in (
                ("stain_sigma", "in [0, 1)", 0 <= self.stain_sigma < 1),
                ("colour_jitter", "in [0, 1)", 0 <= self.colour_jitter < 1),
                ("loss", f"one of {LOSSES}", self.loss in LOSSES),
                ("lr_schedule", f"one of {LR_SCHEDULES}", self.lr_schedule in LR_SCHEDULES),
            )
            if not ok
        ]
        if problems:
            raise InputError("U-net training options", "; ".join(problems), "fix the options")


class DiceBCELoss(nn.Module):
    """The batch Dice loss (eps 1e-8) plus the mean binary cross-entropy, on logits."""

    def __init__(self) -> None:
        super().__init__()
        self.dice = DiceLoss(eps=1e-8)
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of logits vs a binary target of the same shape."""
        return self.dice(logits, target) + self.bce(logits, target)


def training_loss(training: UnetTraining) -> nn.Module:
    """The loss module of ``training.loss`` (input: logits)."""
    return DiceBCELoss() if training.loss == "dice_bce" else DiceLoss(eps=1e-8)


def lr_scheduler(
    optimiser: torch.optim.Optimizer, training: UnetTraining, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch scheduler of ``training.lr_schedule`` (constant: a factor of 1)."""
    if training.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda _: 1.0)


@dataclass
class UnetResult:
    """A U-net training run: the best model, its epoch and Dice, the history table."""

    model: nn.Module
    history: pd.DataFrame
    best_epoch: int
    best_val_dice: float
    n_train_images: int
    n_val_images: int
    val_images: list[str]


def _evaluate(
    model: nn.Module, images: torch.Tensor, masks: torch.Tensor, batch: int, device: torch.device
) -> tuple[float, float]:
    """(Dice loss, hard Dice at 0.5) over all validation crops."""
    loss_fn = DiceLoss(eps=1e-8, from_logits=False)
    probs: list[torch.Tensor] = []
    run_model(
        model,
        batch_slices(len(images), batch),
        lambda rows: to_model_input(images[rows], device),
        lambda _, logits: probs.append(torch.sigmoid(logits).cpu()),
        device,
    )
    p = torch.cat(probs)
    return float(loss_fn(p, masks)), dice_coefficient(p, masks)


def train_unet(
    nuclei_dir: str | os.PathLike[str],
    cfg: UnetConfig,
    device: torch.device | str = "cpu",
    weights: WeightsSpec | None = None,
    training: UnetTraining | None = None,
) -> UnetResult:
    """Train the nuclei U-net on a folder of image/mask pairs (see module docstring).

    Args:
        nuclei_dir: the pairs (layout in :mod:`histoprog.hcc.nuclei_data`).
        cfg: settings.
        device: training device.
        weights: overrides ``cfg.weights`` (e.g. a file path); ``None`` uses ``cfg.weights``.
        training: options beyond the published recipe; ``None``: the published recipe.

    Raises:
        InputError: bad layout, sizes that differ, images smaller than the crop window.
    """
    device = torch.device(device)
    training = training or UnetTraining()
    pairs = load_nuclei_pairs(nuclei_dir)
    train_pairs, val_pairs = split_pairs(pairs, cfg.val_fraction, cfg.seed)
    window = window_px(cfg.crop, cfg.image_mpp, cfg.target_mpp)
    train_set = NucleiCrops(
        train_pairs,
        cfg.crop,
        window,
        cfg.crops_per_image,
        cfg.seed,
        training.stain_sigma,
        training.colour_jitter,
    )
    val_images, val_masks = grid_crops(val_pairs, cfg.crop, window)
    torch.manual_seed(cfg.seed)
    spec = cfg.weights if weights is None else weights
    model = build_unet(cfg.encoder, None if spec in (None, "none") else spec).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = lr_scheduler(optimiser, training, cfg.epochs)
    loss_fn = training_loss(training)
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=len(train_set) > cfg.batch_size,
        num_workers=cfg.workers,
        generator=generator,
        persistent_workers=False,
    )
    rows: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_dice, best_epoch = -math.inf, 0
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        train_set.set_epoch(epoch)
        model.train()
        losses = []
        for images, masks in loader:
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(model(to_model_input(images, device)), masks.to(device))
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        lr = optimiser.param_groups[0]["lr"]
        scheduler.step()
        val_loss, val_dice = _evaluate(model, val_images, val_masks, cfg.batch_size, device)
        if val_dice > best_dice:
            best_dice, best_epoch = val_dice, epoch
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        rows.append(
            {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)) if losses else math.nan,
                "val_loss": val_loss,
                "val_dice": val_dice,
                "lr": lr,
                "seconds": round(time.perf_counter() - started, 3),
                "best": 0,
            }
        )
        log.info(
            "U-net epoch %d/%d: train loss %.4f, validation Dice loss %.4f, Dice %.4f",
            epoch, cfg.epochs, rows[-1]["train_loss"], val_loss, val_dice,
        )  # fmt: skip
    history = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    history.loc[history["epoch"] == best_epoch, "best"] = 1
    model.load_state_dict(best_state)
    model.cpu().eval()
    return UnetResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        best_val_dice=float(best_dice),
        n_train_images=len(train_pairs),
        n_val_images=len(val_pairs),
        val_images=[p.name for p in val_pairs],
    )


def save_unet(
    path: str | os.PathLike[str],
    result: UnetResult,
    cfg: UnetConfig,
    training: UnetTraining | None = None,
) -> None:
    """Write the U-net checkpoint (kind ``unet``) with its settings and validation Dice."""
    save_checkpoint(
        path,
        result.model,
        kind="unet",
        architecture=architecture_of(result.model, "unet"),
        class_names=["nucleus"],
        normalisation={
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "mpp": cfg.target_mpp,
            "crop": cfg.crop,
            "stain": "none",
        },
        config={**cfg.to_dict(), **asdict(training or UnetTraining())},
        metrics={
            "best_epoch": result.best_epoch,
            "val_dice": result.best_val_dice,
            "n_train_images": result.n_train_images,
            "n_val_images": result.n_val_images,
            "val_images": result.val_images,
            "init_source": getattr(result.model, "init_source", None),
        },
    )


def check_tile_size(tile_px: int, what: str = "HCC tile size (hcc.mil.tile_px_in)") -> None:
    """The U-net needs a multiple of 32 px."""
    if tile_px < SIZE_MULTIPLE or tile_px % SIZE_MULTIPLE:
        raise InputError(
            what, f"is {tile_px} px; the U-net needs a multiple of {SIZE_MULTIPLE}", "use 224"
        )


def heat_maps(
    model: nn.Module,
    tiles: torch.Tensor,
    device: torch.device | str = "cpu",
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> torch.Tensor:
    """Nuclei heat maps of a batch: uint8 N x H x W tiles -> uint8 N x H x W (``255 p``)."""
    device = torch.device(device)
    heat: list[torch.Tensor] = []
    run_model(
        model,
        [tiles],
        lambda batch: to_model_input(batch, device, mean, std),
        lambda _, logits: heat.append(heat_from_logits(logits)),
        device,
    )
    return heat[0]


def heat_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """U-net logits N x 1 x H x W -> uint8 N x H x W heat maps (``round(255 p)``) on the CPU."""
    return torch.sigmoid(logits.float())[:, 0].mul_(255).round_().to(torch.uint8).cpu()
