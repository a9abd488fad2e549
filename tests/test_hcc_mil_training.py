"""MIL training steps (METHODS 6.5): why one-bag steps put every slide in one risk group.

The cause, measured on the demo's cached pool (``benchmarks/bench_mil_robustness.py``,
config/README.md "HCC MIL training"): with one bag per optimiser step, each step moves the
score of every slide, of both classes, towards that bag's label by more than the scores
differ between the classes, so the epoch's last few bags decide on which side of t all
slides end (one risk group) and the classes never separate. The fix: steps of one good and
one poor bag (``sampling: balanced``, ``bags_per_step: 2``), class-weighted cross-entropy
and the tile head's bias refitted on the training bags after each epoch (``fit_bias``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from histoprog.errors import InputError
from histoprog.hcc.bags import Bag
from histoprog.hcc.mil import (
    MilConfig,
    StepPlan,
    TrainingSlide,
    class_weight_of,
    fit_head_bias,
    score_bag,
    train_mil,
)
from histoprog.models import MilLoss

T = 0.4457


def small_case(folder: Path, n_good: int = 3, n_poor: int = 6) -> list[TrainingSlide]:
    """Bags of 4 random 32-px tiles; the heat-map channel tells the classes apart."""
    rng = np.random.default_rng(0)
    slides = []
    for i in range(n_good + n_poor):
        y = 1.0 if i < n_good else 0.0
        tiles = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
        heat = np.full((4, 32, 32), 40 if y else 215, np.uint8)
        path = folder / f"b{i}.npz"
        Bag(tiles, heat, *(np.arange(4),) * 4).save(path)
        slides.append(TrainingSlide(f"s{i}", f"p{i}", y, str(path)))
    return slides


def trained_scores(slides: list[TrainingSlide], **settings: object) -> tuple[np.ndarray, ...]:
    cfg = MilConfig(epochs=10, lr=3e-4, lr_step=10, l2=1e-5, bag_size=None, weights=None,
                    seed=3, keep="last", **settings)  # fmt: skip
    torch.set_num_threads(1)
    result = train_mil(slides, cfg)
    scores = np.array([score_bag(result.model, Bag.load(s.bag)).score for s in slides])
    y = np.array([s.y for s in slides])
    return scores[y == 1], scores[y == 0]


FIX = {"sampling": "balanced", "bags_per_step": 2, "class_weights": "balanced", "fit_bias": True}


def test_one_bag_steps_put_every_slide_in_one_group_and_the_fix_separates_them(tmp_path):
    slides = small_case(tmp_path)
    good, poor = trained_scores(slides)  # the paper's steps: one bag, shuffled
    assert (np.concatenate([good, poor]) >= T).all(), (good, poor)  # all high risk
    good, poor = trained_scores(slides, **FIX)
    assert good.max() < T <= poor.min(), (good, poor)


def test_training_is_deterministic(tmp_path):
    slides = small_case(tmp_path)
    first = trained_scores(slides, **FIX)
    second = trained_scores(slides, **FIX)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_balanced_steps_hold_one_good_and_one_poor_bag():
    labels = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    plan = StepPlan(labels, MilConfig(sampling="balanced", bags_per_step=2))
    steps = plan.epoch(np.random.default_rng(0)) + plan.epoch(np.random.default_rng(1))
    assert len(steps) == 8
    assert all(sorted(labels[i] for i in step) == [0.0, 1.0] for step in steps)
    shuffled = StepPlan(labels, MilConfig(bags_per_step=2)).epoch(np.random.default_rng(0))
    assert sorted(i for step in shuffled for i in step) == list(range(7))  # each bag once


def test_class_weights():
    slides = [TrainingSlide(f"s{i}", f"p{i}", y, "") for i, y in enumerate([1, 0, 0, 0])]
    assert class_weight_of(slides, "none") == {1.0: 1.0, 0.0: 1.0}
    assert class_weight_of(slides, "balanced") == {1.0: 2.0, 0.0: 4 / 6}


class MeanModel(nn.Module):
    """Tile logit = a linear function of the tile's mean value (a head with a bias)."""

    def __init__(self, bias: float) -> None:
        super().__init__()
        self.classifier = nn.Sequential(nn.Linear(1, 1))
        with torch.no_grad():
            self.classifier[0].weight.fill_(4.0)
            self.classifier[0].bias.fill_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x.mean(dim=(1, 2, 3))[:, None])


@pytest.mark.parametrize("bias", [-6.0, 0.0, 5.0])
def test_bias_fit_puts_the_threshold_between_the_classes(bias):
    """Wherever the level starts (all low, all high), the refit bias splits the classes."""
    model = MeanModel(bias)
    bags = [(torch.full((3, 4, 2, 2), v), y) for v, y in ((0.0, 1.0), (0.1, 1.0), (0.9, 0.0),
                                                        (1.0, 0.0), (0.8, 0.0))]  # fmt: skip
    fit_head_bias(model, bags, MilLoss(t=T, l2=0), {1.0: 2.5 / 2, 0.0: 2.5 / 3}, p=3)
    with torch.no_grad():
        scores = [float(torch.sigmoid(model(x).mean())) for x, _ in bags]  # equal tiles: T = z
    assert max(scores[:2]) < T < min(scores[2:])


def test_joint_batch_norm_without_validation_trains_on_every_slide(tmp_path):
    """``batch_norm: batch`` + ``val_fraction: 0`` (the demo's recipe): every labelled slide
    trains, the last epoch is kept, the history has no validation numbers, and the step's
    bags share one batch (the running statistics move during training)."""
    slides = small_case(tmp_path)
    cfg = MilConfig(epochs=3, lr=1e-3, lr_step=10, l2=0, bag_size=None, weights=None, seed=3,
                    keep="last", val_fraction=0, batch_norm="batch", sampling="balanced",
                    bags_per_step=4, class_weights="balanced")  # fmt: skip
    torch.set_num_threads(1)
    result = train_mil(slides, cfg)
    assert sorted(result.train_slides) == sorted(s.slide_id for s in slides)
    assert result.val_slides == [] and result.best_epoch == 3
    assert result.history[["val_loss", "val_bce", "val_accuracy"]].isna().all().all()
    first_bn = next(m for m in result.model.modules() if isinstance(m, nn.BatchNorm2d))
    assert int(first_bn.num_batches_tracked) == 3 * 3  # 9 slides, 4 a step: 3 steps an epoch


def test_no_validation_needs_the_last_epoch():
    with pytest.raises(InputError, match="keep=val_bce must be last without validation"):
        MilConfig(val_fraction=0, keep="val_bce")
    with pytest.raises(InputError, match="batch_norm=bag must be frozen or batch"):
        MilConfig(batch_norm="bag")
