"""Small composable heads shared by the methods."""
from __future__ import annotations

from torch import Tensor, nn


class ProjectionHead(nn.Module):
    """MLP projection head (SimCLR, Chen et al. 2020, section 2.1; MoCo v2; BYOL).

    `num_layers` linear layers; every one but the last is followed by batch norm and ReLU.
    SimCLR v1 uses 2 layers; SimCLR v2 and BYOL's projector use more or wider ones.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2,
                 last_batch_norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim),
                       nn.ReLU(inplace=True)]
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim, bias=not last_batch_norm))
        if last_batch_norm:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        return self.layers(features)
