"""Convolutional SSL encoders: torchvision ResNets with the classifier removed (optionally a
small-image stem), and a small VGG-style network for CPU-minute runs."""

from __future__ import annotations

import torchvision
from torch import Tensor, nn

from engine.errors import SpecError

RESNETS = {"resnet18": torchvision.models.resnet18, "resnet50": torchvision.models.resnet50}
CONVNET_WIDTH = 32
# Every convolutional backbone a method can pick, smallest first (the config `choices`).
CNN_BACKBONES: tuple[str, ...] = ("convnet", "resnet18", "resnet50")


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ConvNet(nn.Module):
    """A small VGG-style encoder: seven 3x3 conv-BN-ReLU layers of widths w, w | 2w, 2w |
    4w, 4w | 8w with a 2x2 max pool between the groups, then global average pooling to 8w
    features (256 at the default w = 32).

    About 1.2 M parameters and 40 MFLOPs per 32 px image, a fourteenth of a small-stem
    ResNet-18's: on two CPU cores SimCLR trains it at ~530 images/s against ~57 for the
    ResNet-18, which is what lets a quick run see tens of epochs of a small dataset in minutes
    (bench/RESULTS.md). The pools round up, so tiles down to a few pixels still work.
    """

    def __init__(self, width: int = CONVNET_WIDTH, in_channels: int = 3) -> None:
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(in_channels, w, 3, padding=1, bias=False)  # the stem (swappable)
        self.bn1, self.relu = nn.BatchNorm2d(w), nn.ReLU(inplace=True)
        pool = nn.MaxPool2d(2, ceil_mode=True)
        self.body = nn.Sequential(
            _conv_bn_relu(w, w),
            pool,
            _conv_bn_relu(w, 2 * w),
            _conv_bn_relu(2 * w, 2 * w),
            pool,
            _conv_bn_relu(2 * w, 4 * w),
            _conv_bn_relu(4 * w, 4 * w),
            pool,
            _conv_bn_relu(4 * w, 8 * w),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 8 * w

    def feature_map(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, 8w, H/8, W/8) before pooling."""
        return self.body(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.feature_map(x)).flatten(1)


def build_resnet(
    name: str, small_stem: bool = True, zero_init_residual: bool = False
) -> tuple[nn.Module, int]:
    """A convolutional trunk (one of `CNN_BACKBONES`) that maps (B, 3, H, W) to (B, D) pooled
    features; returns (trunk, D). Every trunk has its stem convolution at `.conv1`.

    With `small_stem` a ResNet's 7x7 stride-2 convolution and max pool are replaced by one 3x3
    stride-1 convolution, the usual change for 32-96 px images (SimCLR appendix B.9): without
    it a 32 px image is 1x1 before the last stage. `zero_init_residual` starts every residual
    block's last batch-norm scale at zero, so each block begins as the identity (Goyal et al.
    2017; the Barlow Twins and VICReg code build their ResNet-50 this way). Neither applies to
    `convnet`, which has no stride before its first pool and no residual blocks.
    """
    if name == "convnet":
        net = ConvNet()
        return net, net.feature_dim
    if name not in RESNETS:
        raise SpecError(f"unknown backbone {name!r}; choose one of {list(CNN_BACKBONES)}")
    net = RESNETS[name](weights=None, zero_init_residual=zero_init_residual)
    if small_stem:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, feature_dim


def feature_map(net: nn.Module, x: Tensor) -> Tensor:
    """The unpooled output of a `build_resnet` trunk: (B, C, H, W) -> (B, D, h, w)."""
    if isinstance(net, ConvNet):
        return net.feature_map(x)
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))
