"""Every analysis and training figure kind renders on small data: written, legible size, text
inside the canvas (the per-slide QC pictures and Kaplan-Meier figures: tests/test_plots.py).

``HISTOPROG_FIGURES=<dir>`` keeps the PNGs there for looking at them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageColor

from histoprog.classes import CLASSES
from histoprog.evaluation import evaluate_predictions
from histoprog.hcc.qc import nuclei_montage
from histoprog.plots.colours import CLASS_COLOURS
from histoprog.plots.hcc import mil_curves, tile_gallery, unet_curves
from histoprog.plots.sof_figure import sof_figure
from histoprog.plots.survival import (
    calibration_figure,
    correlation_heatmap,
    forest_plot,
    time_roc_figure,
)
from histoprog.plots.tissue import confusion_heatmap, learning_curves, roc_curves
from histoprog.survival import cox_univariate, time_roc
from histoprog.survival.calibration import calibrate

RNG = np.random.default_rng(7)


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    """60 patients whose risk score drives their exponential survival, 30 % censored."""
    n = 60
    score = RNG.normal(size=n)
    time = RNG.exponential(40 * np.exp(-0.8 * score))
    censor = RNG.uniform(10, 120, size=n)
    return pd.DataFrame(
        {
            "time": np.minimum(time, censor).round(1) + 0.1,
            "event": (time <= censor).astype(int),
            "score": score,
            "noise": RNG.normal(size=n),
            "age": RNG.normal(60, 8, size=n),
        }
    )


def _save(fig: Figure | Image.Image, name: str, folder: Path) -> Image.Image:
    """Write the figure as a PNG (also under $HISTOPROG_FIGURES) and read it back."""
    keep = os.environ.get("HISTOPROG_FIGURES")
    targets = [folder / f"{name}.png"] + ([Path(keep) / f"{name}.png"] if keep else [])
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(fig, Figure):
            fig.savefig(path, dpi=150)
        else:
            fig.save(path)
    with Image.open(targets[0]) as png:
        return png.convert("RGB")


def _texts_inside(fig: Figure) -> None:
    """Everything drawn (titles, labels, tick labels, legends) lies within the canvas."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    drawn = fig.get_tightbbox(canvas.get_renderer())  # inches
    width, height = fig.get_size_inches()
    tolerance = 0.02
    assert drawn.x0 >= -tolerance and drawn.y0 >= -tolerance, drawn
    assert drawn.x1 <= width + tolerance and drawn.y1 <= height + tolerance, drawn


def _check(fig: Figure, name: str, folder: Path, min_px: tuple[int, int]) -> Image.Image:
    _texts_inside(fig)
    png = _save(fig, name, folder)
    assert png.width >= min_px[0] and png.height >= min_px[1], png.size
    assert np.asarray(png).std() > 5  # something is drawn
    return png


def test_forest_plot(cohort: pd.DataFrame, tmp_path: Path) -> None:
    table = pd.concat(
        [cox_univariate(cohort, "time", "event", [c]) for c in ("score", "noise", "age")]
    )
    fig = forest_plot(table, title="Univariate Cox, discovery")
    _check(fig, "forest", tmp_path, (800, 300))
    ax = fig.axes[0]
    rows = dict(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels()), strict=True))
    assert [rows[y] for y in sorted(rows, reverse=True)] == ["score", "noise", "age"]  # table order
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.5", "1", "2"]  # plain numbers


def test_correlation_heatmap(cohort: pd.DataFrame, tmp_path: Path) -> None:
    features = ["score", "noise", "age"]
    corr = cohort[features].corr()
    pairs = pd.DataFrame(
        [(a, b, corr.loc[a, b]) for a in features for b in features if a < b],
        columns=["feature_a", "feature_b", "r"],
    )
    _check(
        correlation_heatmap(pairs, features, "Pearson r", r_max=0.8), "corr", tmp_path, (400, 400)
    )


def test_time_roc_figure(cohort: pd.DataFrame, tmp_path: Path) -> None:
    times = [12.0, 24.0, 36.0]
    curves = [
        time_roc(cohort["time"], cohort["event"], cohort[m], times, name=m)
        for m in ("score", "noise")
    ]
    fig = time_roc_figure(curves, marks=[24.0], title="Time-dependent AUC, validation")
    _check(fig, "time_roc", tmp_path, (800, 550))
    assert fig.axes[0].get_legend() is not None  # which curve is which marker
    assert fig.axes[0].get_ylim() == (0, 1)  # the noise marker's AUC 0.29 stays visible


def test_calibration_figure(cohort: pd.DataFrame, tmp_path: Path) -> None:
    results = {
        u: calibrate(cohort, "time", "event", ["score"], u, B=20, m=15, seed=1)
        for u in (24.0, 36.0)
    }
    fig = calibration_figure(results, title="Calibration of the risk score")
    _check(fig, "calibration", tmp_path, (1200, 600))
    assert len(fig.axes) == 2


def test_sof_figure_draws_cells_and_the_region_outline(tmp_path: Path) -> None:
    grid = RNG.integers(0, len(CLASSES), size=(20, 24))
    grid[:3] = -1  # no tile
    region = np.zeros(grid.shape, dtype=bool)
    region[8:14, 6:12] = True
    grid[region] = CLASSES.index("TUM")
    distances = RNG.uniform(0, 8, size=grid.shape)
    thresholds = {c: 4.0 for c in CLASSES if c != "TUM"}
    fig = sof_figure(grid, region, distances, thresholds, "slide DISC-001: ok")
    png = _save(fig.image, "sof", tmp_path)
    assert png.size == fig.image.size and png.width >= 900 and png.height >= 400
    px = np.asarray(png).astype(int)
    (lx, ly), (rx, ry) = fig.panels
    cell = fig.cell_px

    def centre(x0: int, y0: int, r: int, c: int) -> np.ndarray:
        return px[y0 + r * cell + cell // 2, x0 + c * cell + cell // 2]

    for r, c in [(0, 0), (5, 3), (19, 23)]:
        want = (
            (255, 255, 255)
            if grid[r, c] < 0
            else ImageColor.getrgb(CLASS_COLOURS[CLASSES[grid[r, c]]])
        )
        assert tuple(centre(lx, ly, r, c)) == want
    lym = np.argwhere((grid == CLASSES.index("LYM")) & ~region)
    for r, c in lym[:5]:
        near = distances[r, c] <= 4.0
        assert tuple(centre(rx, ry, r, c)) == ImageColor.getrgb("#1f3f7f" if near else "#a6c8ff")
    assert (px[ly + 8 * cell, lx + 7 * cell] == 0).all()  # the region's top edge
    assert (px[ly + 11 * cell, lx + 6 * cell] == 0).all()  # its left edge
    assert not (px[ly + 2 * cell, lx + 2 * cell + cell // 2] == 0).all()  # no edge there


EPOCHS = np.arange(1, 6)


def _history(best: int, **curves: float) -> pd.DataFrame:
    """A training history: each curve ``c / epoch`` (``c`` > 0) or ``0.5 + epoch / 20``
    (``c`` = 0: a rising metric); ``best`` marks the kept epoch."""
    columns = {k: c / EPOCHS if c else 0.5 + EPOCHS / 20 for k, c in curves.items()}
    return pd.DataFrame({"epoch": EPOCHS, **columns, "best": EPOCHS == best})


def test_training_figures(tmp_path: Path) -> None:
    history = _history(4, train_loss=1, val_loss=1.2, train_accuracy=0, val_accuracy=0)
    _check(
        learning_curves(history, "Tissue classifier, CRLM stage"), "learning", tmp_path, (600, 300)
    )
    labels = RNG.integers(0, 3, size=90)
    probs = RNG.dirichlet(np.ones(3), size=90)
    probs[np.arange(90), labels] += 0.4
    evaluation = evaluate_predictions(labels, probs / probs.sum(1, keepdims=True), ["A", "B", "C"])
    _check(roc_curves(evaluation, "Test patches"), "roc", tmp_path, (500, 400))
    _check(confusion_heatmap(evaluation, "Test patches"), "confusion", tmp_path, (500, 400))


def test_hcc_training_figures(tmp_path: Path) -> None:
    unet = _history(5, train_loss=1, val_loss=1.1, val_dice=0)
    _check(unet_curves(unet, "Nuclei U-net"), "unet_curves", tmp_path, (600, 300))
    mil = _history(3, train_loss=1, val_loss=1.1, train_bce=0.7, val_bce=0.8, val_accuracy=0)
    _check(mil_curves(mil, "MIL MobileNetV2"), "mil_curves", tmp_path, (600, 300))


def test_tile_gallery(tmp_path: Path) -> None:
    tiles = RNG.integers(0, 255, size=(40, 64, 64, 3), dtype=np.uint8)
    top = [(tiles[i], 3.0 - i / 10, f"HCCTE-{i:03d}") for i in range(20)]
    bottom = [(tiles[20 + i], -3.0 + i / 10, f"HCCTE-{i:03d}") for i in range(20)]
    _check(
        tile_gallery(top, bottom, "hcc_test: tiles by MIL logit"), "gallery", tmp_path, (1500, 300)
    )


def test_nuclei_montage(tmp_path: Path) -> None:
    tiles = RNG.integers(0, 255, size=(6, 96, 96, 3), dtype=np.uint8)
    heat = RNG.integers(0, 255, size=(6, 96, 96), dtype=np.uint8)
    png = _save(nuclei_montage(tiles, heat, "HCCTR-001"), "nuclei_qc", tmp_path)
    assert png.width >= 6 * 96 and png.height >= 2 * 96
