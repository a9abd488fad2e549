"""Training of the tissue classifier (METHODS 3.3-3.4).

SGD (lr 0.001, momentum 0.9, batch 32) on the trainable parts only (``layer4`` + head; the
rest is frozen by :func:`histoprog.models.build_tissue_classifier`), cross-entropy on a
seeded stratified 80/20 train/validation split, flips and 90-degree rotations on the
training patches, Macenko-normalised inputs. The weights of the epoch with the lowest
validation loss are kept; training stops after ``patience`` epochs without improvement.

Stage 1 (CRC, 9 classes) starts from ImageNet weights when they are cached; stage 2 (CRLM,
7 classes) starts from the stage-1 checkpoint (``weights=<its path>``): the backbone and the
hidden head layers are loaded, the output layer is new.

Two decisions beyond METHODS 3.3: a stage that starts from random weights (``weights=None``,
or ImageNet weights absent) trains every layer, since frozen random features carry nothing
to transfer (the demo's stage 1 on generated patches: 0.82 vs 0.99 stage-2 validation
accuracy); and training patches get a :class:`~histoprog.scanner_jitter.ScannerJitter`
(stain, resampling filter, JPEG) before normalisation when one is given.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from histoprog.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augment,
    PatchFolder,
    stratified_split,
    to_model_input,
)
from histoprog.defaults import default
from histoprog.errors import InputError
from histoprog.models import (
    TissueClassifier,
    architecture_of,
    build_tissue_classifier,
    file_sha256,
    save_checkpoint,
)
from histoprog.models.tissue import TRAINABLE, freeze_backbone
from histoprog.scanner_jitter import ScannerJitter
from histoprog.stain import MacenkoNormalizer

log = logging.getLogger(__name__)

Progress = Callable[[Iterable[Any], str], Iterable[Any]]
"""Wraps the batches of one pass (with a description), e.g. ``lambda it, d: tqdm(it, d)``."""

LR_SCHEDULES = ("constant", "cosine")
"""The learning-rate schedules :class:`TrainConfig` knows."""

HISTORY_COLUMNS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "best",
)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (config ``tissue``; defaults = METHODS 3.3).

    Attributes:
        epochs: the most epochs to run.
        patience: stop after this many epochs without a lower validation loss
            (0 = never stop early).
        batch_size: patches per SGD step (and per validation batch).
        lr: SGD learning rate (the first epoch's with ``lr_schedule="cosine"``).
        lr_schedule: ``"constant"`` (METHODS 3.3) or ``"cosine"``: the rate falls along a
            half cosine from ``lr`` towards 0 over ``epochs`` (one step per epoch), so the
            last epochs settle instead of jumping between minima.
        momentum: SGD momentum.
        val_fraction: share of each class held out for validation.
        seed: seeds the split, the head initialisation, shuffling, augmentation and dropout.
        num_workers: DataLoader worker processes (0 = load in the main process).
    """

    epochs: int = default("tissue.epochs")
    patience: int = default("tissue.patience")
    batch_size: int = default("tissue.batch_size")
    lr: float = default("tissue.lr")
    lr_schedule: str = default("tissue.lr_schedule")
    momentum: float = default("tissue.momentum")
    val_fraction: float = default("tissue.val_fraction")
    seed: int = default("tissue.seed")
    num_workers: int = 0

    def __post_init__(self) -> None:
        problems = [
            f"{name}={getattr(self, name)} must be {rule}"
            for name, rule, ok in (
                ("epochs", ">= 1", self.epochs >= 1),
                ("patience", ">= 0", self.patience >= 0),
                ("batch_size", ">= 1", self.batch_size >= 1),
                ("lr", "> 0", self.lr > 0),
                ("lr_schedule", "constant or cosine", self.lr_schedule in LR_SCHEDULES),
                ("momentum", "in [0, 1)", 0 <= self.momentum < 1),
                ("num_workers", ">= 0", self.num_workers >= 0),
            )
            if not ok
        ]
        if problems:
            raise InputError(
                "tissue training settings", "; ".join(problems), "fix the tissue: keys in config"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (stored in the checkpoint's ``config``)."""
        return asdict(self)


@dataclass
class TrainResult:
    """What a training run did.

    Attributes:
        history: one row per epoch (:data:`HISTORY_COLUMNS`); ``best`` marks the kept epoch.
        best_epoch: the epoch (1-based) whose weights were kept.
        best_val_loss: its validation cross-entropy.
        best_val_accuracy: its validation accuracy.
        stopped_early: whether early stopping ended the run before ``epochs``.
        device: where it ran.
    """

    history: pd.DataFrame
    best_epoch: int
    best_val_loss: float
    best_val_accuracy: float
    stopped_early: bool
    device: str

    @property
    def epochs_run(self) -> int:
        """Number of epochs run."""
        return len(self.history)

    def metrics(self) -> dict[str, Any]:
        """The summary stored in the checkpoint's ``metrics``."""
        return {
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss,
            "best_val_accuracy": self.best_val_accuracy,
            "epochs_run": self.epochs_run,
            "stopped_early": self.stopped_early,
            "device": self.device,
        }


def _loader(
    dataset: Dataset, cfg: TrainConfig, *, shuffle: bool, generator: torch.Generator | None
) -> DataLoader:
    """A loader; a lone last training sample is dropped (batch norm needs 2 per batch)."""
    drop_last = shuffle and len(dataset) % cfg.batch_size == 1 and len(dataset) > 1
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=cfg.num_workers,
        generator=generator,
        persistent_workers=cfg.num_workers > 0,
    )


def _run_epoch(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    optimizer: torch.optim.Optimizer | None,
    progress: Progress | None,
    description: str,
) -> tuple[float, float]:
    """One pass; trains when an optimizer is given. Returns (mean loss, accuracy)."""
    training = optimizer is not None
    model.train(training)
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total_loss, correct, seen = 0.0, 0, 0
    batches = progress(loader, description) if progress is not None else loader
    with torch.set_grad_enabled(training):
        for tiles, labels in batches:
            x = to_model_input(tiles, device)
            y = labels.to(device)
            logits = model(x)
            loss = loss_fn(logits, y)
            if training:
                optimizer.zero_grad(set_to_none=True)
                (loss / len(y)).backward()
                optimizer.step()
            total_loss += float(loss.detach())
            correct += int((logits.detach().argmax(1) == y).sum())
            seen += len(y)
    if seen == 0:
        return math.nan, math.nan
    return total_loss / seen, correct / seen


def fit_classifier(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    cfg: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> TrainResult:
    """Train ``model`` in place and leave it holding the best-validation-loss weights.

    Args:
        model: a classifier whose frozen parts have ``requires_grad=False``.
        train_set: ``(uint8 H x W x 3 tile, label)`` items, augmented.
        val_set: the same without augmentation.
        cfg: optimisation settings.
        device: where to train.
        progress: wraps each pass's batches (a progress bar), or ``None``.

    Returns:
        The run's history and the kept epoch.
    """
    device = torch.device(device)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
    schedule = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
        if cfg.lr_schedule == "cosine"
        else None
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    train_loader = _loader(train_set, cfg, shuffle=True, generator=generator)
    val_loader = _loader(val_set, cfg, shuffle=False, generator=None)
    best_loss, best_epoch, best_acc = math.inf, 0, math.nan
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rows: list[dict[str, Any]] = []
    stopped_early = False
    for epoch in range(1, cfg.epochs + 1):
        train_loss, train_acc = _run_epoch(
            model, train_loader, device, optimizer, progress, f"epoch {epoch}/{cfg.epochs} train"
        )
        val_loss, val_acc = _run_epoch(
            model, val_loader, device, None, progress, f"epoch {epoch}/{cfg.epochs} validate"
        )
        improved = val_loss < best_loss
        if improved:
            best_loss, best_epoch, best_acc = val_loss, epoch, val_acc
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        rows.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_accuracy": train_acc,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
            }
        )
        log.info(
            "epoch %d: train loss %.4f acc %.3f, validation loss %.4f acc %.3f%s",
            epoch, train_loss, train_acc, val_loss, val_acc, " (best)" if improved else "",
        )  # fmt: skip
        if schedule is not None:
            schedule.step()
        if not math.isfinite(train_loss):
            raise InputError(
                "tissue classifier training",
                f"the training loss became {train_loss} in epoch {epoch}",
                "lower tissue.lr, or check the patches",
            )
        if cfg.patience and epoch - best_epoch >= cfg.patience and epoch < cfg.epochs:
            stopped_early = True
            log.info("early stop: no lower validation loss for %d epochs", cfg.patience)
            break
    if best_epoch == 0:
        raise InputError(
            "tissue classifier training",
            "the validation loss was never finite",
            "check the validation patches and lower tissue.lr",
        )
    model.load_state_dict(best_state)
    history = pd.DataFrame(rows)
    history["best"] = history["epoch"] == best_epoch
    return TrainResult(
        history=history[list(HISTORY_COLUMNS)],
        best_epoch=best_epoch,
        best_val_loss=best_loss,
        best_val_accuracy=best_acc,
        stopped_early=stopped_early,
        device=str(device),
    )


def normalisation_record(
    stain: str, normalizer: MacenkoNormalizer | None, tile_px: int | None
) -> dict[str, Any]:
    """The input preprocessing a tissue checkpoint records (classify checks and reuses it).

    Keys: ``mean``/``std`` (applied to RGB scaled to [0, 1]), ``stain`` (``macenko`` or
    ``none``), ``patch_stain_fit`` (``tile``: each patch fitted; ``none``), ``stain_target``
    (the Macenko target, or ``None``), ``tile_px`` (patch size fed, ``None`` = as stored).
    """
    return {
        "input": "RGB uint8 / 255, minus mean, over std",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "stain": "macenko" if stain == "tile" else "none",
        "patch_stain_fit": stain,
        "stain_target": normalizer.target.to_dict() if normalizer is not None else None,
        "tile_px": tile_px,
    }


def train_tissue_classifier(
    patches: str | os.PathLike[str],
    class_names: Sequence[str],
    *,
    backbone: str = "resnet50",
    weights: str | os.PathLike[str] | None = "imagenet",
    cfg: TrainConfig | None = None,
    stain: str = "tile",
    normalizer: MacenkoNormalizer | None = None,
    tile_px: int | None = None,
    jitter: ScannerJitter | None = None,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
) -> tuple[TissueClassifier, TrainResult, dict[str, Any]]:
    """Build, split, train: one stage of METHODS 3.4.

    Args:
        patches: ImageFolder root with one folder per class in ``class_names``.
        class_names: output classes, in order.
        backbone: ``resnet50`` (published) or a smaller ResNet for tests and the demo.
        weights: initial weights: ``"imagenet"``, a state-dict or checkpoint path (stage 2:
            the stage-1 checkpoint), or ``None``.
        cfg: optimisation settings.
        stain: ``"tile"`` (Macenko per patch) or ``"none"``.
        normalizer: the Macenko normaliser (default: :class:`PatchFolder`'s).
        tile_px: resize patches to this size (``None`` = keep).
        jitter: scanner-like variation of the training patches (``None`` = none).
        device: where to train.
        progress: progress-bar wrapper, see :func:`fit_classifier`.

    Returns:
        ``(model, result, info)``: the model with the best weights (eval mode), the run, and
        a record for the checkpoint (data, split sizes, init source, normalisation).
    """
    cfg = cfg or TrainConfig()
    base = PatchFolder(
        patches, class_names, stain=stain, normalizer=normalizer, tile_px=tile_px, augment=None
    )
    train_idx, val_idx = stratified_split(base.targets, cfg.val_fraction, cfg.seed)
    train_set = Subset(base.with_augment(Augment(), jitter), train_idx.tolist())
    val_set = Subset(base, val_idx.tolist())
    torch.manual_seed(cfg.seed)
    model = build_tissue_classifier(len(base.class_names), backbone=backbone, weights=weights)
    trained = "all layers" if model.init_source == "random" else "+".join(TRAINABLE)
    if model.init_source == "random":
        freeze_backbone(model, trainable=tuple(name for name, _ in model.named_children()))
    counts = np.bincount(base.targets, minlength=len(base.class_names))
    log.info(
        "training %s (%s) on %d patches (%d train, %d validation) from %s; init %s",
        backbone, trained, len(base), len(train_idx), len(val_idx), patches, model.init_source,
    )  # fmt: skip
    result = fit_classifier(model, train_set, val_set, cfg, device=device, progress=progress)
    init: dict[str, Any] = {
        "spec": None if weights is None else os.fspath(weights),
        "source": model.init_source,
    }
    kind, _, source_path = model.init_source.partition(":")
    if kind in {"imagenet", "file"} and Path(source_path).is_file():
        init["sha256"] = file_sha256(source_path)
    info = {
        "patches": os.fspath(patches),
        "class_counts": dict(zip(base.class_names, counts.tolist(), strict=True)),
        "patch_px": _patch_px(base),
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "backbone": backbone,
        "init": init,
        "trained_layers": trained,
        "jitter": asdict(jitter) if jitter is not None else None,
        "train": cfg.to_dict(),
        "normalisation": normalisation_record(stain, base.normalizer, tile_px),
    }
    return model.cpu().eval(), result, info


def _patch_px(dataset: PatchFolder) -> int | None:
    """The side of the patches fed to the model (first patch's, or ``tile_px``)."""
    if dataset.tile_px is not None:
        return dataset.tile_px
    with Image.open(dataset.samples[0][0]) as image:
        width, height = image.size
    return width if width == height else None


def save_tissue_checkpoint(
    path: str | os.PathLike[str],
    model: TissueClassifier,
    class_names: Sequence[str],
    result: TrainResult,
    info: Mapping[str, Any],
) -> Path:
    """Save a trained tissue classifier with class names, architecture, normalisation, config."""
    config = {k: v for k, v in info.items() if k != "normalisation"}
    return save_checkpoint(
        path,
        model,
        kind="tissue_classifier",
        architecture=architecture_of(model, "tissue_classifier"),
        class_names=list(class_names),
        normalisation=info["normalisation"],
        config=config,
        metrics=result.metrics(),
    )
