"""Classifier evaluation on an independent test folder (METHODS 3.5).

Accuracy, per-class precision/recall/F1 and one-vs-rest ROC AUC, the ROC curves themselves
and the confusion matrix (counts, and row-normalised: each true class's row sums to 1). All
numbers come from scikit-learn (``precision_recall_fscore_support``, ``roc_curve``,
``roc_auc_score``, ``confusion_matrix``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import (
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)
from torch import nn

from histoprog.data import to_model_input
from histoprog.errors import InputError
from histoprog.inference import run_model

PER_CLASS_COLUMNS = ("class", "support", "precision", "recall", "f1", "auc")


@dataclass
class RocCurve:
    """One-vs-rest ROC curve of one class (sklearn's ``roc_curve`` points)."""

    fpr: np.ndarray
    tpr: np.ndarray
    auc: float


@dataclass
class Evaluation:
    """Test-set metrics of a K-class classifier.

    Attributes:
        class_names: the K classes, in output order.
        accuracy: share of tiles whose argmax class is the true class.
        per_class: one row per class: ``class``, ``support`` (true tiles), ``precision``,
            ``recall``, ``f1`` and one-vs-rest ``auc`` (NaN when the class has no positive or
            no negative tile).
        confusion: K x K counts, rows = true class, columns = predicted class.
        roc: per class with a defined AUC, its curve.
    """

    class_names: list[str]
    accuracy: float
    per_class: pd.DataFrame
    confusion: np.ndarray
    roc: dict[str, RocCurve] = field(default_factory=dict)

    @property
    def confusion_normalised(self) -> np.ndarray:
        """Row-normalised confusion matrix (rows of classes with no tile are NaN)."""
        counts = self.confusion.astype(float)
        totals = counts.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals > 0, counts / totals, np.nan)

    @property
    def summary(self) -> dict[str, Any]:
        """Overall numbers: accuracy, macro F1, macro AUC (over defined AUCs), tile count."""
        aucs = self.per_class["auc"].dropna()
        return {
            "n": int(self.confusion.sum()),
            "accuracy": self.accuracy,
            "macro_f1": float(self.per_class["f1"].mean()),
            "macro_auc": float(aucs.mean()) if len(aucs) else math.nan,
        }

    def confusion_table(self) -> pd.DataFrame:
        """The confusion counts as a table: ``true`` column, then one column per prediction."""
        table = pd.DataFrame(self.confusion, columns=self.class_names)
        table.insert(0, "true", self.class_names)
        return table


def evaluate_predictions(
    labels: Sequence[int] | np.ndarray, probs: np.ndarray, class_names: Sequence[str]
) -> Evaluation:
    """Metrics from true labels and predicted class probabilities.

    Args:
        labels: true class indices, length N.
        probs: N x K probabilities (rows sum to 1).
        class_names: the K class names.

    Raises:
        InputError: no samples, or shapes that do not agree.
    """
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=float)
    names = [str(c) for c in class_names]
    k = len(names)
    if y.ndim != 1 or len(y) == 0 or p.shape != (len(y), k):
        raise InputError(
            "test predictions",
            f"need N >= 1 labels and an N x {k} probability matrix, got {y.shape} and {p.shape}",
            "evaluate on a non-empty test folder with the model's classes",
        )
    pred = p.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=list(range(k)), zero_division=0
    )
    aucs: list[float] = []
    curves: dict[str, RocCurve] = {}
    for i, name in enumerate(names):
        positive = y == i
        if positive.all() or not positive.any():
            aucs.append(math.nan)
            continue
        fpr, tpr, _ = roc_curve(positive, p[:, i])
        auc = float(roc_auc_score(positive, p[:, i]))
        curves[name] = RocCurve(fpr=fpr, tpr=tpr, auc=auc)
        aucs.append(auc)
    per_class = pd.DataFrame(
        {
            "class": names,
            "support": support.astype(int),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "auc": aucs,
        },
        columns=list(PER_CLASS_COLUMNS),
    )
    return Evaluation(
        class_names=names,
        accuracy=float((pred == y).mean()),
        per_class=per_class,
        confusion=confusion_matrix(y, pred, labels=list(range(k))),
        roc=curves,
    )


def predict(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str = "cpu",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities of a classifier over ``(uint8 tiles, labels)`` batches.

    Args:
        model: the classifier (put in eval mode here).
        batches: e.g. a DataLoader over :class:`histoprog.data.PatchFolder`.
        device: where to run.
        mean: input mean (default ImageNet's, see :func:`histoprog.data.to_model_input`).
        std: input standard deviation.

    Returns:
        ``(labels, probs)``: N labels and an N x K float64 probability matrix.
    """
    device = torch.device(device)
    norm = {k: v for k, v in (("mean", mean), ("std", std)) if v is not None}
    labels: list[np.ndarray] = []
    probs: list[np.ndarray] = []

    def consume(batch: tuple[torch.Tensor, torch.Tensor], logits: torch.Tensor) -> None:
        probs.append(torch.softmax(logits.float(), dim=1).cpu().double().numpy())
        labels.append(np.asarray(batch[1]))

    run_model(model, batches, lambda b: to_model_input(b[0], device, **norm), consume, device)
    if not probs:
        return np.zeros(0, dtype=int), np.zeros((0, 0))
    return np.concatenate(labels), np.concatenate(probs)
