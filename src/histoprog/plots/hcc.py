"""HCC figures (METHODS 6): learning curves and the tile gallery (nuclei QC: hcc.qc).

Every function returns a matplotlib ``Figure`` built without pyplot; save it with
:func:`histoprog.io.save_figure`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def _mark_best(axes: Sequence[object], history: pd.DataFrame) -> None:
    best = history.loc[history["best"].astype(bool), "epoch"]
    if len(best):
        for ax in axes:
            ax.axvline(int(best.iloc[0]), color="grey", ls="--", lw=1, label="kept epoch")


def unet_curves(history: pd.DataFrame, title: str = "") -> Figure:
    """Dice loss (train, validation) and validation Dice per epoch; kept epoch dashed."""
    fig = Figure(figsize=(9, 3.4))
    ax_loss, ax_dice = fig.subplots(1, 2)
    ax_loss.plot(history["epoch"], history["train_loss"], "o-", ms=3, label="train")
    ax_loss.plot(history["epoch"], history["val_loss"], "o-", ms=3, label="validation")
    ax_loss.set_ylabel("Dice loss")
    ax_dice.plot(history["epoch"], history["val_dice"], "o-", ms=3, color="C1", label="validation")
    ax_dice.set_ylabel("Dice (threshold 0.5)")
    ax_dice.set_ylim(0, 1.02)
    for ax in (ax_loss, ax_dice):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    _mark_best((ax_loss, ax_dice), history)
    ax_loss.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def mil_curves(history: pd.DataFrame, title: str = "") -> Figure:
    """Eq. 4 loss, its cross-entropy part and validation accuracy per epoch."""
    fig = Figure(figsize=(12, 3.4))
    ax_loss, ax_bce, ax_acc = fig.subplots(1, 3)
    for ax, col, label in ((ax_loss, "loss", "Eq. 4 loss"), (ax_bce, "bce", "cross-entropy")):
        ax.plot(history["epoch"], history[f"train_{col}"], "o-", ms=3, label="train")
        ax.plot(history["epoch"], history[f"val_{col}"], "o-", ms=3, label="validation")
        ax.set_ylabel(label)
    ax_acc.plot(history["epoch"], history["val_accuracy"], "o-", ms=3, color="C1")
    ax_acc.set_ylabel("validation accuracy (S < t = good)")
    ax_acc.set_ylim(0, 1.02)
    for ax in (ax_loss, ax_bce, ax_acc):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    _mark_best((ax_loss, ax_bce, ax_acc), history)
    ax_loss.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def tile_gallery(
    top: Sequence[tuple[np.ndarray, float, str]],
    bottom: Sequence[tuple[np.ndarray, float, str]],
    title: str = "",
    ncols: int = 20,
) -> Figure:
    """Two blocks of tiles with their logits: highest-scoring above, lowest below.

    Args:
        top: (tile, logit, slide id) of the highest-scoring tiles, highest first.
        bottom: the same for the lowest-scoring tiles, lowest first.
        title: figure title.
        ncols: tiles per row.
    """
    rows_top = max(1, -(-len(top) // ncols))
    rows_bottom = max(1, -(-len(bottom) // ncols))
    nrows = rows_top + rows_bottom
    fig = Figure(figsize=(0.9 * ncols, 1.0 * nrows + 0.8))
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    for ax in axes.ravel():
        ax.set_axis_off()
    for block, start in ((top, 0), (bottom, rows_top)):
        for i, (tile, logit, slide) in enumerate(block):
            ax = axes[start + i // ncols, i % ncols]
            ax.imshow(tile)
            ax.set_title(f"{slide}\n{logit:.2f}", fontsize=6, pad=1)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.9 / (nrows + 1), bottom=0.01, hspace=0.6)
    for label, start in (
        (f"highest-scoring {len(top)} tiles (tile logit)", 0),
        (f"lowest-scoring {len(bottom)} tiles (tile logit)", rows_top),
    ):
        box = axes[start, 0].get_position()
        fig.text(box.x0, box.y1 + 0.25 / (nrows + 1), label, fontsize=8, weight="bold")
    return fig
