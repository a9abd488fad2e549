"""MobileNetV2 multiple-instance model for HCC slides (METHODS 6.3-6.5; the HCC paper's Eq. 2-4).

Tiles enter as 4 channels (ImageNet-normalised RGB + nuclei heat map); each gives one logit
``z_i``. The slide score is ``S = sigmoid(T)`` with ``T`` the signed generalised mean of the
logits; a slide is high risk when ``S >= t`` (t = 0.4457).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from histoprog.defaults import default
from histoprog.errors import InputError
from histoprog.models.nets import MobileNetV2
from histoprog.models.weights import WeightsSpec, load_weights, resolve_weights

THRESHOLD: float = default("hcc.mil.threshold")
POWER: int = default("hcc.mil.power")
L2: float = default("hcc.mil.l2")
IN_CHANNELS = 4


def build_mil_mobilenet(
    weights: WeightsSpec = "imagenet", in_channels: int = IN_CHANNELS, dropout: float = 0.2
) -> MobileNetV2:
    """Build a MobileNetV2 taking ``in_channels`` channels and giving one logit per tile.

    The first conv (``features[0][0]``) keeps the (pretrained) RGB filters for channels 0-2;
    every further channel is initialised to their mean over the RGB input channels (also with
    random init, so the heat-map channel starts on the scale of the others). The classifier is
    Dropout(``dropout``) - Linear(1280, 1) (torchvision's, with one output).

    Args:
        weights: ``"imagenet"`` (torch hub cache; warns and uses random init when absent),
            a path to a 3-channel MobileNetV2 state dict, or ``None``.
        in_channels: input channels; 4 = RGB + heat map (published); 3 gives plain RGB.
        dropout: dropout before the final linear layer.

    Returns:
        The model in eval mode; ``model(x)`` maps ``(N, C, H, W)`` to ``(N, 1)`` logits.
    """
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 3:
        raise InputError(
            "MIL model input channels",
            f"is {in_channels!r}; need an integer >= 3 (RGB first)",
            "use 4 (RGB + nuclei heat map)",
        )
    model = MobileNetV2(dropout=dropout)  # torchvision's layout and init, see models.nets
    state, source = resolve_weights(weights, "mobilenet_v2")
    if state is not None:
        load_weights(model, state, source=source, optional_prefixes=("classifier.",))
    model.features[0][0] = expand_input_conv(model.features[0][0], in_channels)
    last = model.classifier[-1]
    head = nn.Linear(last.in_features, 1)
    nn.init.normal_(head.weight, 0, 0.01)  # torchvision's init for MobileNetV2's classifier
    nn.init.zeros_(head.bias)
    model.classifier[-1] = head
    model.init_source = source
    model.in_channels = in_channels
    return model.eval()


def expand_input_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """Copy a 3-channel conv to ``in_channels``; extra channels = mean of the RGB filters."""
    if conv.in_channels != 3 or conv.groups != 1:
        raise ValueError("expand_input_conv needs an ungrouped 3-channel convolution")
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        rgb = conv.weight
        new.weight[:, :3] = rgb
        new.weight[:, 3:] = rgb.mean(dim=1, keepdim=True)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def signed_generalised_mean(
    z: torch.Tensor, p: int = POWER, dim: int = -1, eps: float = 1e-6
) -> torch.Tensor:
    """``T = sign(m) |m|^(1/p)`` with ``m = mean_i(z_i^p)`` over ``dim`` (the HCC paper's Eq. 2).

    The value is exact. The derivative of ``|m|^(1/p)`` is infinite at ``m = 0``; for
    ``|m| < eps`` the gradient uses the slope at ``eps`` instead (finite, at most
    ``eps^(1/p - 1) / p``), so bags whose mean crosses zero do not produce inf/NaN.

    Args:
        z: tile logits.
        p: a positive integer power (3 published); odd keeps the sign of the logits.
        dim: the tile dimension.
        eps: where the gradient is capped.
    """
    if isinstance(p, bool) or not isinstance(p, int) or p < 1:
        raise InputError(
            "generalised-mean power p",
            f"is {p!r}; it must be a positive integer",
            "use p = 3 (published)",
        )
    if z.shape[dim] == 0:
        raise InputError("MIL bag", "has no tiles", "give the slide at least one tissue tile")
    m = z.pow(p).mean(dim=dim)
    if p == 1:
        return m
    magnitude = m.detach().abs()
    value = torch.sign(m.detach()) * magnitude.pow(1.0 / p)
    slope = magnitude.clamp_min(eps).pow(1.0 / p - 1.0) / p
    return value + (m - m.detach()) * slope


def mil_good_probability(score: torch.Tensor, t: float = THRESHOLD) -> torch.Tensor:
    """Eq. 3: probability of the good outcome from the slide score ``S``.

    ``p = 0.5 (1 + (t - S)/t)`` for ``S <= t``, else ``p = 0.5 (1 - (S - t)/(1 - t))``:
    1 at S = 0, 0.5 at S = t, 0 at S = 1, linear in between.
    """
    _check_t(t)
    low = 0.5 * (1 + (t - score) / t)
    high = 0.5 * (1 - (score - t) / (1 - t))
    return torch.where(score <= t, low, high)


def l2_penalty(model: nn.Module, scope: str = "weights") -> torch.Tensor:
    """Sum of squared trainable parameters.

    ``scope="weights"`` (default) counts conv and linear kernels (parameters with more than
    one dimension), leaving biases and batch-norm scales/shifts unpenalised; ``"all"`` counts
    every trainable parameter.
    """
    if scope not in {"weights", "all"}:
        raise ValueError(f"scope must be 'weights' or 'all', not {scope!r}")
    params = [p for p in model.parameters() if p.requires_grad and (scope == "all" or p.ndim > 1)]
    if not params:
        return torch.zeros(())
    return torch.stack([p.pow(2).sum() for p in params]).sum()


class MilLoss(nn.Module):
    """Eq. 4: ``BCE(p(S), y) + l2 * sum w^2``; ``y = 1`` for a good outcome.

    The cross-entropy is averaged over the slides given (one per step in the paper); log
    terms are clamped at -100 (PyTorch's BCE), so S = 0 or 1 gives a finite loss.

    Args:
        t: the score threshold (0.4457).
        l2: the regularisation factor alpha (0.02).
        l2_scope: which parameters the penalty counts, see :func:`l2_penalty`.
    """

    def __init__(self, t: float = THRESHOLD, l2: float = L2, l2_scope: str = "weights") -> None:
        super().__init__()
        _check_t(t)
        self.t = t
        self.l2 = l2
        self.l2_scope = l2_scope

    def parts(
        self,
        score: torch.Tensor,
        target: torch.Tensor,
        model: nn.Module | None = None,
        weight: torch.Tensor | float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cross_entropy, l2 * penalty)``; the penalty is 0 without a model.

        ``weight`` multiplies each slide's cross-entropy before the mean (class weights).
        """
        prob = mil_good_probability(score, self.t).clamp(0.0, 1.0)
        y = torch.as_tensor(target, dtype=prob.dtype, device=prob.device).reshape(prob.shape)
        w = None
        if weight is not None:
            w = torch.as_tensor(weight, dtype=prob.dtype, device=prob.device).expand(prob.shape)
        bce = F.binary_cross_entropy(prob, y, weight=w)
        if model is None or self.l2 == 0:
            reg = torch.zeros((), dtype=bce.dtype, device=bce.device)
        else:
            reg = self.l2 * l2_penalty(model, self.l2_scope).to(bce.device)
        return bce, reg

    def forward(
        self, score: torch.Tensor, target: torch.Tensor, model: nn.Module | None = None
    ) -> torch.Tensor:
        """Total loss for slide scores ``S`` (any shape) and labels ``y`` of the same size."""
        bce, reg = self.parts(score, target, model)
        return bce + reg


def slide_score(
    model: nn.Module, bag: torch.Tensor, p: int = POWER, chunk_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Score one slide from a bag of tiles.

    Args:
        model: the MIL MobileNetV2 (used in whatever mode it is in).
        bag: ``(N, C, H, W)`` tiles, C = the model's input channels.
        p: the generalised-mean power.
        chunk_size: run the tiles through the model this many at a time (for large bags at
            inference; with batch norm in train mode chunks change the batch statistics).

    Returns:
        ``(S, z)``: the slide score ``sigmoid(T)`` (0-dim tensor) and the ``(N,)`` tile logits.
    """
    expected = getattr(model, "in_channels", None)
    if bag.ndim != 4 or (expected is not None and bag.shape[1] != expected):
        raise InputError(
            "MIL bag",
            f"has shape {tuple(bag.shape)}; expected (tiles, {expected or 'C'}, height, width)",
            "stack RGB and the nuclei heat map as channels of each tile",
        )
    if bag.shape[0] == 0:
        raise InputError("MIL bag", "has no tiles", "give the slide at least one tissue tile")
    if chunk_size is None or chunk_size >= bag.shape[0]:
        z = model(bag).reshape(-1)
    else:
        z = torch.cat([model(c).reshape(-1) for c in torch.split(bag, chunk_size)])
    return torch.sigmoid(signed_generalised_mean(z, p)), z


def _check_t(t: float) -> None:
    if not (isinstance(t, int | float) and 0 < t < 1 and math.isfinite(t)):
        raise InputError(
            "MIL threshold t",
            f"is {t!r}; it must lie strictly between 0 and 1",
            "use 0.4457 (published)",
        )
