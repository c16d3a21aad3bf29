import pytest

from engine.config import TrainSpec, build_config, config_fields
from engine.errors import SpecError
from engine.methods.simclr import SimCLRConfig


def test_preset_then_params_override_defaults():
    config = build_config(SimCLRConfig, "quick", {"steps": "7", "lr": 0.01, "small_stem": "false"})
    assert (config.steps, config.lr, config.small_stem) == (7, 0.01, False)
    assert config.batch_size == SimCLRConfig.PRESETS["quick"]["batch_size"]
    assert build_config(SimCLRConfig, "paper", {}).optimizer == "lars"


@pytest.mark.parametrize(
    "params,message",
    [
        ({"steps": 0}, "steps must be at least 1"),
        ({"steps": 2.5}, "steps must be a whole number"),
        ({"batch_size": -4}, "batch_size must be at least"),
        ({"lr": 0}, "lr must be greater than 0"),
        ({"lr": "fast"}, "lr must be a number"),
        ({"lr": "nan"}, "lr must be a finite number"),
        ({"optimizer": "adam"}, "optimizer must be one of"),
        ({"temprature": 0.1}, "unknown setting.*temprature.*temperature"),
    ],
)
def test_bad_values_name_the_problem(params, message):
    with pytest.raises(SpecError, match=message):
        build_config(SimCLRConfig, "quick", params)


def test_unknown_preset():
    with pytest.raises(SpecError, match="unknown preset 'fast'"):
        build_config(SimCLRConfig, "fast", {})


def test_form_fields_carry_help_choices_and_preset_defaults():
    fields = {f["name"]: f for f in config_fields(SimCLRConfig, "paper")}
    assert fields["backbone"]["choices"] == ["convnet", "resnet18", "resnet50"]
    assert fields["backbone"]["default"] == "resnet50"
    assert fields["temperature"]["help"] and fields["temperature"]["main"]
    assert fields["steps"]["type"] == "int" and fields["lr"]["type"] == "float"


def test_spec_roundtrip_and_unknown_keys():
    spec = TrainSpec("simclr", "digits", params={"steps": 3})
    assert TrainSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(SpecError, match="unknown spec keys"):
        TrainSpec.from_dict({"method": "simclr", "dataset": "digits", "epochs": 3})


def test_each_method_s_help_speaks_of_what_it_trains_on():
    """No image wording in a text method's form; CLIP's batch is image-caption pairs."""
    from engine.registry import get_method, list_methods

    for name in list_methods():
        cls = get_method(name)
        fields = {f["name"]: f["help"] for f in config_fields(cls.Config, "quick")}
        if name in ("bert", "gpt", "t5"):
            assert fields["batch_size"].startswith("Sequences per step"), name
            helps = [h for n, h in fields.items() if n != "image_size"]
            assert not any("image" in h.lower() for h in helps), name
        elif name == "clip":
            assert fields["batch_size"].startswith("Image-caption pairs per step")
        else:
            assert fields["batch_size"].startswith("Images per step"), name
