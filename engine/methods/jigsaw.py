"""Jigsaw puzzles: put nine shuffled tiles of an image back in order.

Noroozi & Favaro 2016, "Unsupervised Learning of Visual Representations by Solving Jigsaw
Puzzles" (ECCV 2016, arXiv:1603.09246). A crop of the image is cut into a 3x3 grid of cells and
a tile is taken at a random place inside each cell, so the tiles are separated by a random gap
and their edges do not line up (section 3.3: no shortcut through edge continuity). The tiles
are shuffled by one permutation from a fixed set, each tile goes through the same encoder
(the "context-free network": no tile sees another before the last layers), and the
concatenated tile features classify which permutation was used. The permutation set is chosen
to make the puzzles unambiguous (section 3.2, Algorithm 1): far apart in Hamming distance.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.config import TrainConfig, param
from engine.data.views import IMAGENET_MEAN, IMAGENET_STD, make_views
from engine.errors import SpecError
from engine.methods.base import TINY_PRESET, MethodCard, SSLMethod
from engine.models.heads import ProjectionHead
from engine.models.resnet import CNN_BACKBONES, build_resnet
from engine.registry import register_method

GRID = 3
NUM_TILES = GRID * GRID


@functools.lru_cache(maxsize=4)
def _greedy_permutations(count: int, seed: int) -> Tensor:
    every = torch.tensor(list(itertools.permutations(range(NUM_TILES))), dtype=torch.uint8)
    columns = every.T.contiguous()  # (9, 9!): one row per tile position, cheap to compare

    def distances(index: int) -> Tensor:  # Hamming distance of every permutation to one
        return (columns != columns[:, index : index + 1]).sum(dim=0, dtype=torch.int32)

    first = int(torch.randint(len(every), (1,), generator=torch.Generator().manual_seed(seed)))
    chosen = [first]
    min_dist = distances(first)
    sum_dist = min_dist.clone()
    for _ in range(count - 1):
        # Farthest point first; among those, the largest total distance (the paper's criterion).
        best = int((min_dist.long() * 1_000_000 + sum_dist).argmax())
        chosen.append(best)
        new = distances(best)
        torch.minimum(min_dist, new, out=min_dist)
        sum_dist += new
    return every[chosen].long()


def jigsaw_permutations(count: int = 100, seed: int = 0) -> Tensor:
    """(count, 9) permutations of the tiles, chosen greedily from all 9! (section 3.2).

    Each new permutation maximises its minimum Hamming distance to those already chosen (ties
    broken by the largest sum of distances, Algorithm 1's criterion). 100 gives a minimum
    pairwise distance of 6, 1000 gives 5. Deterministic for a given seed.
    """
    if not 2 <= count <= 10_000:
        raise SpecError(f"count must be between 2 and 10000, got {count}")
    return _greedy_permutations(count, seed).clone()


def standardize(x: Tensor, eps: float = 1e-2) -> Tensor:
    """Zero mean, unit std per image and channel of x (..., 3, H, W). The paper normalises
    every tile on its own, so brightness and contrast differences between tiles give nothing
    away; `eps` keeps flat tiles (a black corner of a digit) from blowing up their noise."""
    mean = x.mean(dim=(-2, -1), keepdim=True)
    std = x.std(dim=(-2, -1), keepdim=True)
    return (x - mean) / (std + eps)


def cut_tiles(puzzle: Tensor, tile: int) -> Tensor:
    """(B, C, 3c, 3c) -> (B, 9, C, tile, tile): from each cell of the 3x3 grid (row-major), a
    tile at a random position inside the cell, drawn per tile."""
    batch, channels, side, _ = puzzle.shape
    cell = side // GRID
    cells = puzzle.unfold(2, cell, cell).unfold(3, cell, cell)  # (B, C, 3, 3, c, c)
    cells = cells.permute(0, 2, 3, 1, 4, 5).reshape(batch * NUM_TILES, channels, cell, cell)
    offsets = torch.randint(0, cell - tile + 1, (2, batch * NUM_TILES), device=puzzle.device)
    steps = torch.arange(tile, device=puzzle.device)
    rows = (offsets[0, :, None] + steps)[:, :, None]  # (9B, t, 1)
    cols = (offsets[1, :, None] + steps)[:, None, :]  # (9B, 1, t)
    index = torch.arange(batch * NUM_TILES, device=puzzle.device)[:, None, None]
    tiles = cells[index, :, rows, cols]  # (9B, t, t, C): the advanced indices come first
    return tiles.permute(0, 3, 1, 2).reshape(batch, NUM_TILES, channels, tile, tile)


def shuffle_tiles(tiles: Tensor, orders: Tensor) -> Tensor:
    """tiles (B, 9, ...) and orders (B, 9) -> (B, 9, ...) where slot i holds tile orders[b, i]."""
    rows = torch.arange(tiles.shape[0], device=tiles.device)[:, None]
    return tiles[rows, orders]


@dataclass
class JigsawConfig(TrainConfig):
    backbone: str = param(
        "resnet18",
        "Tile encoder trained from scratch: the small convnet or a "
        "ResNet (the paper used AlexNet); its trunk embeds whole images for "
        "evaluation.",
        choices=list(CNN_BACKBONES),
        main=True,
    )
    small_stem: bool = param(
        True,
        "Replace the 7x7 stride-2 stem and max pool by one 3x3 "
        "convolution: right for tiles under ~96 px.",
    )
    num_permutations: int = param(
        100,
        "Size of the permutation set, i.e. classes to choose "
        "from. More is harder and (paper, table 3) transfers better "
        "up to 1000; 100 keeps every pair at least 6 tiles apart.",
        min=2,
        max=2000,
        main=True,
    )
    cell_size: int = param(
        75,
        "Side of each of the 3x3 grid cells in pixels; a random crop "
        "of the image is resized to 3 x cell_size. The paper: 75 (225 px "
        "crops). On small images this upsamples, so tiles stay big enough "
        "for a ResNet.",
        min=4,
    )
    tile_size: int = param(
        64,
        "Side of the tile taken at a random place inside each cell; "
        "cell_size - tile_size is the random gap that hides edge "
        "continuity (paper: 64 in 75).",
        min=4,
    )
    tile_dim: int = param(
        512, "Per-tile feature size after the shared fc6 layer (paper: 512).", min=8
    )
    hidden_dim: int = param(4096, "Width of fc7, which sees all nine tiles (paper: 4096).", min=8)

    PRESETS = {
        # Digits at 32 px upsampled to 48 px puzzles of 14 px tiles; batch 32 (288 tiles).
        # fp32: on CPU bf16 was 2.3x slower on these small tiles (bench/train_step.py, same
        # run: fp32 12.9 s, SimCLR's bf16 step 15.0 s under heavy load; 1.2 s alone).
        "quick": dict(
            grad_clip=1.0,  # as bench/RESULTS.md measured the quick runs
            backbone="convnet",
            steps=500,
            batch_size=32,
            lr=1e-3,
            image_size=32,
            cell_size=16,
            tile_size=14,
            hidden_dim=1024,
            warmup_steps=10,
            weight_decay=5e-4,
            precision="fp32",
            checkpoint_every=50,
        ),
        # Paper, section 4: 350k iterations, batch 256, SGD lr 0.01 (cut 10x every 100k; a
        # cosine here), 225 px crops of 256 px images, 64 px tiles in 75 px cells, 1000
        # permutations (their best).
        "paper": dict(
            steps=350_000,
            batch_size=256,
            lr=0.01,
            optimizer="sgd",
            weight_decay=5e-4,
            warmup_steps=0,
            image_size=256,
            small_stem=False,
            num_permutations=1000,
            cell_size=75,
            tile_size=64,
            hidden_dim=4096,
            checkpoint_every=5000,
        ),
        # Seconds on a CPU (the registry walk trains it): a smoke test, not a recipe.
        "tiny": dict(
            TINY_PRESET,
            backbone="convnet",
            lr=1e-3,
            num_permutations=10,
            cell_size=8,
            tile_size=6,
            tile_dim=64,
            hidden_dim=128,
        ),
    }


@register_method("jigsaw")
class Jigsaw(SSLMethod):
    description = (
        "Pretext task: classify the permutation of 3x3 shuffled tiles (Noroozi & Favaro 2016)"
    )
    paper = "arXiv:1603.09246"
    Config = JigsawConfig
    card = MethodCard(
        title="Jigsaw puzzles",
        authors="Noroozi, Favaro",
        year=2016,
        paper="arXiv:1603.09246",
        idea="Cut an image into nine tiles, shuffle them with one of a fixed set of "
        "permutations and ask which one. Every tile goes through the same encoder alone, "
        "so to solve the puzzle the encoder must recognise object parts and where they "
        "belong.",
        good_at="Learns part-level, spatial features without any augmentation recipe; a "
        "classic pretext task that is easy to inspect. Weak on images whose tiles "
        "look alike (textures, plain backgrounds), where the answer is ambiguous.",
        hyperparameters="Number of permutations (more is harder; the set is chosen so "
        "puzzles differ in many tiles); tile size against cell size (the gap "
        "stops the net from matching edges); the tile side the encoder sees.",
    )
    channels_last = True

    @classmethod
    def check_config(cls, config: JigsawConfig) -> None:
        if config.tile_size > config.cell_size:
            raise SpecError(
                f"tile_size {config.tile_size} is larger than cell_size "
                f"{config.cell_size}; a tile must fit in its cell"
            )

    def __init__(self, config: JigsawConfig, data_info: dict | None = None) -> None:
        super().__init__(config, data_info)
        self.check_config(config)
        # The puzzle is a random crop of the image (the paper's 225 of 256), resized to 3 cells.
        self.views = make_views("mae", GRID * config.cell_size, crop_scale=(0.6, 1.0))
        self.register_buffer("permutations", jigsaw_permutations(config.num_permutations))
        self.encoder, feature_dim = build_resnet(config.backbone, config.small_stem)
        self.tile_fc = nn.Sequential(nn.Linear(feature_dim, config.tile_dim), nn.ReLU(inplace=True))
        self.classifier = ProjectionHead(
            NUM_TILES * config.tile_dim, config.hidden_dim, config.num_permutations, num_layers=2
        )

    def draw_puzzles(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """uint8 (B, 3, H, W) -> the puzzle crops (B, 3, 3c, 3c) and their tiles in grid order
        (B, 9, 3, t, t), both in [0, 1], and the permutation index of each puzzle (B,)."""
        mean = torch.tensor(IMAGENET_MEAN, device=images.device)[:, None, None]
        std = torch.tensor(IMAGENET_STD, device=images.device)[:, None, None]
        puzzle = self.views(images) * std + mean  # (B, 3, 3c, 3c) back in [0, 1]
        tiles = cut_tiles(puzzle, self.config.tile_size)
        labels = torch.randint(0, len(self.permutations), (images.shape[0],), device=images.device)
        return puzzle, tiles, labels

    def make_puzzles(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 (B, 3, H, W) -> shuffled standardised tiles (B, 9, 3, t, t), labels (B,)."""
        _, tiles, labels = self.draw_puzzles(images)
        return shuffle_tiles(standardize(tiles), self.permutations[labels]), labels

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        images = batch["images"]  # (B, 3, H, W) uint8
        with torch.no_grad():
            tiles, labels = self.make_puzzles(images)  # (B, 9, 3, t, t), (B,)
        batch_size, _, _, tile, _ = tiles.shape
        tiles = tiles.reshape(batch_size * NUM_TILES, 3, tile, tile)  # (9B, 3, t, t)
        tiles = self.match_memory_format(tiles)
        features = self.tile_fc(self.encoder(tiles))  # (9B, tile_dim), one shared encoder
        logits = self.classifier(features.reshape(batch_size, -1)).float()  # (B, P)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.detach().argmax(dim=1) == labels).float().mean()
        return loss, {"jigsaw_acc": accuracy}

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        """Whole images through the tile encoder, standardised as the tiles were."""
        return self.encoder(standardize(images.float() / 255)).float()

    @torch.no_grad()
    def preview_views(self, images: Tensor) -> list[tuple[str, Tensor]]:
        """The puzzle crop, its nine tiles in place (the gaps are the random offsets inside
        the cells), and the same tiles in the order the encoder gets them: shuffled by the
        puzzle's permutation and standardised each on its own (drawn at mean +- 2 std). The
        caption names each row's permutation index, the class to predict. Drawn by
        `draw_puzzles`, as in `training_step`."""
        puzzle, tiles, labels = self.draw_puzzles(images)  # (B,3,3c,3c), (B,9,3,t,t), (B,)
        shuffled = shuffle_tiles(standardize(tiles), self.permutations[labels])
        shown = (shuffled * 0.25 + 0.5).clamp(0, 1)  # standardised values -2..2 -> 0..1
        indices = ", ".join(str(int(label)) for label in labels)
        return [
            ("puzzle crop", _to_uint8(puzzle)),
            ("tiles in place", _to_uint8(tile_grid(tiles))),
            (
                f"shuffled tiles; permutation by row: {indices} (of {len(self.permutations)})",
                _to_uint8(tile_grid(shown)),
            ),
        ]


def tile_grid(tiles: Tensor, gap: int = 0) -> Tensor:
    """(B, 9, C, t, t) -> (B, C, 3t + 2g, 3t + 2g): slot i at row i // 3, column i % 3, with
    mid-grey gaps of `gap` pixels (default t // 7, at least 1) between them."""
    batch, _, channels, tile, _ = tiles.shape
    gap = gap or max(1, tile // 7)
    side = GRID * tile + (GRID - 1) * gap
    grid = tiles.new_full((batch, channels, side, side), 0.5)
    for slot in range(NUM_TILES):
        top, left = (slot // GRID) * (tile + gap), (slot % GRID) * (tile + gap)
        grid[:, :, top : top + tile, left : left + tile] = tiles[:, slot]
    return grid


def _to_uint8(unit: Tensor) -> Tensor:
    return unit.clamp(0, 1).mul(255).round().to(torch.uint8)
