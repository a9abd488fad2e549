"""Test-set metrics (accuracy, per-class P/R/F1, one-vs-rest AUC, confusion) and figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from histoprog.errors import InputError
from histoprog.evaluation import evaluate_predictions, predict
from histoprog.io import save_figure
from histoprog.plots.tissue import confusion_heatmap, learning_curves, roc_curves
from histoprog.stain import TORCHSTAIN_BACKGROUND_INTENSITY, MacenkoNormalizer

torch.set_num_threads(1)

NAMES = ["A", "B", "C"]


def one_hot_probs(pred: list[int], k: int = 3, confidence: float = 0.8) -> np.ndarray:
    probs = np.full((len(pred), k), (1 - confidence) / (k - 1))
    probs[np.arange(len(pred)), pred] = confidence
    return probs


def test_hand_computed_example() -> None:
    # true:  A A A B B C ; predicted: A A B B C C
    labels = [0, 0, 0, 1, 1, 2]
    result = evaluate_predictions(labels, one_hot_probs([0, 0, 1, 1, 2, 2]), NAMES)
    assert result.accuracy == pytest.approx(4 / 6)
    assert result.confusion.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    table = result.per_class.set_index("class")
    assert table["support"].tolist() == [3, 2, 1]
    assert table["precision"].tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert table["recall"].tolist() == pytest.approx([2 / 3, 0.5, 1.0])
    assert table.loc["A", "f1"] == pytest.approx(0.8)
    # class A scores: 0.8 for the two predicted A, 0.1 else -> positives 0.8, 0.8, 0.1
    # negatives 0.1, 0.1, 0.1: P(pos > neg) + 1/2 P(tie) = (2 * 3 + 0.5 * 3) / 9
    assert table.loc["A", "auc"] == pytest.approx(7.5 / 9)
    normalised = result.confusion_normalised
    assert normalised.sum(axis=1) == pytest.approx([1, 1, 1])
    assert normalised[0].tolist() == pytest.approx([2 / 3, 1 / 3, 0])


def test_perfect_classifier() -> None:
    labels = [0, 1, 2, 0, 1, 2]
    result = evaluate_predictions(labels, one_hot_probs(labels), NAMES)
    assert result.accuracy == 1.0
    assert result.per_class["auc"].tolist() == [1.0, 1.0, 1.0]
    assert result.summary == {"n": 6, "accuracy": 1.0, "macro_f1": 1.0, "macro_auc": 1.0}
    assert np.array_equal(result.confusion, np.eye(3) * 2)


def test_class_absent_from_test_set_has_nan_auc_and_row() -> None:
    result = evaluate_predictions([0, 1, 0, 1], one_hot_probs([0, 1, 0, 2]), NAMES)
    row = result.per_class.set_index("class").loc["C"]
    assert row["support"] == 0 and math.isnan(row["auc"])
    assert np.isnan(result.confusion_normalised[2]).all()
    assert set(result.roc) == {"A", "B"}
    assert result.summary["macro_auc"] == pytest.approx(np.mean([1.0, 0.75]))


def test_confusion_table_layout() -> None:
    table = evaluate_predictions([0, 1], one_hot_probs([0, 0]), NAMES).confusion_table()
    assert list(table.columns) == ["true", *NAMES]
    assert table["A"].tolist() == [1, 1, 0]


@pytest.mark.parametrize(("labels", "probs"), [([], np.zeros((0, 3))), ([0, 1], np.zeros((2, 2)))])
def test_bad_shapes(labels: list[int], probs: np.ndarray) -> None:
    with pytest.raises(InputError, match="test predictions"):
        evaluate_predictions(labels, probs, NAMES)


def test_predict_returns_softmax_and_labels() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 2 * 3, 3))
    batches = [
        (torch.zeros(2, 2, 2, 3, dtype=torch.uint8), torch.tensor([0, 1])),
        (torch.full((1, 2, 2, 3), 255, dtype=torch.uint8), torch.tensor([2])),
    ]
    labels, probs = predict(model, batches)
    assert labels.tolist() == [0, 1, 2]
    assert probs.shape == (3, 3)
    assert probs.sum(axis=1) == pytest.approx(np.ones(3))


def test_figures(tmp_path: Path) -> None:
    result = evaluate_predictions([0, 1, 2, 0, 1, 2], one_hot_probs([0, 1, 2, 1, 1, 2]), NAMES)
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "train_loss": [1.0, 0.8, 0.6],
            "train_accuracy": [0.3, 0.5, 0.7],
            "val_loss": [1.1, 0.9, 1.0],
            "val_accuracy": [0.3, 0.6, 0.6],
            "best": [False, True, False],
        }
    )
    figures = {
        "roc.png": roc_curves(result),
        "confusion.png": confusion_heatmap(result),
        "curve.png": learning_curves(history, "test"),
    }
    for name, figure in figures.items():
        assert isinstance(figure, Figure)
        save_figure(tmp_path / name, figure, dpi=60)
        assert (tmp_path / name).stat().st_size > 1000


def test_evaluate_tissue_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from test_data import make_patch_folder

    from histoprog.cli import main
    from histoprog.models import build_tissue_classifier, save_checkpoint
    from histoprog.train import normalisation_record

    classes = ("A", "B", "C")
    patches = make_patch_folder(tmp_path / "test", classes, n=4, px=32)
    model = build_tissue_classifier(3, backbone="resnet18", weights=None)
    save_checkpoint(
        tmp_path / "m.pt", model, kind="tissue_classifier",
        architecture={"backbone": "resnet18", "num_classes": 3}, class_names=list(classes),
        normalisation=normalisation_record("none", None, None), config={}, metrics={},
    )  # fmt: skip
    out = {k: tmp_path / f"{k}.{ext}" for k, ext in
           [("metrics", "tsv"), ("summary", "json"), ("confusion", "tsv"), ("roc", "png"),
            ("heatmap", "png")]}  # fmt: skip
    args = ["evaluate_tissue", "--model", str(tmp_path / "m.pt"), "--patches", str(patches),
            "--stain", "none", "--threads", "1"]  # fmt: skip
    for key, path in out.items():
        args += [f"--out-{key}", str(path)]
    assert main(args) == 0
    metrics = pd.read_csv(out["metrics"], sep="\t")
    assert metrics["class"].tolist() == list(classes) and metrics["support"].tolist() == [4] * 3
    summary = json.loads(out["summary"].read_text())
    assert summary["n"] == 12 and 0 <= summary["accuracy"] <= 1
    assert pd.read_csv(out["confusion"], sep="\t").iloc[:, 1:].to_numpy().sum() == 12
    assert out["roc"].stat().st_size > 1000 and out["heatmap"].stat().st_size > 1000
    # a model trained on normalised patches is refused on unnormalised ones
    wrong = [*args]
    wrong[wrong.index("--model") + 1] = str(tmp_path / "m2.pt")
    reference = MacenkoNormalizer(None, TORCHSTAIN_BACKGROUND_INTENSITY)
    save_checkpoint(
        tmp_path / "m2.pt", model, kind="tissue_classifier",
        architecture={"backbone": "resnet18", "num_classes": 3}, class_names=list(classes),
        normalisation=normalisation_record("tile", reference, None), config={}, metrics={},
    )  # fmt: skip
    assert main(wrong) == 2
    assert "trained on Macenko-normalised patches" in capsys.readouterr().err
