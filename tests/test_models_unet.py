"""Tests for histoprog.models.unet: the U-net and the Dice loss."""

from __future__ import annotations

import pytest
import torch

from histoprog.errors import InputError
from histoprog.models import DiceLoss, build_unet, dice_coefficient

torch.set_num_threads(1)

P = torch.tensor([[[[0.8, 0.2], [0.6, 0.1]]], [[[0.3, 0.9], [0.0, 0.5]]]])
Y = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]], [[[0.0, 1.0], [0.0, 0.0]]]])


def test_dice_loss_over_batch_hand_value():
    # sum p y = 0.8 + 0.6 + 0.9 = 2.3; sum p = 1.7 + 1.7 = 3.4; sum y = 3
    expected = 1 - 2 * (2.3 + 1e-8) / (3.4 + 3 + 1e-8)
    loss = DiceLoss(from_logits=False)(P, Y)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.28125, rel=1e-6)


def test_dice_loss_per_image_hand_value():
    first = 1 - 2 * 1.4 / (1.7 + 2)
    second = 1 - 2 * 0.9 / (1.7 + 1)
    loss = DiceLoss(from_logits=False, per_image=True)(P, Y)
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-6)


def test_dice_loss_from_logits_and_gradient():
    probs = P.clamp(1e-4, 1 - 1e-4)
    logits = torch.logit(probs).requires_grad_(True)
    loss = DiceLoss()(logits, Y)
    assert loss.item() == pytest.approx(DiceLoss(from_logits=False)(probs, Y).item(), rel=1e-5)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_dice_loss_perfect_prediction_is_about_zero():
    assert DiceLoss(from_logits=False)(Y, Y).item() == pytest.approx(0.0, abs=1e-7)


def test_dice_loss_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        DiceLoss()(P, Y[:1])


def test_dice_coefficient():
    # pred >= 0.5: [1,0,1,0] and [0,1,0,1]; truth [1,0,1,0], [0,1,0,0] -> 2*3/(4+3)
    assert dice_coefficient(P, Y) == pytest.approx(6 / 7)
    assert dice_coefficient(torch.zeros(2, 2), torch.zeros(2, 2)) == 1.0


def test_build_unet_shapes():
    torch.manual_seed(0)
    model = build_unet("resnet18", encoder_weights=None)
    assert model.init_source == "random" and not model.training
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1, 64, 64)


def test_build_unet_default_encoder_is_resnet34():
    model = build_unet(encoder_weights=None)
    assert model.encoder_name == "resnet34"
    assert len(model.encoder.layer3) == 6


def test_unknown_encoder():
    with pytest.raises(InputError, match="encoder 'nonsense'"):
        build_unet("nonsense", encoder_weights=None)
