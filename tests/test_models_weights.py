"""Tests for histoprog.models.weights: offline ImageNet lookup, files, random init."""

from __future__ import annotations

import warnings

import pytest
import torch
import torchvision

from histoprog.errors import InputError
from histoprog.models import build_mil_mobilenet, build_tissue_classifier, build_unet
from histoprog.models import weights as W

torch.set_num_threads(1)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub dir (and no smp Hugging Face cache); restored afterwards."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.setattr(W, "_find_smp_hub_file", lambda arch: None)
    yield tmp_path / "hub" / "checkpoints"
    torch.hub.set_dir(old)


def _cache(hub_dir, name, state):
    hub_dir.mkdir(parents=True, exist_ok=True)
    torch.save(state, hub_dir / name)
    return hub_dir / name


@pytest.mark.parametrize(
    ("build", "filename"),
    [
        (lambda: build_tissue_classifier(9, "resnet18"), "resnet18-f37072fd.pth"),
        (lambda: build_tissue_classifier(9, "resnet50"), "resnet50-0676ba61.pth"),
        (lambda: build_unet("resnet34"), "resnet34-b627a593.pth"),
        (lambda: build_mil_mobilenet(), "mobilenet_v2-b0353104.pth"),
    ],
)
def test_missing_imagenet_warns_and_falls_back(hub, build, filename):
    with pytest.warns(UserWarning, match="not cached") as record:
        model = build()
    message = str(record[0].message)
    assert filename in message
    assert str(hub) in message  # where to put it
    assert "random initialisation" in message
    assert model.init_source.startswith("random")


def test_resolve_none_is_random_without_warning(hub):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for spec in (None, "none", "None"):
            assert W.resolve_weights(spec, "resnet18") == (None, "random")


def test_cached_imagenet_file_is_loaded_into_backbone(hub):
    torch.manual_seed(0)
    source = torchvision.models.resnet18().state_dict()  # has a 1000-class fc
    path = _cache(hub, "resnet18-f37072fd.pth", source)
    model = build_tissue_classifier(7, "resnet18", weights="imagenet")
    assert model.init_source == f"imagenet:{path}"
    state = model.state_dict()
    for key in ("conv1.weight", "layer1.0.bn1.running_var", "layer4.1.conv2.weight"):
        assert torch.equal(state[key], source[key])
    assert state["fc.6.weight"].shape == (7, 256)


def test_cached_imagenet_for_unet_encoder(hub):
    torch.manual_seed(0)
    source = torchvision.models.resnet18().state_dict()
    _cache(hub, "resnet18-f37072fd.pth", source)
    model = build_unet("resnet18", encoder_weights="imagenet")
    assert torch.equal(model.encoder.conv1.weight, source["conv1.weight"])
    assert torch.equal(
        model.encoder.layer3[0].bn2.running_mean, source["layer3.0.bn2.running_mean"]
    )


def test_preferred_imagenet_file_first(hub):
    hub.mkdir(parents=True)
    (hub / "resnet50-11ad3fa6.pth").write_bytes(b"")
    assert W.find_imagenet_file("resnet50") == hub / "resnet50-11ad3fa6.pth"
    (hub / "resnet50-0676ba61.pth").write_bytes(b"")
    assert W.find_imagenet_file("resnet50") == hub / "resnet50-0676ba61.pth"
    assert W.expected_imagenet_path("resnet50") == hub / "resnet50-0676ba61.pth"


def test_weights_from_path(tmp_path, hub):
    source = torchvision.models.resnet18().state_dict()
    path = tmp_path / "backbone.pt"
    torch.save({"state_dict": source}, path)  # a wrapped state dict is accepted too
    model = build_tissue_classifier(3, "resnet18", weights=path)
    assert model.init_source == f"file:{path}"
    assert torch.equal(model.conv1.weight, source["conv1.weight"])


def test_missing_weights_path(tmp_path):
    with pytest.raises(InputError, match=r"weights file .*nope\.pt.*does not exist"):
        W.resolve_weights(tmp_path / "nope.pt", "resnet18")


def test_corrupt_weights_file(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputError, match="truncated, corrupt"):
        W.resolve_weights(path, "resnet18")


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(InputError, match="does not hold a state dict"):
        W.resolve_weights(path, "resnet18")


def test_weights_of_other_architecture(tmp_path):
    path = tmp_path / "r34.pt"
    torch.save(torchvision.models.resnet34().state_dict(), path)
    with pytest.raises(InputError, match="do not fit the TissueClassifier"):
        build_tissue_classifier(3, "resnet18", weights=path)


def test_unknown_architecture():
    with pytest.raises(InputError, match="no known ImageNet weights"):
        W.resolve_weights("imagenet", "vgg16")


@pytest.mark.parametrize(
    ("arch", "filename"),
    [("resnet50", "resnet50-0676ba61.pth"), ("mobilenet_v2", "mobilenet_v2-b0353104.pth")],
)
def test_required_imagenet_weights_stop_when_absent(hub, arch, filename):
    with pytest.raises(InputError) as err:
        W.require_cached_imagenet("imagenet", arch)
    message = str(err.value)
    assert filename in message and str(hub) in message
    assert "require_imagenet_weights: false" in message
    W.require_cached_imagenet("none", arch)  # nothing asked for, nothing required
    _cache(hub, filename, {"x": torch.zeros(1)})
    W.require_cached_imagenet("imagenet", arch)  # cached: passes


def test_train_command_stops_before_training_without_required_weights(hub, tmp_path, capsys):
    from histoprog.cli import main

    assert (
        main(
            ["train_tissue", "--patches", str(tmp_path / "absent"), "--classes", "A", "B",
             "--backbone", "resnet18", "--weights", "imagenet", "--require-weights",
             "--out-model", str(tmp_path / "m.pt"), "--out-history", str(tmp_path / "h.tsv"),
             "--out-curve", str(tmp_path / "c.png")]
        )
        == 2
    )  # fmt: skip
    assert "ImageNet weights for resnet18: are not cached" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()
