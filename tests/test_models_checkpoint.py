"""Tests for histoprog.models.checkpoint: round trips and the errors users see."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from histoprog.errors import InputError
from histoprog.models import (
    architecture_of,
    build_mil_mobilenet,
    build_tissue_classifier,
    build_unet,
    file_sha256,
    load_checkpoint,
    save_checkpoint,
)

torch.set_num_threads(1)
CLASSES = ["BACK", "DEB", "HEP", "LYM", "MUC", "STR", "TUM"]


def _save(path, model, kind, class_names=None, **extra):
    return save_checkpoint(
        path,
        model,
        kind=kind,
        architecture=architecture_of(model, kind),
        class_names=class_names,
        normalisation={"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        config={"seed": 1, "patches": Path("/data/patches"), "lr": np.float64(1e-3)},
        metrics={"val_loss": np.float32(0.25), "epoch": 3},
        **extra,
    )


@pytest.fixture
def tissue_ckpt(tmp_path):
    torch.manual_seed(0)
    model = build_tissue_classifier(len(CLASSES), "resnet18", weights=None)
    path = tmp_path / "models" / "tissue.pt"
    _save(path, model, "tissue_classifier", CLASSES)
    return path, model


def test_tissue_round_trip(tissue_ckpt):
    path, model = tissue_ckpt
    loaded, meta = load_checkpoint(
        path, expected_kind="tissue_classifier", expected_class_names=CLASSES
    )
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    assert meta["class_names"] == CLASSES
    assert meta["architecture"] == {"backbone": "resnet18", "num_classes": 7}
    assert meta["config"] == {"seed": 1, "patches": "/data/patches", "lr": 1e-3}
    assert meta["metrics"]["val_loss"] == pytest.approx(0.25)
    assert meta["histoprog_version"] and meta["torch_version"] == str(torch.__version__)
    assert meta["sha256"] == file_sha256(path) and len(meta["sha256"]) == 64
    assert "state_dict" not in meta
    assert [p.name for p in path.parent.iterdir()] == ["tissue.pt"]  # no temp files left
    # frozen layers stay frozen after loading
    assert not loaded.conv1.weight.requires_grad and loaded.layer4[0].conv1.weight.requires_grad


def test_unet_and_mil_round_trip(tmp_path):
    torch.manual_seed(0)
    unet = build_unet("resnet18", encoder_weights=None)
    mil = build_mil_mobilenet(weights=None)
    _save(tmp_path / "unet.pt", unet, "unet", ["nucleus"])
    _save(tmp_path / "mil.pt", mil, "mil", ["poor", "good"])
    unet2, _ = load_checkpoint(tmp_path / "unet.pt", expected_kind="unet")
    mil2, meta = load_checkpoint(tmp_path / "mil.pt", expected_kind="mil")
    x = torch.randn(1, 3, 32, 32)
    b = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(unet2(x), unet(x))
        assert torch.equal(mil2(b), mil(b))
    assert meta["architecture"] == {"in_channels": 4, "dropout": 0.2}


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"model checkpoint .*absent\.pt.*does not exist"):
        load_checkpoint(tmp_path / "absent.pt", expected_kind="mil")


def test_truncated_file(tissue_ckpt):
    path, _ = tissue_ckpt
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated or corrupt") as info:
        load_checkpoint(path, expected_kind="tissue_classifier")
    assert "re-run the training rule" in str(info.value)


def test_garbage_file(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"\x00\x01 not a model")
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_checkpoint(path, expected_kind="unet")


def test_bare_state_dict(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save(build_mil_mobilenet(weights=None).state_dict(), path)
    with pytest.raises(InputError, match="not a histoprog checkpoint"):
        load_checkpoint(path, expected_kind="mil")


def test_wrong_classes_lists_both(tissue_ckpt):
    path, _ = tissue_ckpt
    config_classes = ["ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"]
    with pytest.raises(InputError) as info:
        load_checkpoint(
            path, expected_kind="tissue_classifier", expected_class_names=config_classes
        )
    message = str(info.value)
    assert str(CLASSES) in message and str(config_classes) in message


def test_class_order_matters(tissue_ckpt):
    path, _ = tissue_ckpt
    with pytest.raises(InputError, match="same order"):
        load_checkpoint(path, expected_kind="tissue_classifier", expected_class_names=CLASSES[::-1])


def test_wrong_kind(tissue_ckpt):
    path, _ = tissue_ckpt
    with pytest.raises(InputError, match=r"holds a tissue classifier .*'mil'.* is needed"):
        load_checkpoint(path, expected_kind="mil")


def test_mil_with_wrong_input_channels(tmp_path):
    model = build_mil_mobilenet(weights=None, in_channels=3)
    _save(tmp_path / "rgb_mil.pt", model, "mil")
    with pytest.raises(
        InputError, match=r"taking 3 input channels, but 4 \(RGB \+ nuclei heat map\)"
    ):
        load_checkpoint(tmp_path / "rgb_mil.pt", expected_kind="mil")
    loaded, _ = load_checkpoint(
        tmp_path / "rgb_mil.pt", expected_kind="mil", expected_in_channels=3
    )
    assert loaded.features[0][0].in_channels == 3


def test_unet_with_wrong_input_channels(tmp_path):
    model = build_unet("resnet18", encoder_weights=None, in_channels=4)
    _save(tmp_path / "unet4.pt", model, "unet")
    with pytest.raises(InputError, match="heat-map model.*taking 4 input channels, but 3"):
        load_checkpoint(tmp_path / "unet4.pt", expected_kind="unet")


def test_state_dict_not_matching_architecture(tmp_path):
    model = build_tissue_classifier(7, "resnet18", weights=None)
    path = tmp_path / "x.pt"
    _save(path, model, "tissue_classifier", CLASSES)
    payload = torch.load(path, weights_only=True)
    payload["architecture"]["num_classes"] = 9
    payload["class_names"] = [str(i) for i in range(9)]
    torch.save(payload, path)
    with pytest.raises(InputError, match=r"do not fit its recorded architecture.*fc\.6\.weight"):
        load_checkpoint(path, expected_kind="tissue_classifier")


def test_save_checks_class_count_and_architecture(tmp_path):
    model = build_tissue_classifier(7, "resnet18", weights=None)
    with pytest.raises(ValueError, match="6 class names for a 7-class"):
        _save(tmp_path / "a.pt", model, "tissue_classifier", CLASSES[:6])
    with pytest.raises(ValueError, match="does not match architecture"):
        save_checkpoint(
            tmp_path / "b.pt",
            model,
            kind="tissue_classifier",
            architecture={"backbone": "resnet34", "num_classes": 7},
            class_names=CLASSES,
            normalisation={},
            config={},
            metrics={},
        )
    assert not list(tmp_path.iterdir())


def test_saving_twice_gives_identical_bytes(tissue_ckpt, tmp_path):
    path, model = tissue_ckpt
    again = tmp_path / "elsewhere" / "copy.pt"
    _save(again, model, "tissue_classifier", CLASSES)
    assert file_sha256(again) == file_sha256(path)


def test_stage_two_from_stage_one_checkpoint(tmp_path):
    from histoprog.models import reinit_head

    crc = ["ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"]
    torch.manual_seed(0)
    stage1 = build_tissue_classifier(9, "resnet18", weights=None)
    _save(tmp_path / "crc.pt", stage1, "tissue_classifier", crc)
    model, _ = load_checkpoint(tmp_path / "crc.pt", expected_kind="tissue_classifier")
    reinit_head(model, 7)
    assert torch.equal(model.fc[3].weight, stage1.fc[3].weight)
    assert torch.equal(model.layer2[0].conv1.weight, stage1.layer2[0].conv1.weight)
    _save(tmp_path / "crlm.pt", model, "tissue_classifier", CLASSES)
    load_checkpoint(
        tmp_path / "crlm.pt", expected_kind="tissue_classifier", expected_class_names=CLASSES
    )
