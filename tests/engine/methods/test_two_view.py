"""The two-view base: every two-view method makes channels-last views and runs them through its
trunk as one batch or one view at a time, as its class says; shared fields keep their bounds."""

import dataclasses

import pytest
import torch

from engine.config import build_config, config_fields
from engine.methods._two_view import TwoViewConfig, TwoViewMethod
from engine.registry import get_method, list_methods

TWO_VIEW = [name for name in list_methods() if issubclass(get_method(name), TwoViewMethod)]


def test_the_six_two_view_methods_use_the_base():
    assert set(TWO_VIEW) == {"simclr", "moco", "byol", "simsiam", "barlowtwins", "vicreg"}


@pytest.mark.parametrize("name", TWO_VIEW)
def test_views_reach_the_encoder_channels_last_in_the_declared_batches(name):
    cls = get_method(name)
    config = build_config(cls.Config, "tiny", {})
    method = cls(config).to(memory_format=torch.channels_last)
    calls = []
    method.encoder.register_forward_hook(
        lambda m, args, out: calls.append(
            (args[0].shape[0], args[0].is_contiguous(memory_format=torch.channels_last))
        )
    )
    torch.manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 20, 20), dtype=torch.uint8)
    loss, _ = method.training_step({"images": images})
    assert torch.isfinite(loss)
    if name == "moco":  # the query view only (keys go to the key encoder), in bn_splits chunks
        expected = [(4 // config.bn_splits, True)] * config.bn_splits
    else:
        expected = [(8, True)] if cls.views_in_one_batch else [(4, True), (4, True)]
    assert calls == expected


@pytest.mark.parametrize("name", TWO_VIEW)
def test_shared_fields_keep_their_choices_and_order(name):
    fields = {f["name"]: f for f in config_fields(get_method(name).Config)}
    shared = {f["name"]: f for f in config_fields(TwoViewConfig)}
    for key in ("backbone", "small_stem", "augmentation"):
        assert fields[key]["choices"] == shared[key]["choices"], key
        assert fields[key]["help"], key
    names = [f.name for f in dataclasses.fields(get_method(name).Config)]
    assert names[: len(shared)] == list(shared)  # the method's own settings come after


@pytest.mark.parametrize("name", TWO_VIEW)
def test_crop_min_scale_sets_both_views_crop_range_and_zero_keeps_the_presets(name):
    cls = get_method(name)
    for augmentation, preset in (("natural", (0.2, 1.0)), ("synthetic", (0.3, 1.0))):
        default = cls(build_config(cls.Config, "tiny", {"augmentation": augmentation}))
        assert [v.plan.crop_scale for v in default.views] == [preset, preset]
        tuned = cls(
            build_config(cls.Config, "tiny", {"augmentation": augmentation, "crop_min_scale": 0.6})
        )
        assert [v.plan.crop_scale for v in tuned.views] == [(0.6, 1.0), (0.6, 1.0)]


def test_crop_min_scale_out_of_range_is_refused_with_its_name():
    from engine.errors import SpecError

    cls = get_method("simclr")
    with pytest.raises(SpecError, match="crop_min_scale"):
        build_config(cls.Config, "tiny", {"crop_min_scale": 1.5})
