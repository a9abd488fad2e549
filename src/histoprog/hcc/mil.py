"""MIL training and slide scoring (METHODS 6.3-6.5; the HCC paper's Eq. 2-4).

Training: ``bags_per_step`` slides (bags) per step (the paper: one). For each bag a step
draws up to ``bag_size`` tiles of the slide's stored bag (seeded per epoch and slide),
applies one random flip/90-degree rotation to the whole bag, computes the tile logits, the
slide score ``S = sigmoid(T)`` with the signed generalised mean ``T`` (p = 3) and the Eq. 4
loss (cross-entropy of the Eq. 3 probability of the good outcome plus ``l2`` times the sum
of squared weights). Adam, lr halved every ``lr_step`` epochs. Batch norm (``batch_norm``,
see :class:`MilConfig`): ``frozen`` estimates the statistics once over the training bags
and keeps them; ``batch`` trains on the statistics of each step's bags, forwarded together.
Patients are split (seeded, stratified by label) into training and validation unless
``val_fraction`` is 0; after each epoch the validation bags (a fixed seeded draw of
``bag_size`` tiles, model in eval mode) give the validation cross-entropy, and ``keep``
says which epoch's weights are kept.

Scoring: :func:`score_bag` runs every tile of a bag in eval mode.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from histoprog.defaults import default
from histoprog.errors import InputError
from histoprog.hcc.bags import Bag, bag_input
from histoprog.inference import batch_slices, run_model
from histoprog.models import MilLoss, build_mil_mobilenet, signed_generalised_mean, slide_score
from histoprog.models.mil import mil_good_probability

log = logging.getLogger(__name__)

HISTORY_COLUMNS = (
    "epoch",
    "train_loss",
    "train_bce",
    "val_loss",
    "val_bce",
    "val_accuracy",
    "lr",
    "seconds",
    "best",
)


CLASS_WEIGHTS = ("none", "balanced")
KEEP = ("val_bce", "val_loss", "last")
SAMPLING = ("shuffle", "balanced")
BATCH_NORM = ("frozen", "batch")


def class_weight_of(slides: Sequence[TrainingSlide], mode: str) -> dict[float, float]:
    """Cross-entropy weight per label: 1 (``none``) or ``n / (2 n_label)`` (``balanced``)."""
    labels = [s.y for s in slides]
    if mode == "none":
        return {y: 1.0 for y in set(labels)}
    return {y: len(labels) / (2.0 * labels.count(y)) for y in set(labels)}


def _bag_size(value: int | str) -> int | None:
    """Config ``bag_size``: ``all`` -> None."""
    return None if value == "all" else int(value)


@dataclass(frozen=True)
class MilConfig:
    """MIL training settings (config ``hcc.mil``).

    Attributes:
        epochs: training epochs (each = one step per training slide).
        lr: initial learning rate (Adam).
        lr_step: epochs between halvings of the learning rate.
        l2: L2 factor of Eq. 4.
        threshold: score threshold t (high risk when S >= t).
        power: generalised-mean power p.
        bag_size: tiles per training step and per validation bag; ``None`` = all stored.
        val_fraction: share of each class's patients held out for validation; 0 trains
            on every labelled slide (then ``keep`` must be ``last``).
        seed: split, initialisation, tile draws, augmentation, dropout.
        weights: MobileNetV2 initial weights (``imagenet`` from the cache, a file, none).
        augment: random flip/rotation of each training bag.
        batch_norm: ``frozen`` (estimate the batch-norm statistics once over all training
            bags, then keep batch norm in eval mode while training: with one bag per step,
            batch statistics would be those of one slide and normalise away what differs
            between slides) or ``batch`` (batch norm in training mode; a step's bags go
            through the network as one batch, so with ``sampling: balanced`` its
            statistics span good and poor slides; scoring uses the running statistics).
            From random initialisation frozen statistics go stale as the weights move
            (config/README.md, "HCC MIL training").
        class_weights: ``none`` (the paper) or ``balanced``: each training slide's
            cross-entropy is weighted by ``n / (2 n_class)`` (its class's share of the
            training slides), so that both classes pull equally on the shared bias.
        bags_per_step: training bags whose (weighted) cross-entropies are averaged into one
            optimiser step (1 = the paper's one bag per step).
        sampling: ``shuffle`` (each epoch visits the training bags in a random order) or
            ``balanced`` (the bags alternate good, poor, good, ... each class from its own
            shuffled queue, refilled when used up, so an even ``bags_per_step`` gives
            every step as many good as poor bags; an epoch is still
            ``ceil(n / bags_per_step)`` steps).
        fit_bias: after every epoch, set the tile head's bias to the value that minimises
            the (class-weighted) Eq. 3 cross-entropy of the training bags (fixed seeded
            draws, eval mode), found on a grid; the rest of the model is unchanged. It
            anchors the level of all scores, which one-bag steps move together.
        keep: which epoch's weights are kept: ``val_bce`` (lowest validation
            cross-entropy), ``val_loss`` (lowest validation Eq. 4 loss) or ``last``.
    """

    epochs: int = default("hcc.mil.epochs")
    lr: float = default("hcc.mil.lr")
    lr_step: int = default("hcc.mil.lr_step")
    l2: float = default("hcc.mil.l2")
    threshold: float = default("hcc.mil.threshold")
    power: int = default("hcc.mil.power")
    bag_size: int | None = _bag_size(default("hcc.mil.bag_size"))
    val_fraction: float = default("hcc.mil.val_fraction")
    seed: int = default("hcc.mil.seed")
    weights: str | None = default("hcc.mil.weights")
    augment: bool = True
    batch_norm: str = default("hcc.mil.batch_norm")
    class_weights: str = default("hcc.mil.class_weights")
    bags_per_step: int = default("hcc.mil.bags_per_step")
    sampling: str = default("hcc.mil.sampling")
    fit_bias: bool = default("hcc.mil.fit_bias")
    keep: str = default("hcc.mil.keep")

    def __post_init__(self) -> None:
        problems = [
            f"{name}={getattr(self, name)} must be {rule}"
            for name, rule, ok in (
                ("epochs", ">= 1", self.epochs >= 1),
                ("lr", "> 0", self.lr > 0),
                ("lr_step", ">= 1", self.lr_step >= 1),
                ("l2", ">= 0", self.l2 >= 0),
                ("threshold", "in (0, 1)", 0 < self.threshold < 1),
                ("bag_size", ">= 1 or all", self.bag_size is None or self.bag_size >= 1),
                ("val_fraction", "in [0, 1)", 0 <= self.val_fraction < 1),
                ("keep", "last without validation", self.val_fraction > 0 or self.keep == "last"),
                ("batch_norm", " or ".join(BATCH_NORM), self.batch_norm in BATCH_NORM),
                ("class_weights", "none or balanced", self.class_weights in CLASS_WEIGHTS),
                ("bags_per_step", ">= 1", self.bags_per_step >= 1),
                ("sampling", "shuffle or balanced", self.sampling in SAMPLING),
                ("keep", " or ".join(KEEP), self.keep in KEEP),
            )
            if not ok
        ]
        if problems:
            raise InputError("MIL settings", "; ".join(problems), "fix the hcc.mil keys")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (stored in the checkpoint).

        The threshold and power are stored as ``t`` and ``p``, the paper's symbols, which
        ``mil_score`` and the checkpoints in exported model bundles use.
        """
        stored = {"threshold": "t", "power": "p"}
        return {stored.get(k, k): v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class TrainingSlide:
    """A labelled training slide: its bag file and label (y = 1 good, 0 poor)."""

    slide_id: str
    patient_id: str
    y: float
    bag: str


def split_patients(
    slides: Sequence[TrainingSlide], val_fraction: float, seed: int
) -> tuple[list[TrainingSlide], list[TrainingSlide]]:
    """Seeded split by patient, stratified by label.

    Each class with two or more patients gives ``round(val_fraction * n)`` of them (at least
    one) to validation; ``val_fraction`` 0 gives no validation slides.
    """
    if val_fraction == 0:
        return list(slides), []
    patients = sorted({(s.patient_id, s.y) for s in slides})
    rng = np.random.default_rng(seed)
    val_ids: set[str] = set()
    for label in (0.0, 1.0):
        ids = [pid for pid, y in patients if y == label]
        if len(ids) < 2:
            continue
        n_val = min(len(ids) - 1, max(1, round(val_fraction * len(ids))))
        val_ids.update(rng.permutation(ids)[:n_val].tolist())
    train = [s for s in slides if s.patient_id not in val_ids]
    val = [s for s in slides if s.patient_id in val_ids]
    return train, val


class StepPlan:
    """The training bags of each step (indices into the training slides), see MilConfig."""

    def __init__(self, labels: Sequence[float], cfg: MilConfig) -> None:
        self.n = len(labels)
        self.k = cfg.bags_per_step
        self.balanced = cfg.sampling == "balanced"
        self.by_class = [[i for i, y in enumerate(labels) if y == c] for c in (1.0, 0.0)]
        self.queues: list[list[int]] = [[], []]

    def _take(self, c: int, rng: np.random.Generator) -> int:
        if not self.queues[c]:
            self.queues[c] = rng.permutation(self.by_class[c]).tolist()
        return self.queues[c].pop()

    def epoch(self, rng: np.random.Generator) -> list[list[int]]:
        """The steps of one epoch."""
        if not self.balanced or not all(self.by_class):
            order = rng.permutation(self.n).tolist()
            return [order[i : i + self.k] for i in range(0, self.n, self.k)]
        slots = range(math.ceil(self.n / self.k) * self.k)
        bags = [self._take(j % 2, rng) for j in slots]  # good, poor, good, poor, ...
        return [bags[i : i + self.k] for i in range(0, len(bags), self.k)]


def _draw(n: int, size: int | None, rng: np.random.Generator) -> np.ndarray:
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=size, replace=False))


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """One random element of the dihedral group for the whole bag (N x C x H x W)."""
    if rng.random() < 0.5:
        x = x.flip(-1)
    k = int(rng.integers(4))
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def calibrate_batch_norm(
    model: nn.Module, slides: Sequence[TrainingSlide], cfg: MilConfig, device: torch.device
) -> None:
    """Set batch-norm running statistics to their average over bags of the given slides."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the forward passes
    rng = np.random.default_rng((cfg.seed, 2))
    model.train()
    with torch.no_grad():
        for s in slides:
            bag = Bag.load(s.bag)
            idx = _draw(len(bag), cfg.bag_size, rng)
            model(bag_input(bag.tiles[idx], bag.heat[idx], device))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum


def start_at_threshold(model: nn.Module, t: float) -> None:
    """Set the tile head's bias to ``logit(t)``: near-zero head weights then give S = t.

    Eq. 3 is neutral there (p = 0.5), so training moves good and poor bags apart from the
    threshold instead of starting every slide at S = 0.5 >= t (high risk).
    """
    head = model.classifier[-1]
    with torch.no_grad():
        head.bias.fill_(math.log(t / (1.0 - t)))


def _train_mode(model: nn.Module, freeze_bn: bool) -> None:
    """Training mode, with batch-norm layers left in eval mode when ``freeze_bn``."""
    model.train()
    if freeze_bn:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


@dataclass
class MilResult:
    """A MIL training run: the kept model, history, best epoch and the split."""

    model: nn.Module
    history: pd.DataFrame
    best_epoch: int
    best_val_bce: float
    train_slides: list[str]
    val_slides: list[str]


BIAS_GRID = torch.arange(-8.0, 8.0 + 1e-9, 0.005, dtype=torch.float64)


def fit_head_bias(
    model: nn.Module,
    bags: Sequence[tuple[torch.Tensor, float]],
    loss_fn: MilLoss,
    weight_of: dict[float, float],
    p: int,
) -> float:
    """Refit the tile head's bias on ``bags`` (tile input, label); returns the shift.

    The shift is the grid value (-8..8, step 0.005) that minimises the class-weighted Eq. 3
    cross-entropy of the bags' scores (model in eval mode).
    """
    model.eval()
    with torch.inference_mode():
        logits = [slide_score(model, x, p, chunk_size=64)[1].double() for x, _ in bags]
    total = torch.zeros_like(BIAS_GRID)
    for z, (_, y) in zip(logits, bags, strict=True):
        scores = torch.sigmoid(signed_generalised_mean(z[None, :] + BIAS_GRID[:, None], p))
        prob = mil_good_probability(scores, loss_fn.t).clamp(0.0, 1.0)
        log_p = torch.log(prob if y == 1.0 else 1.0 - prob).clamp_min(-100.0)
        total -= weight_of[y] * log_p
    shift = float(BIAS_GRID[int(torch.argmin(total))])
    with torch.no_grad():
        model.classifier[-1].bias += shift
    return shift


def _step_backward(
    model: nn.Module,
    bags: Sequence[tuple[torch.Tensor, float]],
    loss_fn: MilLoss,
    weight_of: dict[float, float],
    p: int,
    joint: bool,
) -> tuple[list[float], torch.Tensor]:
    """Backpropagate the mean (class-weighted) cross-entropy of one step's bags.

    ``joint``: the bags' tiles go through the network as one batch (``batch_norm: batch``);
    else bag by bag, each bag's share backpropagated before the next forward pass.

    Returns:
        (each bag's cross-entropy, the last bag's score, detached).
    """
    n = len(bags)
    if joint:
        z = model(torch.cat([x for x, _ in bags])).reshape(-1)
        parts = torch.split(z, [len(x) for x, _ in bags])
        scores = [torch.sigmoid(signed_generalised_mean(zi, p)) for zi in parts]
    losses = []
    for k, (x, y) in enumerate(bags):
        score = scores[k] if joint else slide_score(model, x, p)[0]
        bce, _ = loss_fn.parts(score, torch.tensor(y), None, weight_of[y])
        if not joint:
            (bce / n).backward()
        losses.append(bce)
    if joint:
        (torch.stack(losses).sum() / n).backward()
    return [float(b.item()) for b in losses], score.detach()


def _validate(
    model: nn.Module,
    bags: list[tuple[torch.Tensor, float]],
    loss_fn: MilLoss,
    p: int,
) -> tuple[float, float, float]:
    """(validation Eq. 4 loss, cross-entropy, accuracy) of fixed validation bags (NaN: none)."""
    if not bags:
        return math.nan, math.nan, math.nan
    model.eval()
    scores, ys = [], []
    with torch.inference_mode():
        for x, y in bags:
            s, _ = slide_score(model, x, p, chunk_size=64)
            scores.append(s)
            ys.append(y)
        s = torch.stack(scores)
        y = torch.tensor(ys, dtype=s.dtype)
        bce, reg = loss_fn.parts(s, y, model)
    correct = ((s < loss_fn.t).float() == y).float().mean()
    return float(bce + reg), float(bce), float(correct)


def train_mil(
    slides: Sequence[TrainingSlide], cfg: MilConfig, device: torch.device | str = "cpu"
) -> MilResult:
    """Train the MIL MobileNetV2 on labelled bags (see module docstring).

    Raises:
        InputError: a class without slides, a bag file that is not one or is empty.
    """
    device = torch.device(device)
    train, val = split_patients(slides, cfg.val_fraction, cfg.seed)
    if not val and cfg.val_fraction > 0:
        raise InputError(
            "MIL training slides",
            "are too few for a validation split (each class needs 2 or more patients)",
            "add labelled training slides",
        )
    torch.manual_seed(cfg.seed)
    model = build_mil_mobilenet(None if cfg.weights in (None, "none") else cfg.weights).to(device)
    start_at_threshold(model, cfg.threshold)
    loss_fn = MilLoss(t=cfg.threshold, l2=cfg.l2)
    optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size=cfg.lr_step, gamma=0.5)
    val_rng = np.random.default_rng((cfg.seed, 1))
    val_bags = []
    for s in val:
        bag = Bag.load(s.bag)
        idx = _draw(len(bag), cfg.bag_size, val_rng)
        val_bags.append((bag_input(bag.tiles[idx], bag.heat[idx], device), s.y))
    fit_bags = []
    if cfg.fit_bias:
        fit_rng = np.random.default_rng((cfg.seed, 3))
        for s in train:
            bag = Bag.load(s.bag)
            idx = _draw(len(bag), cfg.bag_size, fit_rng)
            fit_bags.append((bag_input(bag.tiles[idx], bag.heat[idx], device), s.y))
    frozen = cfg.batch_norm == "frozen"
    if frozen:
        calibrate_batch_norm(model, train, cfg, device)
    weight_of = class_weight_of(train, cfg.class_weights)
    plan = StepPlan([s.y for s in train], cfg)
    rows: list[dict[str, Any]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_crit, best_epoch, best_bce = math.inf, 0, math.inf
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        rng = np.random.default_rng((cfg.seed, 0, epoch))
        lr = optimiser.param_groups[0]["lr"]
        _train_mode(model, frozen)
        totals, bces = [], []
        for step in plan.epoch(rng):
            optimiser.zero_grad(set_to_none=True)
            inputs = []
            for i in step:
                bag = Bag.load(train[i].bag)
                idx = _draw(len(bag), cfg.bag_size, rng)
                x = bag_input(bag.tiles[idx], bag.heat[idx], device)
                inputs.append((_augment(x, rng) if cfg.augment else x, train[i].y))
            step_bces, score = _step_backward(
                model, inputs, loss_fn, weight_of, cfg.power, joint=not frozen
            )
            step_bce = sum(b / len(step) for b in step_bces)
            bces.extend(step_bces)
            reg = loss_fn.parts(score, torch.tensor(inputs[-1][1]), model)[1]
            if reg.requires_grad:
                reg.backward()
            optimiser.step()
            totals.append(step_bce + reg.item())
        scheduler.step()
        if cfg.fit_bias:
            fit_head_bias(model, fit_bags, loss_fn, weight_of, cfg.power)
        val_loss, val_bce, val_acc = _validate(model, val_bags, loss_fn, cfg.power)
        crit = {"val_bce": val_bce, "val_loss": val_loss, "last": -epoch}[cfg.keep]
        if crit < best_crit:
            best_crit, best_epoch, best_bce = crit, epoch, val_bce
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        rows.append(
            {
                "epoch": epoch,
                "train_loss": float(np.mean(totals)),
                "train_bce": float(np.mean(bces)),
                "val_loss": val_loss,
                "val_bce": val_bce,
                "val_accuracy": val_acc,
                "lr": lr,
                "seconds": round(time.perf_counter() - started, 3),
                "best": 0,
            }
        )
        log.info(
            "MIL epoch %d/%d: train loss %.4f (BCE %.4f), validation loss %.4f (BCE %.4f), "
            "accuracy %.2f", epoch, cfg.epochs, rows[-1]["train_loss"], rows[-1]["train_bce"],
            val_loss, val_bce, val_acc,
        )  # fmt: skip
    history = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    history.loc[history["epoch"] == best_epoch, "best"] = 1
    model.load_state_dict(best_state)
    model.cpu().eval()
    return MilResult(
        model, history, best_epoch, best_bce, [s.slide_id for s in train], [s.slide_id for s in val]
    )


@dataclass(frozen=True)
class BagScore:
    """A slide's score ``S``, its pre-sigmoid mean ``T`` and the tile logits."""

    score: float
    mean_logit: float
    logits: np.ndarray


def score_bag(
    model: nn.Module,
    bag: Bag,
    *,
    p: int = 3,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> BagScore:
    """Score every tile of a bag with the model in eval mode (batches of ``batch_size``)."""
    device = torch.device(device)
    norm = {k: v for k, v in (("mean", mean), ("std", std)) if v is not None}
    logits: list[torch.Tensor] = []
    run_model(
        model,
        batch_slices(len(bag), batch_size),
        lambda rows: bag_input(bag.tiles[rows], bag.heat[rows], device, **norm),
        lambda _, out: logits.append(out.reshape(-1).float().cpu()),
        device,
    )
    z = torch.cat(logits)
    t = signed_generalised_mean(z.double(), p)
    return BagScore(float(torch.sigmoid(t)), float(t), z.numpy())
