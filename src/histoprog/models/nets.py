"""ResNet and MobileNetV2 backbones with torchvision's layout, without importing torchvision.

A per-slide inference job (``classify``, ``mil_score``) only needs these two networks, but
importing torchvision costs more than importing torch itself (its ``ops`` package loads
``torch._dynamo``; measured in ``benchmarks/bench_startup.py``). These classes build the
same modules in the same order as torchvision's ``ResNet`` (``BasicBlock``/``Bottleneck``,
``groups=1``, width 64, no dilation) and ``MobileNetV2`` (width multiplier 1), so that

* state-dict keys and shapes are torchvision's: ImageNet files and every existing
  checkpoint load unchanged;
* with the same seed, random initialisation draws the same numbers in the same order
  (each ``Conv2d``/``Linear`` draws at construction, then the same re-initialisation
  loop), so an untrained model equals torchvision's;
* the forward pass is the same sequence of torch operations.

:class:`UNet` is segmentation-models-pytorch's ``Unet`` for ResNet encoders, for the
``nuclei`` stage (smp imports timm and torchvision): same keys and forward operations, so
checkpoints trained with smp load and give the same logits; its random initialisation is
not smp's, so training builds smp's model.

``tests/test_models_nets.py`` checks all of these against torchvision and smp.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["BasicBlock", "Bottleneck", "InvertedResidual", "MobileNetV2", "ResNet", "UNet"]


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(
        in_planes, out_planes, kernel_size=3, stride=stride, padding=1, groups=groups, bias=False
    )


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (ResNet-18/34)."""

    expansion: int = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        """The block's output for ``x`` (N, C, H, W)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 - 3x3 (strided) - 1x1 convolutions with a shortcut (ResNet-50, V1.5 stride)."""

    expansion: int = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        """The block's output for ``x`` (N, C, H, W)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """ResNet with torchvision's module names; ``fc`` maps the pooled features to logits."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: list[int],
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            # built before the block, as torchvision does (the order of random draws)
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, num_classes) for images ``x`` (N, 3, H, W)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _conv_bn_relu6(
    inp: int, oup: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Like torchvision's ``Conv2dNormActivation`` with BatchNorm and ReLU6: keys ``0.``, ``1.``."""
    return nn.Sequential(
        nn.Conv2d(inp, oup, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(oup),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion, 3x3 depthwise, 1x1 linear projection in ``conv``."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        self.stride = stride
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(inp, hidden, kernel_size=1))
        layers += [
            _conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: Tensor) -> Tensor:
        """The block's output for ``x`` (N, C, H, W)."""
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


#: (expansion t, channels c, repeats n, first stride s) of MobileNetV2's inverted residuals
MOBILENET_V2_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) with torchvision's module names (``features``, ``classifier``)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        channels = 32
        self.last_channel = 1280
        features: list[nn.Module] = [_conv_bn_relu6(3, channels, stride=2)]
        for t, c, n, s in MOBILENET_V2_SETTING:
            for i in range(n):
                features.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                channels = c
        features.append(_conv_bn_relu6(channels, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, num_classes) for images ``x`` (N, C, H, W)."""
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


#: encoder name -> (block, layers) of the U-net encoders built here (smp's ResNet encoders)
UNET_RESNETS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
}


class ResNetEncoder(ResNet):
    """segmentation-models-pytorch's ResNet encoder: the ResNet without ``avgpool`` and ``fc``.

    ``forward`` gives the input and the outputs of the stem and of ``layer1``-``layer4``.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int]) -> None:
        super().__init__(block, layers)
        del self.fc
        del self.avgpool
        width = 64 * block.expansion
        self.out_channels = [3, 64, width, 2 * width, 4 * width, 8 * width]

    def forward(self, x: Tensor) -> list[Tensor]:  # type: ignore[override]
        """Feature maps at strides 1, 2, 4, 8, 16 and 32."""
        features = [x]
        x = self.relu(self.bn1(self.conv1(x)))
        features.append(x)
        x = self.layer1(self.maxpool(x))
        features.append(x)
        for layer in (self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features


def _conv_bn_relu(inp: int, oup: int) -> nn.Sequential:
    """Like smp's ``Conv2dReLU`` with batch norm: 3x3 conv without bias, BatchNorm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(inp, oup, 3, padding=1, bias=False), nn.BatchNorm2d(oup), nn.ReLU(inplace=True)
    )


class _NoAttention(nn.Module):
    """Like smp's ``Attention(None)``: an identity kept in a child named ``attention``."""

    def __init__(self) -> None:
        super().__init__()
        self.attention = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``x`` unchanged."""
        return self.attention(x)


class UnetDecoderBlock(nn.Module):
    """Nearest upsampling to the skip's size, concatenation, two conv-BN-ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(in_channels + skip_channels, out_channels)
        self.attention1 = _NoAttention()
        self.conv2 = _conv_bn_relu(out_channels, out_channels)
        self.attention2 = _NoAttention()

    def forward(self, x: Tensor, size: tuple[int, int], skip: Tensor | None) -> Tensor:
        """Upsample ``x`` to ``size``, append ``skip``'s channels, convolve."""
        x = nn.functional.interpolate(x, size=size, mode="nearest")
        if skip is not None:
            x = self.attention1(torch.cat([x, skip], dim=1))
        return self.attention2(self.conv2(self.conv1(x)))


class UnetDecoder(nn.Module):
    """The U-net decoder of smp, without a centre block (its layout for ResNet encoders)."""

    def __init__(self, encoder_channels: list[int], decoder_channels: list[int]) -> None:
        super().__init__()
        reversed_channels = encoder_channels[1:][::-1]
        in_channels = [reversed_channels[0], *decoder_channels[:-1]]
        skip_channels = [*reversed_channels[1:], 0]
        self.center = nn.Identity()
        self.blocks = nn.ModuleList(
            UnetDecoderBlock(i, s, o)
            for i, s, o in zip(in_channels, skip_channels, decoder_channels, strict=True)
        )

    def forward(self, features: list[Tensor]) -> Tensor:
        """Decode the encoder's features (finest first) to the input's resolution."""
        sizes = [tuple(f.shape[2:]) for f in features][::-1]
        head, *skips = features[1:][::-1]
        x = self.center(head)
        for i, block in enumerate(self.blocks):
            x = block(x, sizes[i + 1], skips[i] if i < len(skips) else None)
        return x


class UNet(nn.Module):
    """The ``Unet(encoder, classes=1)`` of smp for ResNet encoders, without importing smp.

    The same state-dict keys as segmentation-models-pytorch 0.x's ``Unet`` (``encoder.``,
    ``decoder.blocks.<i>.conv<j>.<k>``, ``segmentation_head.0``) and the same forward
    operations, so a U-net trained with smp loads here and gives the same logits (the
    inference path of ``nuclei``; training builds smp's model). The random initialisation
    is not smp's: build through :func:`histoprog.models.build_unet` to train.
    """

    def __init__(
        self,
        encoder: str = "resnet34",
        classes: int = 1,
        decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
    ) -> None:
        super().__init__()
        block, layers = UNET_RESNETS[encoder]
        self.encoder = ResNetEncoder(block, layers)
        self.decoder = UnetDecoder(self.encoder.out_channels, list(decoder_channels))
        self.segmentation_head = nn.Sequential(
            nn.Conv2d(decoder_channels[-1], classes, kernel_size=3, padding=1),
            nn.Identity(),
            _NoActivation(),
        )
        self.encoder_name = encoder

    def forward(self, x: Tensor) -> Tensor:
        """Logit maps (N, classes, H, W); H and W must be multiples of 32, as smp requires."""
        h, w = x.shape[-2:]
        if h % 32 or w % 32:
            raise RuntimeError(
                f"Wrong input shape height={h}, width={w}. Expected image height and width "
                "divisible by 32."
            )
        return self.segmentation_head(self.decoder(self.encoder(x)))


class _NoActivation(nn.Module):
    """Like smp's ``Activation(None)``: an identity kept in a child named ``activation``."""

    def __init__(self) -> None:
        super().__init__()
        self.activation = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``x`` unchanged."""
        return self.activation(x)
