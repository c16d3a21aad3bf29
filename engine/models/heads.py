"""Small composable heads shared by the methods."""

from __future__ import annotations

from torch import Tensor, nn


class ProjectionHead(nn.Module):
    """MLP projection head (SimCLR, Chen et al. 2020, section 2.1; MoCo v2; BYOL).

    `num_layers` linear layers; every one but the last is followed by batch norm and ReLU
    (ReLU only with `batch_norm=False`, MoCo v2's head). SimCLR v1 uses 2 layers; SimCLR v2 and
    BYOL's projector use more or wider ones; SimSiam's has 3 with batch norm on the output too
    (`last_batch_norm`).
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        last_batch_norm: bool = False,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            if batch_norm:
                layers += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim)]
            else:  # MoCo v2's head: fc, ReLU, fc
                layers.append(nn.Linear(dim, hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim, bias=not last_batch_norm))
        if last_batch_norm:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        return self.layers(features)


class PredictionHead(ProjectionHead):
    """The predictor of BYOL (Grill et al. 2020, section 3.3) and SimSiam (Chen & He 2021,
    section 4.4): a 2-layer MLP (fc, batch norm, ReLU, fc) on top of the projection, applied to
    the online branch only. BYOL widens it (256 -> 4096 -> 256); SimSiam makes it a bottleneck
    (2048 -> 512 -> 2048)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__(dim, hidden_dim, dim, num_layers=2)
