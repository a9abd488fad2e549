"""histoprog.models.nets against torchvision and smp: same keys, init and outputs.

Inference (classify, mil_score, nuclei) builds these instead of torchvision's and
segmentation-models-pytorch's classes, whose imports cost more than torch's; training,
ImageNet files and existing checkpoints must see no difference.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
from conftest import packages_loaded
from torchvision.models import resnet as tv_resnet

from histoprog.models import build_mil_mobilenet, build_unet, load_checkpoint, nets, save_checkpoint
from histoprog.models.mil import expand_input_conv

torch.set_num_threads(1)

RESNETS = {
    "resnet18": ("BasicBlock", [2, 2, 2, 2]),
    "resnet34": ("BasicBlock", [3, 4, 6, 3]),
    "resnet50": ("Bottleneck", [3, 4, 6, 3]),
}


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)  # same keys in the same order
    for k in sa:
        assert sa[k].shape == sb[k].shape, k
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("arch", sorted(RESNETS))
def test_resnet_matches_torchvision(arch: str) -> None:
    block, layers = RESNETS[arch]
    torch.manual_seed(3)
    theirs = tv_resnet.ResNet(getattr(tv_resnet, block), layers).eval()
    torch.manual_seed(3)
    ours = nets.ResNet(getattr(nets, block), layers).eval()
    _same_state(theirs, ours)  # same random initialisation from the same seed
    torch.manual_seed(4)
    trained = tv_resnet.ResNet(getattr(tv_resnet, block), layers)
    for m in trained.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    theirs.load_state_dict(trained.state_dict())
    ours.load_state_dict(trained.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(theirs(x), ours(x))


def test_mobilenet_v2_matches_torchvision() -> None:
    torch.manual_seed(5)
    theirs = tvm.mobilenet_v2(weights=None, dropout=0.3).eval()
    torch.manual_seed(5)
    ours = nets.MobileNetV2(dropout=0.3).eval()
    _same_state(theirs, ours)
    assert [type(m).__name__ for m in ours.classifier] == ["Dropout", "Linear"]
    assert ours.classifier[0].p == 0.3
    torch.manual_seed(6)
    other = tvm.mobilenet_v2(weights=None)
    for m in other.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    theirs.load_state_dict(other.state_dict())
    ours.load_state_dict(other.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(theirs(x), ours(x))


def _torchvision_mil(seed: int) -> torch.nn.Module:
    """build_mil_mobilenet(None) as it was built on torchvision's MobileNetV2."""
    torch.manual_seed(seed)
    model = tvm.mobilenet_v2(weights=None, dropout=0.2)
    model.features[0][0] = expand_input_conv(model.features[0][0], 4)
    head = torch.nn.Linear(model.classifier[-1].in_features, 1)
    torch.nn.init.normal_(head.weight, 0, 0.01)
    torch.nn.init.zeros_(head.bias)
    model.classifier[-1] = head
    return model.eval()


def test_mil_model_and_torchvision_checkpoint(tmp_path: Path) -> None:
    """The MIL model draws torchvision's init; a checkpoint of torchvision's model loads."""
    theirs = _torchvision_mil(7)
    torch.manual_seed(7)
    _same_state(theirs, build_mil_mobilenet(None))
    path = save_checkpoint(tmp_path / "mil.pt", theirs, kind="mil",
                           architecture={"in_channels": 4}, class_names=None,
                           normalisation={"mean": [0.5] * 4, "std": [0.5] * 4},
                           config={"t": 0.4457, "p": 3}, metrics={})  # fmt: skip
    loaded, _ = load_checkpoint(path, expected_kind="mil")
    assert isinstance(loaded, nets.MobileNetV2)
    x = torch.randn(3, 4, 64, 64)
    with torch.inference_mode():
        assert torch.equal(theirs(x), loaded(x))


def _random_batch_norms(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)


@pytest.mark.parametrize("encoder", ["resnet18", "resnet34", "resnet50"])
def test_unet_matches_smp(encoder: str) -> None:
    torch.manual_seed(8)
    theirs = build_unet(encoder, None)  # smp's Unet
    _random_batch_norms(theirs)
    ours = nets.UNet(encoder).eval()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 64, 96)
    with torch.inference_mode():
        assert torch.equal(theirs(x), ours(x))
    with pytest.raises(RuntimeError, match="divisible by 32"):
        ours(torch.randn(1, 3, 40, 64))


def test_smp_unet_checkpoint_loads(tmp_path: Path) -> None:
    """A U-net trained with smp (train_unet) loads as nets.UNet with the same logits."""
    torch.manual_seed(9)
    theirs = build_unet("resnet18", None)
    _random_batch_norms(theirs)
    path = save_checkpoint(tmp_path / "unet.pt", theirs, kind="unet",
                           architecture={"encoder": "resnet18", "in_channels": 3},
                           class_names=["nucleus"], normalisation={}, config={},
                           metrics={})  # fmt: skip
    loaded, _ = load_checkpoint(path, expected_kind="unet", expected_in_channels=3)
    assert isinstance(loaded, nets.UNet)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(theirs(x), loaded(x))


def test_inference_imports_no_torchvision(tmp_path: Path) -> None:
    """Loading the tissue, MIL and U-net checkpoints (classify, mil_score, nuclei) skips it."""
    from test_classify import _model

    tissue = _model(tmp_path / "tissue.pt")
    torch.manual_seed(0)
    mil = save_checkpoint(tmp_path / "mil.pt", build_mil_mobilenet(None), kind="mil",
                          architecture={"in_channels": 4}, class_names=None,
                          normalisation={}, config={"t": 0.4457, "p": 3}, metrics={})  # fmt: skip
    unet = save_checkpoint(tmp_path / "unet.pt", build_unet("resnet18", None), kind="unet",
                           architecture={"encoder": "resnet18", "in_channels": 3},
                           class_names=["nucleus"], normalisation={}, config={},
                           metrics={})  # fmt: skip
    code = (
        "from histoprog.cli import build_parser\n"
        "from histoprog.models import load_checkpoint\n"
        "build_parser('classify'); build_parser('mil_score'); build_parser('nuclei')\n"
        f"load_checkpoint({str(tissue)!r}, expected_kind='tissue_classifier')\n"
        f"load_checkpoint({str(mil)!r}, expected_kind='mil')\n"
        f"load_checkpoint({str(unet)!r}, expected_kind='unet')"
    )
    heavy = {"torchvision", "torch", "segmentation_models_pytorch", "timm"}
    assert packages_loaded(code, heavy) == ["torch"]
