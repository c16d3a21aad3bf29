"""torchvision ResNets as SSL encoders: the classifier removed, optionally a small-image stem."""
from __future__ import annotations

import torchvision
from torch import nn

RESNETS = {"resnet18": torchvision.models.resnet18, "resnet50": torchvision.models.resnet50}


def build_resnet(name: str, small_stem: bool = True,
                 zero_init_residual: bool = False) -> tuple[nn.Module, int]:
    """A ResNet trunk that maps (B, 3, H, W) to (B, D) pooled features; returns (trunk, D).

    With `small_stem` the 7x7 stride-2 convolution and the max pool are replaced by one 3x3
    stride-1 convolution, the usual change for 32-96 px images (SimCLR appendix B.9): without
    it a 32 px image is 1x1 before the last stage. `zero_init_residual` starts every residual
    block's last batch-norm scale at zero, so each block begins as the identity (Goyal et al.
    2017; the Barlow Twins and VICReg code build their ResNet-50 this way).
    """
    if name not in RESNETS:
        raise ValueError(f"unknown ResNet {name!r}; choose one of {sorted(RESNETS)}")
    net = RESNETS[name](weights=None, zero_init_residual=zero_init_residual)
    if small_stem:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net, feature_dim
