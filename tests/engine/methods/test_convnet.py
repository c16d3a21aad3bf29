"""The small VGG-style encoder the quick presets train: shapes, feature map, tiny inputs."""

import torch

from engine.models.resnet import CNN_BACKBONES, ConvNet, build_resnet, feature_map


def test_convnet_pools_to_its_feature_dim_and_keeps_a_feature_map():
    net, dim = build_resnet("convnet")
    assert isinstance(net, ConvNet) and dim == net.feature_dim == 256
    x = torch.randn(3, 3, 32, 32)
    assert net(x).shape == (3, 256)
    net.eval()
    fmap = feature_map(net, x)
    assert fmap.shape == (3, 256, 4, 4)  # three 2x2 pools
    assert torch.allclose(net(x), fmap.mean(dim=(2, 3)), atol=1e-6)
    # Tiles of a few pixels (jigsaw) still go through: the pools round up.
    assert net(torch.randn(2, 3, 5, 5)).shape == (2, 256)
    # The stem is at .conv1 like a ResNet's, so colorization can swap it for one channel.
    assert net.conv1.in_channels == 3
    assert CNN_BACKBONES[0] == "convnet"
    assert sum(p.numel() for p in net.parameters()) < 0.15 * sum(
        p.numel() for p in build_resnet("resnet18")[0].parameters()
    )


def test_resnet_feature_map_matches_its_pooled_output():
    net, dim = build_resnet("resnet18")
    x = torch.randn(2, 3, 32, 32)
    net.eval()
    assert torch.allclose(net(x), feature_map(net, x).mean(dim=(2, 3)), atol=1e-5)
