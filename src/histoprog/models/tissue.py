"""Tissue classifier for CRLM tiles: ResNet + the published MLP head (METHODS 3).

The ResNet is :mod:`histoprog.models.nets`' copy of torchvision's layout (same state-dict
keys, same random initialisation), so inference does not import torchvision.

The model outputs logits; apply ``softmax`` for class probabilities (the training loss is
cross-entropy on logits). Only ``layer4`` and the head (``fc``) are trainable; every other
parameter is frozen and the frozen batch-norm layers stay in eval mode in training, so their
running statistics never change.
"""

from __future__ import annotations

from torch import nn

from histoprog.errors import InputError
from histoprog.models.nets import BasicBlock, Bottleneck, ResNet
from histoprog.models.weights import WeightsSpec, load_weights, resolve_weights

#: backbone -> (block, layers, feature width F)
BACKBONES: dict[str, tuple[type[BasicBlock] | type[Bottleneck], list[int], int]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2], 512),
    "resnet34": (BasicBlock, [3, 4, 6, 3], 512),
    "resnet50": (Bottleneck, [3, 4, 6, 3], 2048),
}

#: names of the top-level children that are trained; the rest is frozen
TRAINABLE = ("layer4", "fc")

HIDDEN = (1024, 256)
DROPOUT = 0.5


def make_head(in_features: int, num_classes: int) -> nn.Sequential:
    """Linear(F,1024)-ReLU-Dropout(0.5)-Linear(1024,256)-ReLU-Dropout(0.5)-Linear(256,K)."""
    return nn.Sequential(
        nn.Linear(in_features, HIDDEN[0]),
        nn.ReLU(inplace=True),
        nn.Dropout(DROPOUT),
        nn.Linear(HIDDEN[0], HIDDEN[1]),
        nn.ReLU(inplace=True),
        nn.Dropout(DROPOUT),
        nn.Linear(HIDDEN[1], num_classes),
    )


class TissueClassifier(ResNet):
    """ResNet (torchvision's layout), MLP head in ``fc``; ``train()`` keeps frozen BN in eval.

    State-dict keys are torchvision's (``conv1.weight``, ``layer4.2.bn3.running_mean``, ...)
    plus ``fc.0``, ``fc.3``, ``fc.6`` for the head's linear layers.

    Attributes:
        backbone: the backbone name.
        num_classes: the number of output classes K.
        init_source: where the initial weights came from (provenance).
    """

    def __init__(self, num_classes: int, backbone: str = "resnet50") -> None:
        block, layers, features = _backbone(backbone)
        super().__init__(block, layers)
        self.backbone = backbone
        self.num_classes = _check_classes(num_classes)
        self.init_source = "random"
        self.fc = make_head(features, num_classes)
        freeze_backbone(self)

    def train(self, mode: bool = True) -> TissueClassifier:
        """Set training mode, keeping the batch norms of frozen parts in eval mode."""
        super().train(mode)
        if mode:
            _frozen_batchnorms_to_eval(self)
        return self


def build_tissue_classifier(
    num_classes: int, backbone: str = "resnet50", weights: WeightsSpec = "imagenet"
) -> TissueClassifier:
    """Build the tissue classifier, frozen except ``layer4`` and the head.

    Args:
        num_classes: K, the number of tissue classes (9 for NCT-CRC-HE-100K, 7 for CRLM).
        backbone: ``resnet50`` (published), or ``resnet18``/``resnet34`` for tests and demo.
        weights: ``"imagenet"`` (torch hub cache; warns and uses random init when absent),
            a state-dict path (backbone keys required; head keys used where they fit), or
            ``None`` for random init. See :mod:`histoprog.models.weights`.

    Returns:
        The model, in eval mode; call ``model.train()`` to train (frozen BN stays in eval).
    """
    model = TissueClassifier(num_classes, backbone)
    state, source = resolve_weights(weights, backbone)
    if state is not None:
        load_weights(model, state, source=source, optional_prefixes=("fc.",))
    model.init_source = source
    return model.eval()


def freeze_backbone(model: nn.Module, trainable: tuple[str, ...] = TRAINABLE) -> None:
    """Freeze every parameter outside the top-level children named in ``trainable``."""
    for name, child in model.named_children():
        keep = name in trainable
        for p in child.parameters():
            p.requires_grad_(keep)


def train_mode(model: nn.Module) -> nn.Module:
    """``model.train()`` for any module, then put frozen batch-norm layers back in eval mode.

    A batch-norm layer counts as frozen when none of its parameters requires grad. Works on
    models that do not override ``train()`` (a :class:`TissueClassifier` already does this).
    """
    model.train()
    _frozen_batchnorms_to_eval(model)
    return model


def reinit_head(model: TissueClassifier, num_classes: int) -> TissueClassifier:
    """Replace the head's last layer by a fresh Linear(256, ``num_classes``), in place.

    Used for stage 2 (7 CRLM classes) initialised from stage 1 (9 CRC classes): the backbone
    and the two hidden head layers keep their weights. The new layer is initialised from the
    global torch RNG (seed it first) and is trainable. Build a new optimizer afterwards.
    """
    last = model.fc[-1]
    if not isinstance(last, nn.Linear):
        raise TypeError("model.fc must end in a Linear layer")
    new = nn.Linear(last.in_features, _check_classes(num_classes))
    new.to(device=last.weight.device, dtype=last.weight.dtype)
    model.fc[-1] = new
    model.num_classes = num_classes
    return model


def _frozen_batchnorms_to_eval(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(
            p.requires_grad for p in m.parameters()
        ):
            m.eval()


def _backbone(name: str) -> tuple[type[BasicBlock] | type[Bottleneck], list[int], int]:
    try:
        return BACKBONES[name]
    except KeyError:
        raise InputError(
            f"tissue classifier backbone '{name}'",
            "is not supported",
            f"use one of {sorted(BACKBONES)} (resnet50 is the published model)",
        ) from None


def _check_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise InputError(
            "number of tissue classes",
            f"is {num_classes!r}; a classifier needs an integer of at least 2",
            "list at least two class folders / class names",
        )
    return num_classes
