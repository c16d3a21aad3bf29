"""`scenes`: upright objects in typical colours, deterministic, balanced, with masks."""

import numpy as np
import pytest
import torch

from engine.data import catalog
from engine.data.scenes import CLASS_NAMES, generate_scenes, scene_captions


@pytest.fixture(scope="module")
def batch():
    return generate_scenes(120, seed=7, size=32)


def test_same_seed_same_images_and_balanced_labels(batch):
    again = generate_scenes(120, seed=7, size=32)
    assert torch.equal(batch.images, again.images) and torch.equal(batch.masks, again.masks)
    assert not torch.equal(batch.images, generate_scenes(120, seed=8, size=32).images)
    counts = torch.bincount(batch.labels, minlength=len(CLASS_NAMES))
    assert (counts == 12).all()
    assert batch.images.shape == (120, 3, 32, 32) and batch.images.dtype == torch.uint8


def test_up_is_up_sky_above_ground_below(batch):
    images = batch.images.float()
    top, bottom = images[:, :, :3], images[:, :, -3:]
    # The top rows are sky (no object reaches them), so blue leads there in every day sky...
    day = torch.tensor([f == "day" for f in batch.factors["sky"]])
    assert (top[day, 2].mean(dim=(1, 2)) > top[day, 0].mean(dim=(1, 2))).all()
    # ...and outdoors an upside-down image is told apart by its rows: top and bottom differ.
    outdoors = torch.tensor([b == "outdoors" for b in batch.factors["backdrop"]])
    gap = top[outdoors].mean(dim=(1, 2, 3)) - bottom[outdoors].mean(dim=(1, 2, 3))
    assert gap.abs().mean() > 10
    assert batch.masks[:, :2].sum() == 0  # nothing touches the top edge


def test_before_a_wall_only_the_object_says_which_way_is_up(batch):
    walls = [i for i, b in enumerate(batch.factors["backdrop"]) if b == "wall"]
    assert 0.4 < len(walls) / len(batch.labels) < 0.8
    for i in walls[:10]:
        image, mask = batch.images[i].float(), batch.masks[i].bool()
        # Away from the object (and its anti-aliased edge) the wall is one colour.
        far = ~torch.nn.functional.max_pool2d(mask[None, None].float(), 5, 1, 2)[0, 0].bool()
        background = image[:, far]
        assert (background.max(dim=1).values - background.min(dim=1).values).max() <= 1
        assert "plain wall" in batch.captions[i]


def test_objects_keep_their_colours(batch):
    images, masks = batch.images.float(), batch.masks.bool()
    trees = (batch.labels == CLASS_NAMES.index("tree")).nonzero().flatten()
    for i in trees:
        pixels = images[i][:, masks[i]]  # (3, n) the object's pixels
        green = (pixels[1] > pixels[0]) & (pixels[1] > pixels[2])
        assert green.float().mean() > 0.5  # crown green, trunk the rest


def test_masks_cover_the_object_and_captions_name_it(batch):
    shares = batch.masks.float().mean(dim=(1, 2))
    assert (shares > 0.02).all() and (shares < 0.6).all()
    for label, caption in zip(batch.labels.tolist(), batch.captions):
        assert (CLASS_NAMES[label] in caption) or (CLASS_NAMES[label] == "car" and "car" in caption)
    assert scene_captions(120, seed=7) == batch.captions


def test_registered_as_a_builtin_with_masks_and_renders_more():
    source = catalog.get_source("scenes")
    assert source.builtin and source.labelled and source.num_classes == 10
    raw = source.render(20, 99)
    assert raw.images.shape[0] == 20 and len(raw.captions) == 20
    with pytest.raises(Exception, match="split's own"):
        source.render(5, 2468)
    info = catalog.dataset_info("scenes")
    assert info["name"] == "scenes" and np.isclose(info["num_train"], 5000)
