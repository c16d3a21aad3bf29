"""Job specifications and the shared training configuration.

A `TrainSpec` is what a user asks for: a method, a dataset, a preset and a few overrides. It is
plain JSON so it can be stored with the job and sent from the UI or the CLI. `resolve_config`
turns it into the method's config dataclass: class defaults, then the preset, then the user's
overrides, each checked against the field's type, bounds and choices.

Defaults and help text live once, in the dataclass fields (see `param`); the UI builds its forms
from `config_fields` and the CLI names the same keys in `--set key=value`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from engine import checks
from engine.errors import SpecError
from engine.trackers import REPORT_TO


def param(
    default: Any,
    help: str,
    *,
    choices: list | None = None,
    min: float | None = None,
    max: float | None = None,
    main: bool = False,
    exclusive_min: bool = False,
) -> Any:
    """A config field with its help text, bounds and choices (the UI reads all of them).

    `main` marks the hyperparameters shown in the Train form before "More settings".
    """
    return field(
        default=default,
        metadata={
            "help": help,
            "choices": choices,
            "min": min,
            "max": max,
            "main": main,
            "exclusive_min": exclusive_min,
        },
    )


MAX_STEPS = 10**7  # days of training even on the smallest model; a larger number is a typo

ADAM_BETA2_HELP = (
    "AdamW's beta2 (beta1 is 0.9 in every paper here): the decay of the squared-gradient "
    "average. Each method defaults to its paper's (0.999 is Adam's own; MAE and GPT use "
    "0.95, CLIP's ViT 0.98); lower values react faster to gradient spikes in large-batch "
    "transformer training. Only AdamW reads it."
)


def adam_beta2_param(default: float) -> Any:
    """The `adam_beta2` field with a method's own default (its paper's value)."""
    return param(default, ADAM_BETA2_HELP, min=0.0, max=0.9999)


@dataclass
class TrainConfig:
    """Hyperparameters every method shares; a method's config subclasses this."""

    backbone: str = param("resnet18", "Encoder architecture.", main=True)
    steps: int = param(
        200,
        "Optimizer steps in total. Resume continues up to this number.",
        min=1,
        max=MAX_STEPS,
        main=True,
    )
    batch_size: int = param(
        64,
        "Images per step (each gives its views). Contrastive methods "
        "want large batches: more negatives per step.",
        min=2,
        main=True,
    )
    processes: int = param(
        1,
        "Processes the job trains on: one per GPU with CUDA (NCCL), or CPU processes "
        "(gloo), at most the GPUs or cores the Train tab shows. batch_size is the global "
        "batch: each process takes batch_size / processes rows, so it must divide. More than "
        "one pays off on several GPUs; on a CPU the processes share its cores.",
        min=1,
    )
    lr: float = param(
        1e-3,
        "Peak learning rate, reached after the warmup and then decayed "
        "to zero with a cosine schedule.",
        min=0.0,
        exclusive_min=True,
        main=True,
    )
    weight_decay: float = param(
        1e-4, "Decoupled weight decay; biases and norm layers get none.", min=0.0
    )
    warmup_steps: int = param(10, "Linear learning-rate warmup from zero, in steps.", min=0)
    optimizer: str = param(
        "adamw",
        "AdamW for transformers and small batches; LARS (SGD with "
        "layer-wise trust ratios) is the paper choice for large-batch "
        "ResNet training.",
        choices=["adamw", "lars", "sgd"],
    )
    grad_clip: float = param(
        0.0,
        "Clip the gradient norm to this value (0 turns it off; see grad_clip_mode). Off "
        "unless the method's paper clips (DINO 3.0 per parameter, BEiT and DINOv2 3.0, BERT "
        "and GPT 1.0); the quick presets clip the global norm at 1.0, as their figures in "
        "bench/RESULTS.md were measured: it keeps short high-lr runs from spiking.",
        min=0.0,
    )
    grad_clip_mode: str = param(
        "global",
        "What grad_clip bounds: the norm of all gradients together (global, "
        "torch.nn.utils.clip_grad_norm_) or each parameter tensor's own norm "
        "(per_parameter, DINO's main_dino.py clip_gradients).",
        choices=["global", "per_parameter"],
    )
    adam_beta2: float = adam_beta2_param(0.999)
    image_size: int = param(
        32, "Side of the square training images, in pixels.", min=8, max=512, main=True
    )
    precision: str = param(
        "auto",
        "bf16 autocast for the forward pass (losses stay fp32), or plain fp32. auto picks "
        "bf16 where the device computes it natively (CUDA GPUs, CPUs with AVX-512 or AMX) and "
        "fp32 elsewhere: a CPU that only emulates bf16 ran quick steps 6-20x slower in it.",
        choices=["auto", "bf16", "fp32"],
    )
    compile: bool = param(
        False,
        "torch.compile the method's networks (encoder, heads) before training: the first "
        "steps pay for compiling (tens of seconds to minutes), later ones may run faster on "
        "a GPU; on two CPU cores the small convnet ran no faster. Checkpoints and runs are "
        "the same with or without it.",
    )
    log_every: int = param(1, "Write the loss and learning rate every N steps.", min=1)
    checkpoint_every: int = param(
        100, "Save a resumable checkpoint every N steps (and always at the end or on Stop).", min=1
    )
    health_every: int = param(
        25,
        "Every N steps (and at the last), log collapse metrics of the "
        "encoder on a fixed batch: embedding std (near 1/sqrt(d) when "
        "healthy, 0 when collapsed), effective rank, alignment and "
        "uniformity. 0 turns them off.",
        min=0,
    )
    knn_every: int = param(
        100,
        "Every N steps (and at step 0, the random network, and at the last step of a run "
        "of N steps or more), log "
        "online_knn_top1: the k-NN accuracy (k 20) of 250 training images against 1,000 "
        "other training images, embedded by the encoder as it is then: a curve of what the "
        "encoder has learnt so far (about 1 s per point for a small convnet at 32 px on two "
        "CPU cores, 2-4 s for the ViTs). Datasets with class labels only; 0 turns it off.",
        min=0,
    )
    report_to: str = param(
        "none",
        "Also send every metric point to this experiment tracker (through Accelerate): "
        "tensorboard writes event files into the run folder (open them with `tensorboard "
        "--logdir <run folder>/tensorboard`); trackio, wandb and mlflow log where their own "
        "settings say. Refused when its package is not installed on the server.",
        choices=list(REPORT_TO),
    )

    # Per-preset overrides: "quick" runs in minutes on a laptop CPU, "paper" is the recipe of
    # the method's paper. Subclasses fill these in.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"quick": {}, "paper": {}}


@dataclass
class TrainSpec:
    """What a user asks for. Plain JSON; stored with the job."""

    method: str
    dataset: str
    preset: str = "quick"
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)  # overrides of config fields
    # Evaluation protocols to run when the job completes (engine.evaluation.PROTOCOLS), on
    # `eval_dataset` (default: the training dataset). Left out of `to_dict` when unset, so
    # specs written before these fields existed read back the same.
    evals: list[str] = field(default_factory=list)
    eval_dataset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if not out["evals"]:
            del out["evals"]
        if out["eval_dataset"] is None:
            del out["eval_dataset"]
        return out

    @classmethod
    def from_dict(cls, data: Any) -> TrainSpec:
        """The spec in `data` (JSON), each field's type checked; SpecError names the field."""
        if not isinstance(data, dict):
            raise SpecError(
                'the spec must be a JSON object such as {"method": "simclr", '
                f'"dataset": "digits"}}, got {checks.shown(data)}'
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(key) for key in set(data) - known)
        if unknown:
            raise SpecError(f"unknown spec keys {unknown}; expected some of {sorted(known)}")
        missing = [name for name in ("method", "dataset") if data.get(name) is None]
        if missing:
            raise SpecError(f"the spec needs {' and '.join(missing)}")

        def given(name: str, default: Any) -> Any:  # null (JSON) means the default
            return default if data.get(name) is None else data[name]

        evals = given("evals", [])
        if not isinstance(evals, list):
            raise SpecError(f"evals must be a list of protocols, got {checks.shown(evals)}")
        return cls(
            method=checks.text(data["method"], "method"),
            dataset=checks.text(data["dataset"], "dataset"),
            preset=checks.text(given("preset", "quick"), "preset"),
            seed=checks.whole_number(given("seed", 0), "seed", 0, checks.MAX_SEED),
            params=dict(checks.mapping(given("params", {}), "params")),
            evals=[checks.text(e, "each of evals") for e in evals],
            eval_dataset=checks.optional_text(data.get("eval_dataset"), "eval_dataset"),
        )


def _coerce(name: str, value: Any, kind: type) -> Any:
    """Turn `value` (maybe a string from the CLI or a float from a number widget) into `kind`.
    A boolean is not a number, and a dict or list is no value of any field."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        raise SpecError(f"{name} must be true or false, got {value!r}")
    if kind in (int, float) and isinstance(value, str):  # the CLI's --set key=value
        try:
            value = int(value.strip())
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                raise SpecError(f"{name} must be a number, got {checks.shown(value)}") from None
    if kind is int:
        return checks.whole_number(value, name)
    if kind is float:
        return checks.number(value, name)
    if value is None:
        raise SpecError(f"{name} needs a value")
    if isinstance(value, (dict, list, tuple, set, bool)):
        raise SpecError(f"{name} must be text, got {checks.shown(value)}")
    return checks.text(str(value), name, checks.MAX_REF_CHARS)


def _field_type(f: dataclasses.Field) -> type:
    names = {"int": int, "float": float, "bool": bool, "str": str}
    return names.get(f.type if isinstance(f.type, str) else f.type.__name__, str)


def config_fields(config_cls: type[TrainConfig], preset: str = "quick") -> list[dict[str, Any]]:
    """The form of a method: one dict per field with its default under `preset`."""
    defaults = dataclasses.asdict(build_config(config_cls, preset, {}))
    out = []
    for f in dataclasses.fields(config_cls):
        meta = dict(f.metadata)
        out.append(
            {
                "name": f.name,
                "type": _field_type(f).__name__,
                "default": defaults[f.name],
                "help": meta.get("help", ""),
                "choices": meta.get("choices"),
                "min": meta.get("min"),
                "max": meta.get("max"),
                "main": bool(meta.get("main")),
            }
        )
    return out


def build_config(config_cls: type[TrainConfig], preset: str, params: dict[str, Any]) -> TrainConfig:
    """Class defaults <- preset <- params, each value type-checked and bounds-checked."""
    if not isinstance(preset, str) or preset not in config_cls.PRESETS:
        raise SpecError(
            f"unknown preset {checks.shown(preset)}; choose one of {sorted(config_cls.PRESETS)}"
        )
    checks.mapping(params, "params")
    by_name = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(params) - set(by_name))
    if unknown:
        raise SpecError(
            f"unknown setting(s) {', '.join(unknown)}; this method knows: "
            f"{', '.join(sorted(by_name))}"
        )
    values: dict[str, Any] = {}
    for source in (config_cls.PRESETS[preset], params):
        for name, raw in source.items():
            f = by_name[name]
            value = _coerce(name, raw, _field_type(f))
            meta, got = f.metadata, checks.shown(value)
            if meta.get("choices") and value not in meta["choices"]:
                raise SpecError(f"{name} must be one of {meta['choices']}, got {got}")
            low, high = meta.get("min"), meta.get("max")
            if low is not None:
                if meta.get("exclusive_min") and not value > low:
                    raise SpecError(f"{name} must be greater than {low}, got {got}")
                if value < low:
                    raise SpecError(f"{name} must be at least {low}, got {got}")
            if high is not None and value > high:
                raise SpecError(f"{name} must be at most {high}, got {got}")
            values[name] = value
    return config_cls(**values)
