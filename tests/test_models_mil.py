"""Tests for histoprog.models.mil: 4-channel MobileNetV2, generalised mean, Eq. 3-4 loss."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn

from histoprog.errors import InputError
from histoprog.hcc.mil import start_at_threshold
from histoprog.models import (
    MilLoss,
    build_mil_mobilenet,
    mil_good_probability,
    signed_generalised_mean,
    slide_score,
)
from histoprog.models import weights as W
from histoprog.models.mil import l2_penalty

torch.set_num_threads(1)
T = 0.4457


@pytest.fixture
def hub(tmp_path, monkeypatch):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.setattr(W, "_find_smp_hub_file", lambda arch: None)
    yield tmp_path / "hub" / "checkpoints"
    torch.hub.set_dir(old)


def test_four_channel_conv_from_imagenet(hub):
    torch.manual_seed(0)
    source = torchvision.models.mobilenet_v2().state_dict()
    hub.mkdir(parents=True)
    torch.save(source, hub / "mobilenet_v2-b0353104.pth")
    model = build_mil_mobilenet(weights="imagenet")
    assert model.init_source.startswith("imagenet:")
    w = model.features[0][0].weight
    rgb = source["features.0.0.weight"]
    assert w.shape == (32, 4, 3, 3)
    assert torch.equal(w[:, :3], rgb)
    assert torch.allclose(w[:, 3], rgb.mean(dim=1))
    assert torch.equal(model.features[5].conv[0][0].weight, source["features.5.conv.0.0.weight"])
    assert model.classifier[-1].out_features == 1


def test_four_channel_conv_random_init():
    model = build_mil_mobilenet(weights=None)
    w = model.features[0][0].weight
    assert torch.allclose(w[:, 3], w[:, :3].mean(dim=1))
    assert model(torch.randn(2, 4, 32, 32)).shape == (2, 1)


def _formula(z):
    m = sum(v**3 for v in z) / len(z)
    return math.copysign(abs(m) ** (1 / 3), m)


@pytest.mark.parametrize(
    "z",
    [[2.0], [-2.0], [0.5, 1.5], [-0.5, -1.5, -0.2], [1.0, 2.0, -3.0], [0.3, -0.1, 4.0, -2.5, 0.0]],
)
def test_signed_generalised_mean_matches_formula(z):
    value = signed_generalised_mean(torch.tensor(z, dtype=torch.float64))
    assert value.item() == pytest.approx(_formula(z), rel=1e-12)


def test_signed_generalised_mean_gradient_matches_naive():
    z = torch.tensor([1.0, 2.0, -3.0, 0.5], dtype=torch.float64, requires_grad=True)
    signed_generalised_mean(z).backward()
    z2 = z.detach().clone().requires_grad_(True)
    m = z2.pow(3).mean()
    (torch.sign(m) * m.abs().pow(1 / 3)).backward()
    assert torch.allclose(z.grad, z2.grad)


@pytest.mark.parametrize("z", [[0.0], [0.0, 0.0, 0.0], [1.0, -1.0], [2.0, -1.0, -1.0, 0.0]])
def test_signed_generalised_mean_gradient_finite_at_zero(z):
    zt = torch.tensor(z, requires_grad=True)
    value = signed_generalised_mean(zt)
    assert value.item() == pytest.approx(_formula(z), abs=1e-6)
    value.backward()
    assert torch.isfinite(zt.grad).all()


def test_signed_generalised_mean_batched_dim():
    z = torch.tensor([[1.0, 2.0], [-1.0, -2.0]])
    out = signed_generalised_mean(z, dim=1)
    assert out.shape == (2,)
    assert out[0].item() == pytest.approx(_formula([1, 2]), rel=1e-6)
    assert out[1].item() == pytest.approx(-_formula([1, 2]), rel=1e-6)


def test_signed_generalised_mean_rejects_bad_power():
    with pytest.raises(InputError, match="power p"):
        signed_generalised_mean(torch.ones(2), p=2.5)


@pytest.mark.parametrize(
    ("s", "p"), [(0.0, 1.0), (T / 2, 0.75), (T, 0.5), ((1 + T) / 2, 0.25), (1.0, 0.0)]
)
def test_good_probability(s, p):
    assert mil_good_probability(torch.tensor(s, dtype=torch.float64), T).item() == pytest.approx(
        p, abs=1e-12
    )


@pytest.mark.parametrize(
    ("s", "y", "expected"),
    [
        (T, 1.0, math.log(2)),
        (T, 0.0, math.log(2)),
        (0.0, 1.0, 0.0),
        (1.0, 0.0, 0.0),
        (0.0, 0.0, 100.0),  # log(0) is clamped at -100 as in torch's BCE
        (T / 2, 1.0, -math.log(0.75)),
        ((1 + T) / 2, 0.0, -math.log(0.75)),
    ],
)
def test_loss_hand_values_without_penalty(s, y, expected):
    loss = MilLoss(t=T, l2=0.02)(torch.tensor([s], dtype=torch.float64), torch.tensor([y]))
    assert loss.item() == pytest.approx(expected, abs=1e-9)


def test_loss_l2_term():
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0]]))
        layer.bias.fill_(3.0)
    s, y = torch.tensor([T]), torch.tensor([1.0])
    assert MilLoss()(s, y, layer).item() == pytest.approx(math.log(2) + 0.02 * 5, rel=1e-6)
    loss_all = MilLoss(l2_scope="all")(s, y, layer)
    assert loss_all.item() == pytest.approx(math.log(2) + 0.02 * 14, rel=1e-6)
    bce, reg = MilLoss(l2=0.1).parts(s, y, layer)
    assert bce.item() == pytest.approx(math.log(2), rel=1e-6)
    assert reg.item() == pytest.approx(0.5, rel=1e-6)
    layer.weight.requires_grad_(False)  # frozen parameters are not penalised
    assert l2_penalty(layer, "all").item() == pytest.approx(9.0)


def test_slide_score_and_training_step():
    torch.manual_seed(0)
    model = build_mil_mobilenet(weights=None)
    bag = torch.randn(3, 4, 32, 32)
    s, z = slide_score(model, bag)
    assert s.ndim == 0 and z.shape == (3,)
    assert torch.allclose(z, model(bag).reshape(-1))
    assert s.item() == pytest.approx(torch.sigmoid(signed_generalised_mean(z)).item())
    s_chunked, z_chunked = slide_score(model, bag, chunk_size=2)
    assert torch.allclose(z_chunked, z) and torch.allclose(s_chunked, s)
    model.train()
    s, _ = slide_score(model, bag)
    loss = MilLoss()(s.reshape(1), torch.tensor([0.0]), model)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_slide_score_rejects_three_channel_bag():
    model = build_mil_mobilenet(weights=None)
    with pytest.raises(InputError, match=r"MIL bag.*\(tiles, 4, height, width\)"):
        slide_score(model, torch.randn(2, 3, 32, 32))


def test_threshold_must_be_in_unit_interval():
    with pytest.raises(InputError, match="threshold t"):
        MilLoss(t=1.5)


def test_head_starts_at_the_threshold():
    """With the head bias at logit(t), a fresh model scores every bag close to t."""
    torch.manual_seed(0)
    model = build_mil_mobilenet(None).eval()
    start_at_threshold(model, T)
    with torch.inference_mode():
        s, _ = slide_score(model, torch.randn(6, 4, 64, 64))
    assert float(s) == pytest.approx(T, abs=0.02)
