import torch

from engine.config import build_config
from engine.methods.jigsaw import (
    Jigsaw,
    JigsawConfig,
    cut_tiles,
    jigsaw_permutations,
    shuffle_tiles,
)
from engine.models.resnet import ConvNet


def _hamming(perms):
    distances = (perms[:, None, :] != perms[None, :, :]).sum(dim=-1)
    return distances + 100 * torch.eye(len(perms), dtype=torch.long)  # ignore the diagonal


def test_permutations_are_distinct_and_far_apart():
    perms = jigsaw_permutations(100)
    assert perms.shape == (100, 9)
    assert all(sorted(p) == list(range(9)) for p in perms.tolist())
    assert len({tuple(p) for p in perms.tolist()}) == 100
    assert _hamming(perms).min() >= 6
    assert torch.equal(perms, jigsaw_permutations(100))  # deterministic
    assert _hamming(jigsaw_permutations(10)).min() >= 8


def test_tiles_come_from_their_cells_with_a_random_gap():
    torch.manual_seed(0)
    cell, tile, batch = 8, 6, 3
    side = 3 * cell
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    puzzle = torch.stack([ys, xs, ys * 0]).float().expand(batch, 3, side, side)
    tiles = cut_tiles(puzzle, tile)  # (B, 9, 3, t, t)
    assert tiles.shape == (batch, 9, 3, tile, tile)
    offsets = set()
    for b in range(batch):
        for k in range(9):
            row, col = divmod(k, 3)
            y, x = tiles[b, k, 0], tiles[b, k, 1]
            top, left = int(y[0, 0]), int(x[0, 0])
            assert row * cell <= top <= row * cell + cell - tile
            assert col * cell <= left <= col * cell + cell - tile
            assert torch.equal(y, top + torch.arange(tile)[:, None].expand(tile, tile).float())
            assert torch.equal(x, left + torch.arange(tile)[None, :].expand(tile, tile).float())
            offsets.add((top - row * cell, left - col * cell))
    assert len(offsets) > 1  # the jitter is drawn per tile


def test_shuffle_puts_tile_order_i_in_slot_i():
    tiles = torch.arange(2 * 9).float().view(2, 9, 1)
    orders = torch.stack([torch.arange(9).flip(0), torch.tensor([3, 1, 4, 0, 5, 8, 2, 6, 7])])
    shuffled = shuffle_tiles(tiles, orders)
    assert shuffled[0, :, 0].tolist() == list(range(8, -1, -1))
    assert shuffled[1, :, 0].tolist() == [9 + i for i in orders[1].tolist()]


def test_puzzles_and_permutations_travel_with_the_checkpoint():
    config = build_config(
        JigsawConfig,
        "quick",
        dict(image_size=16, cell_size=8, tile_size=6, hidden_dim=16, tile_dim=8),
    )
    method = Jigsaw(config)
    assert "permutations" in method.state_dict()
    tiles, labels = method.make_puzzles(torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8))
    assert tiles.shape == (4, 9, 3, 6, 6) and labels.shape == (4,)
    # Every tile is standardised on its own (paper section 3.3).
    assert tiles.mean(dim=(-2, -1)).abs().max() < 1e-4
    assert method.embed(torch.zeros(2, 3, 16, 16, dtype=torch.uint8)).shape == (
        2,
        ConvNet().feature_dim,
    )


def test_preview_shows_puzzle_tiles_and_each_rows_permutation():
    from engine.methods.jigsaw import standardize, tile_grid

    config = build_config(
        JigsawConfig,
        "quick",
        dict(image_size=16, cell_size=8, tile_size=6, hidden_dim=16, tile_dim=8),
    )
    method = Jigsaw(config)
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    torch.manual_seed(1)
    views = method.preview_views(images)
    torch.manual_seed(1)
    puzzle, tiles, labels = method.draw_puzzles(images)
    torch.manual_seed(1)
    shuffled, train_labels = method.make_puzzles(images)  # what training_step feeds the net
    assert torch.equal(labels, train_labels)
    captions = [c for c, _ in views]
    row_labels = ", ".join(str(i) for i in labels.tolist())
    assert captions == [
        "puzzle crop",
        "tiles in place",
        f"shuffled tiles; permutation by row: {row_labels} (of 100)",
    ]
    assert [tuple(v.shape) for _, v in views] == [(3, 3, 24, 24), (3, 3, 20, 20), (3, 3, 20, 20)]
    assert all(v.dtype == torch.uint8 for _, v in views)
    in_place, shown = views[1][1], views[2][1]
    assert (in_place[:, :, 6, :] == 128).all() and (in_place[:, :, :, 13] == 128).all()  # gaps
    # Slot 5 (middle row, right) of the unshuffled grid is tile 5 as cut.
    assert torch.equal(in_place[:, :, 7:13, 14:20], tiles[:, 5].mul(255).round().to(torch.uint8))
    # The shuffled grid is exactly the standardised, permuted tiles the encoder gets.
    drawn = tile_grid((shuffled * 0.25 + 0.5).clamp(0, 1))  # standardised -2..2 -> 0..1
    assert torch.equal(shown, drawn.mul(255).round().to(torch.uint8))
    slot_zero = standardize(tiles[0, method.permutations[labels[0], 0]])
    assert torch.allclose(shuffled[0, 0], slot_zero)
