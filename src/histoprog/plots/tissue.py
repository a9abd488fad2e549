"""Tissue classifier figures (METHODS 3): learning curves, ROC curves, confusion heat map.

Every function returns a matplotlib ``Figure`` built without pyplot (no GUI backend, no
global figure registry); save it with :func:`histoprog.io.save_figure`. The per-slide class
overlay is drawn with PIL in :mod:`histoprog.plots.overlay`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from histoprog.evaluation import Evaluation
from histoprog.plots.colours import class_colour


def learning_curves(history: pd.DataFrame, title: str = "") -> Figure:
    """Loss and accuracy per epoch, train vs validation; the kept epoch is marked.

    Args:
        history: :attr:`histoprog.train.TrainResult.history` (``epoch``, ``train_loss``,
            ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``best``).
        title: figure title.
    """
    fig = Figure(figsize=(9, 3.4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for ax, metric, label in ((ax_loss, "loss", "cross-entropy"), (ax_acc, "accuracy", "accuracy")):
        ax.plot(history["epoch"], history[f"train_{metric}"], "o-", ms=3, label="train")
        ax.plot(history["epoch"], history[f"val_{metric}"], "o-", ms=3, label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    best = history.loc[history["best"].astype(bool), "epoch"]
    if len(best):
        for ax in (ax_loss, ax_acc):
            ax.axvline(int(best.iloc[0]), color="grey", ls="--", lw=1, label="kept epoch")
    ax_acc.set_ylim(0, 1.02)
    ax_loss.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def roc_curves(evaluation: Evaluation, title: str = "") -> Figure:
    """One-vs-rest ROC curve per class with its AUC in the legend."""
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    for i, name in enumerate(evaluation.class_names):
        curve = evaluation.roc.get(name)
        if curve is None:
            continue
        ax.plot(
            curve.fpr, curve.tpr, color=class_colour(name, i), lw=1.5,
            label=f"{name} (AUC {curve.auc:.3f})",
        )  # fmt: skip
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_aspect("equal")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or f"one-vs-rest ROC (accuracy {evaluation.accuracy:.3f})", fontsize=10)
    fig.tight_layout()
    return fig


def confusion_heatmap(evaluation: Evaluation, title: str = "") -> Figure:
    """Row-normalised confusion matrix (true class per row), shares printed in the cells."""
    shares = evaluation.confusion_normalised
    names = evaluation.class_names
    k = len(names)
    fig = Figure(figsize=(1.6 + 0.6 * k, 1.0 + 0.6 * k))
    ax = fig.subplots()
    image = ax.imshow(np.nan_to_num(shares), cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            value = shares[i, j]
            if np.isfinite(value):
                colour = "white" if value > 0.6 else "black"
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_title(title or "confusion matrix (row-normalised)", fontsize=10)
    fig.tight_layout()
    return fig
