"""Tests for histoprog.models.tissue: head, freezing, frozen batch norm, stage-2 head."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from histoprog.errors import InputError
from histoprog.models import build_tissue_classifier, reinit_head, train_mode

torch.set_num_threads(1)


def _trainable(model):
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_resnet50_head_and_freezing():
    model = build_tissue_classifier(9, "resnet50", weights=None)
    linears = [m for m in model.fc if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (2048, 1024),
        (1024, 256),
        (256, 9),
    ]
    kinds = [type(m).__name__ for m in model.fc]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert all(m.p == 0.5 for m in model.fc if isinstance(m, nn.Dropout))
    trainable = _trainable(model)
    assert trainable and all(n.startswith(("layer4.", "fc.")) for n in trainable)
    assert {n for n, _ in model.named_parameters() if n.startswith(("layer4.", "fc."))} == trainable
    assert model.training is False  # built in eval mode


def test_resnet18_head_width():
    model = build_tissue_classifier(7, "resnet18", weights=None)
    assert model.fc[0].in_features == 512
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_training_step_keeps_frozen_parts():
    torch.manual_seed(0)
    model = build_tissue_classifier(3, "resnet18", weights=None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    assert model.training and model.layer4.training and model.fc.training
    assert not model.bn1.training and not model.layer3[1].bn2.training
    assert model.layer4[0].bn1.training
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 0])
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    after = model.state_dict()
    frozen = [k for k in after if not k.startswith(("layer4.", "fc."))]
    assert any("running_mean" in k for k in frozen)
    for key in frozen:  # weights and batch-norm running stats of frozen parts
        assert torch.equal(after[key], before[key]), key
    assert not torch.equal(after["layer4.0.conv1.weight"], before["layer4.0.conv1.weight"])
    assert not torch.equal(after["layer4.0.bn1.running_mean"], before["layer4.0.bn1.running_mean"])
    assert not torch.equal(after["fc.6.weight"], before["fc.6.weight"])


def test_train_mode_helper_on_plain_module():
    model = torchvision.models.resnet18()
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("layer4"))
    train_mode(model)
    assert model.training and model.layer4[0].bn1.training
    assert not model.bn1.training and not model.layer1[0].bn1.training


def test_reinit_head_keeps_backbone_and_hidden_layers():
    torch.manual_seed(1)
    model = build_tissue_classifier(9, "resnet18", weights=None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reinit_head(model, 7)
    after = model.state_dict()
    assert model.num_classes == 7
    assert after["fc.6.weight"].shape == (7, 256) and after["fc.6.bias"].shape == (7,)
    assert set(after) == set(before)
    for key in after:
        if not key.startswith("fc.6."):
            assert torch.equal(after[key], before[key]), key
    assert model.fc[6].weight.requires_grad
    assert {n for n, p in model.named_parameters() if p.requires_grad} >= {"fc.6.weight"}
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)


@pytest.mark.parametrize("bad", [1, 0, 2.5, True])
def test_bad_class_count(bad):
    with pytest.raises(InputError, match="number of tissue classes"):
        build_tissue_classifier(bad, "resnet18", weights=None)


def test_unknown_backbone():
    with pytest.raises(InputError, match="backbone 'vgg16'.*resnet50"):
        build_tissue_classifier(3, "vgg16", weights=None)
