"""Training the tissue classifier on tiny generated patches (resnet18, 32 px, CPU)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_data import make_patch_folder
from torch import nn
from torch.utils.data import Subset

from histoprog.cli import main
from histoprog.data import PatchFolder, stratified_split
from histoprog.errors import InputError
from histoprog.evaluation import predict
from histoprog.models import build_tissue_classifier, load_checkpoint
from histoprog.train import TrainConfig, fit_classifier, train_tissue_classifier

torch.set_num_threads(1)

CRC = ("ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM")
CRLM = ("BACK", "DEB", "HEP", "LYM", "MUC", "STR", "TUM")
FAST = {"batch_size": 16, "seed": 0}


@pytest.fixture(scope="module")
def crlm_patches(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_patch_folder(tmp_path_factory.mktemp("crlm"), CRLM, n=12, px=32, seed=1)


def test_training_lowers_validation_loss_and_keeps_the_best_epoch(crlm_patches: Path) -> None:
    cfg = TrainConfig(epochs=4, patience=4, **FAST)
    model, result, info = train_tissue_classifier(
        crlm_patches, CRLM, backbone="resnet18", weights=None, cfg=cfg, stain="none"
    )
    history = result.history
    assert list(history["epoch"]) == [1, 2, 3, 4]
    assert history["val_loss"].min() < history["val_loss"].iloc[0]
    assert result.best_val_loss == history["val_loss"].min()
    assert history.loc[history["best"], "epoch"].tolist() == [result.best_epoch]
    # the returned weights are the kept epoch's: their validation loss is the recorded one
    base = PatchFolder(crlm_patches, CRLM, stain="none")
    _, val_idx = stratified_split(base.targets, cfg.val_fraction, cfg.seed)
    labels, probs = predict(model, torch.utils.data.DataLoader(Subset(base, val_idx), 16))
    loss = -sum(math.log(probs[i, y]) for i, y in enumerate(labels)) / len(labels)
    assert loss == pytest.approx(result.best_val_loss, rel=1e-4)
    assert info["n_train"] + info["n_val"] == 7 * 12 and info["n_val"] == 7 * 2
    assert info["class_counts"] == dict.fromkeys(CRLM, 12)
    assert info["init"]["source"] == "random"


def test_training_is_reproducible(crlm_patches: Path) -> None:
    cfg = TrainConfig(epochs=1, **FAST)
    runs = [
        train_tissue_classifier(
            crlm_patches, CRLM, backbone="resnet18", weights=None, cfg=cfg, stain="none"
        )[1].history
        for _ in range(2)
    ]
    pd.testing.assert_frame_equal(runs[0], runs[1])


class _Constant(nn.Module):
    """Fixed logits; its one parameter gets zero gradient, so the loss never changes."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.num_classes = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([0.3, -0.3]).expand(len(x), 2) + 0 * self.w


def test_early_stopping_after_patience_epochs_without_improvement() -> None:
    data = [(torch.zeros(4, 4, 3, dtype=torch.uint8), i % 2) for i in range(8)]
    result = fit_classifier(_Constant(), data, data, TrainConfig(epochs=10, patience=3, **FAST))
    assert result.stopped_early
    assert result.epochs_run == 4  # epoch 1 is best; 2, 3, 4 bring nothing
    assert result.best_epoch == 1
    no_stop = fit_classifier(_Constant(), data, data, TrainConfig(epochs=3, patience=0, **FAST))
    assert no_stop.epochs_run == 3 and not no_stop.stopped_early


def test_bad_training_settings() -> None:
    with pytest.raises(InputError, match=r"lr=0 must be > 0; momentum=1.0 must be in \[0, 1\)"):
        TrainConfig(lr=0, momentum=1.0)


def test_missing_imagenet_weights_warn(
    crlm_patches: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.warns(UserWarning, match="ImageNet weights for resnet18 are not cached"):
        _, _, info = train_tissue_classifier(
            crlm_patches, CRLM, backbone="resnet18", weights="imagenet",
            cfg=TrainConfig(epochs=1, **FAST), stain="none",
        )  # fmt: skip
    assert info["init"]["source"] == "random (imagenet weights not found)"


def _train_cli(patches: Path, classes: tuple[str, ...], out: Path, *extra: str) -> int:
    return main(
        [
            "train_tissue", "--patches", str(patches), "--classes", *classes,
            "--backbone", "resnet18", "--epochs", "2", "--batch-size", "16", "--threads", "1",
            "--out-model", str(out / "model.pt"), "--out-history", str(out / "history.tsv"),
            "--out-curve", str(out / "curve.png"), *extra,
        ]
    )  # fmt: skip


def test_two_stage_training_through_the_cli(crlm_patches: Path, tmp_path: Path) -> None:
    crc = make_patch_folder(tmp_path / "crc", CRC, n=6, px=32, seed=2)
    stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
    assert _train_cli(crc, CRC, stage1, "--weights", "none", "--stain", "tile") == 0
    model1, meta1 = load_checkpoint(stage1 / "model.pt", expected_kind="tissue_classifier")
    assert meta1["class_names"] == list(CRC)
    assert meta1["architecture"] == {"backbone": "resnet18", "num_classes": 9}
    assert meta1["normalisation"]["stain"] == "macenko"
    assert meta1["normalisation"]["stain_target"]["method"] == "macenko"
    assert meta1["config"]["train"]["lr"] == 0.001
    history = pd.read_csv(stage1 / "history.tsv", sep="\t")
    assert list(history.columns) == [
        "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "best"
    ]  # fmt: skip
    assert (stage1 / "curve.png").stat().st_size > 1000

    weights = str(stage1 / "model.pt")
    assert _train_cli(crlm_patches, CRLM, stage2, "--weights", weights, "--stain", "none") == 0
    model2, meta2 = load_checkpoint(
        stage2 / "model.pt", expected_kind="tissue_classifier", expected_class_names=CRLM
    )
    assert meta2["config"]["init"]["source"] == f"file:{weights}"
    assert meta2["config"]["init"]["sha256"] == meta1["sha256"]
    assert meta2["architecture"]["num_classes"] == 7
    # frozen layers come from stage 1 unchanged
    assert torch.equal(model1.conv1.weight, model2.conv1.weight)
    assert torch.equal(model1.layer3[0].bn1.running_mean, model2.layer3[0].bn1.running_mean)
    assert (meta1["config"]["trained_layers"], meta2["config"]["trained_layers"]) == (
        "all layers",
        "layer4+fc",
    )
    assert meta2["config"]["jitter"] == {
        "stain_sigma": 0.05,
        "filters": ["lanczos", "box", "bilinear"],
        "jpeg_probability": 0.5,
        "jpeg_quality": [70, 95],
    }


def test_random_init_trains_every_layer(crlm_patches: Path) -> None:
    """Frozen random features transfer nothing: from random init all layers learn."""
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=1, **FAST)
    model, _, info = train_tissue_classifier(
        crlm_patches, CRLM, backbone="resnet18", weights=None, cfg=cfg, stain="none"
    )
    torch.manual_seed(cfg.seed)
    fresh = build_tissue_classifier(7, "resnet18", weights=None)
    assert info["trained_layers"] == "all layers"
    assert not torch.equal(model.conv1.weight, fresh.conv1.weight)
    assert not torch.equal(model.layer1[0].bn1.running_mean, fresh.layer1[0].bn1.running_mean)


def test_cli_reports_an_empty_class_folder(
    crlm_patches: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_patch_folder(tmp_path / "p", ("BACK", "DEB"), n=3)
    (root / "TUM").mkdir()
    code = _train_cli(root, ("BACK", "DEB", "TUM"), tmp_path, "--weights", "none")
    assert code == 2
    err = capsys.readouterr().err
    assert "histoprog train_tissue: error: class folder" in err
    assert "TUM': holds no image" in err
    assert not (tmp_path / "model.pt").exists()


def test_cli_reports_a_bad_weights_file(tmp_path: Path, crlm_patches: Path, capsys) -> None:
    bad = tmp_path / "stage1.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    assert _train_cli(crlm_patches, CRLM, tmp_path, "--weights", str(bad)) == 2
    assert "truncated, corrupt or not a weights file" in capsys.readouterr().err
