"""Nuclei U-net (segmentation-models-pytorch) and its Dice loss (METHODS 6.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from histoprog.errors import InputError
from histoprog.models.weights import (
    TORCHVISION_FILES,
    WeightsSpec,
    is_imagenet,
    load_weights,
    resolve_weights,
)

if TYPE_CHECKING:
    import segmentation_models_pytorch as smp

#: encoders whose ImageNet weights can be resolved offline (torchvision ResNet layouts)
OFFLINE_IMAGENET_ENCODERS = tuple(k for k in TORCHVISION_FILES if k.startswith("resnet"))


def build_unet(
    encoder: str = "resnet34", encoder_weights: WeightsSpec = "imagenet", in_channels: int = 3
) -> smp.Unet:
    """Build ``smp.Unet(encoder, classes=1)``; the output is one logit map per image.

    smp is always built with ``encoder_weights=None`` (it would download); ImageNet weights
    come from the torch hub cache through :func:`histoprog.models.weights.resolve_weights`
    (warning and random init when absent), a path gives an encoder state dict.

    Args:
        encoder: smp encoder name; ``resnet34`` is the published choice. ``"imagenet"``
            works offline for ``resnet18``/``resnet34``/``resnet50``.
        encoder_weights: ``"imagenet"``, a state-dict path, or ``None``.
        in_channels: input channels (3 = RGB).

    Returns:
        The model in eval mode, with ``init_source`` and ``encoder_name`` attributes.
    """
    import segmentation_models_pytorch as smp  # lazy: ~0.5 s, only jobs that build a U-net

    try:
        model = smp.Unet(
            encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=1
        )
    except KeyError:
        raise InputError(
            f"U-net encoder '{encoder}'",
            "is not an encoder segmentation-models-pytorch knows",
            "use 'resnet34' (published) or another smp encoder name",
        ) from None
    if is_imagenet(encoder_weights) and encoder not in OFFLINE_IMAGENET_ENCODERS:
        raise InputError(
            f"U-net encoder '{encoder}' with encoder_weights 'imagenet'",
            "has no offline ImageNet weights lookup",
            f"use one of {list(OFFLINE_IMAGENET_ENCODERS)}, a weights file path, or 'none'",
        )
    state, source = resolve_weights(encoder_weights, encoder)
    if state is not None:
        load_weights(model.encoder, state, source=source, optional_prefixes=("fc.",))
    model.init_source = source
    model.encoder_name = encoder
    return model.eval()


class DiceLoss(nn.Module):
    """Soft Dice loss ``1 - 2 (sum p y + eps) / (sum p + sum y + eps)`` on sigmoid probabilities.

    The sums run over the whole batch (every pixel of every image), as in METHODS 6.1, so
    an image with an empty mask does not get a loss of its own; ``per_image=True`` instead
    averages the per-image losses. Note the formula as published: with ``p = y = 0``
    everywhere it gives ``-1``; sigmoid outputs are never exactly 0, so that cannot happen
    in training.

    Args:
        eps: smoothing constant (1e-8).
        from_logits: apply a sigmoid to the input first (default; the U-net gives logits).
        per_image: sum per image and average the losses instead of summing over the batch.
    """

    def __init__(self, eps: float = 1e-8, from_logits: bool = True, per_image: bool = False):
        super().__init__()
        self.eps = eps
        self.from_logits = from_logits
        self.per_image = per_image

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss for logits (or probabilities) and a binary target of the same shape."""
        if prediction.shape != target.shape:
            raise ValueError(
                f"prediction shape {tuple(prediction.shape)} != target shape {tuple(target.shape)}"
            )
        p = torch.sigmoid(prediction) if self.from_logits else prediction
        y = target.to(p.dtype)
        dims = tuple(range(1, p.ndim)) if self.per_image else tuple(range(p.ndim))
        inter = (p * y).sum(dims)
        denom = p.sum(dims) + y.sum(dims)
        loss = 1 - 2 * (inter + self.eps) / (denom + self.eps)
        return loss.mean()


def dice_coefficient(
    probability: torch.Tensor, target: torch.Tensor, threshold: float = 0.5, eps: float = 1e-8
) -> float:
    """Hard Dice score of ``probability >= threshold`` vs a binary target, over all pixels.

    For validation reports. Returns 1.0 when both the prediction and the target are empty.
    """
    pred = probability >= threshold
    truth = target.bool()
    inter = (pred & truth).sum().item()
    total = pred.sum().item() + truth.sum().item()
    if total == 0:
        return 1.0
    return float(2 * inter / (total + eps))
