"""Export a run's checkpoint as one folder that loads without the studio, with a model card.

    folder = export_run(home, store, job_id, out_dir, step=None)   # newest checkpoint by default
    archive = zip_folder(folder)                                    # <folder>.zip beside it

What the folder holds depends on the network the method trains:
- transformers models (DINO with a ViT, MAE, BEiT, CLIP, BERT, GPT, T5): the checkpoint's
  `pretrained/` folder (`save_pretrained`, with its tokenizer or processor) at the top level,
  plus an image processor for the image-only ViTs, so `AutoModel.from_pretrained(folder)` and
  `AutoImageProcessor` / `AutoTokenizer` / `AutoProcessor` work on it as they are;
- conv-net encoders (SimCLR, MoCo, BYOL, SimSiam, Barlow Twins, VICReg, rotation, jigsaw,
  colorization, DINO with a ResNet): the trunk that `embed` runs as `model.safetensors`, a
  `config.json` saying how to rebuild it, and a short `load.py` that rebuilds the torchvision
  ResNet or the small convnet with plain torch and preprocesses images as training did;
- always: `README.md` (the model card, `engine.model_card`), `loss_curve.png`, and
  `training_config.json` (the job's spec and resolved config).
The folder is written under a temporary name beside `out_dir` and renamed when complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from engine import checkpoints
from engine.errors import JobError
from engine.export_text import SNIPPETS, load_script
from engine.model_card import CardFacts, write_card

EXPORT_FORMAT = "pretext-studio-encoder"
TRAINING_CONFIG_FILE = "training_config.json"
# Where a conv method's `embed` finds its trunk and what input it gives it (the default:
# `encoder`, ImageNet-normalised RGB). tests/engine/test_export.py checks every conv method's
# load.py against its `embed`, so a method that embeds otherwise fails there until added here.
_CONV_TRUNKS: dict[str, tuple[str, str]] = {
    "dino": ("teacher.backbone", "imagenet"),
    "jigsaw": ("encoder", "standardize"),
    "colorization": ("encoder", "lightness"),
}
# Image-only transformers methods: the preprocessing `embed` applies is ImageNet's mean and std.
_VIT_METHODS = ("dino", "dinov2", "mae", "beit")
_PIPELINE_TAGS = {
    "clip": "zero-shot-image-classification",
    "bert": "fill-mask",
    "gpt": "text-generation",
    "t5": "text2text-generation",
}


def export_run(
    home: Any, store: Any, job_id: int, out_dir: str | os.PathLike, step: int | None = None
) -> Path:
    """Write job `job_id`'s checkpoint `step` (default: the newest) into `out_dir` (created;
    it must not exist or be empty) as a folder that loads without the studio; returns it.
    JobError: an unknown job, a job without checkpoints, an unknown step, a non-empty
    `out_dir`."""
    from engine.runs import open_run

    job = store.get_job(int(job_id))
    if job is None:
        raise JobError(f"no job {job_id}; `python -m engine jobs` lists them")
    checkpoint = checkpoint_of(job, step)
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise JobError(
            f"{out} exists and is not empty; give a new folder (it is created) or empty it first"
        )
    method, info = open_run(job, checkpoints.step_of(checkpoint), cache_dir=home.cache_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:12]}"  # one per call (web threads)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if is_conv(method):
            snippet, library = export_conv(method, tmp), "pytorch"
        else:
            snippet, library = _export_transformers(method, checkpoint, tmp), "transformers"
        extra_images = []
        if (checkpoint / "colorized.png").exists():  # colorization's samples
            shutil.copy2(checkpoint / "colorized.png", tmp / "colorized.png")
            extra_images.append(
                ("colorized samples: grey input, prediction, original", "colorized.png")
            )
        config = dataclasses.asdict(info.config)
        training = {
            "job_id": job.id,
            "method": info.method,
            "dataset": job.dataset,
            "preset": job.preset,
            "step": info.step,
            "spec": job.spec,
            "config": config,
        }
        (tmp / TRAINING_CONFIG_FILE).write_text(json.dumps(training, indent=1, default=str))
        facts = _facts(store, job, method, info.step or 0, config, snippet, library)
        facts.extra_images = extra_images
        facts.files = sorted(
            [p.name for p in tmp.iterdir()]
            + ["README.md"]
            + (["loss_curve.png"] if facts.losses else [])
        )
        write_card(tmp, facts)
        try:
            if out.exists():
                out.rmdir()  # empty when checked above
            os.rename(tmp, out)
        except OSError:  # another export filled it meanwhile
            raise JobError(f"{out} was written meanwhile by another export; export again") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def checkpoint_of(job: Any, step: int | None) -> Path:
    """The checkpoint folder of `step` (None: the newest) of a job row; JobError naming the
    steps there are when it has none or not that one."""
    run_dir = Path(job.run_dir) if job.run_dir else None
    found = (
        checkpoints.checkpoint_dir(run_dir).glob(f"{checkpoints.STEP_PREFIX}*") if run_dir else []
    )
    steps = sorted(checkpoints.step_of(p) for p in found if (p / "model.safetensors").exists())
    if not steps:
        raise JobError(
            f"job {job.id} has no checkpoint yet ({job.status}); export it once it has saved "
            "one (every checkpoint_every steps, and when it stops)"
        )
    if step is None:
        return checkpoints.latest(run_dir) or checkpoints.at_step(run_dir, steps[-1])
    path = checkpoints.at_step(run_dir, int(step))
    if path is None:
        raise JobError(
            f"job {job.id} has no checkpoint of step {step}; its checkpoints are at steps "
            f"{', '.join(map(str, steps))} (older ones are rotated away)"
        )
    return path


def zip_folder(folder: str | os.PathLike) -> Path:
    """`<folder>.zip` beside the folder (replaced if there), holding the folder by its name."""
    folder = Path(folder)
    archive = folder.with_name(folder.name + ".zip")
    archive.unlink(missing_ok=True)
    made = shutil.make_archive(str(folder), "zip", root_dir=folder.parent, base_dir=folder.name)
    return Path(made)


# ---- conv-net encoders --------------------------------------------------------------------
def is_conv(method: Any) -> bool:
    """Whether the method embeds with a conv trunk (`build_resnet`), exported for plain torch."""
    from engine.models.resnet import CNN_BACKBONES

    return method.modality == "image" and getattr(method.config, "backbone", "") in CNN_BACKBONES


def conv_trunk(method: Any) -> tuple[Any, str]:
    """(the conv trunk `method.embed` runs, the input kind it gives it)."""
    path, kind = _CONV_TRUNKS.get(method.name, ("encoder", "imagenet"))
    module = method
    for part in path.split("."):
        module = getattr(module, part)
    return module, kind


def conv_config(method: Any) -> dict[str, Any]:
    """What `load.py` needs to rebuild the trunk: architecture, stem, input."""
    from torch import nn

    from engine.data.views import IMAGENET_MEAN, IMAGENET_STD
    from engine.models.resnet import ConvNet

    trunk, kind = conv_trunk(method)
    stem = trunk.conv1
    config: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "format_version": 1,
        "method": method.name,
        "architecture": method.config.backbone,
        "stem": {
            "in_channels": stem.in_channels,
            "kernel_size": stem.kernel_size[0],
            "stride": stem.stride[0],
            "padding": stem.padding[0],
        },
        "input": kind,
        "image_size": method.config.image_size,
    }
    if isinstance(trunk, ConvNet):
        config["width"] = trunk.feature_dim // 8
        config["feature_dim"] = trunk.feature_dim
    else:
        config["maxpool"] = not isinstance(trunk.maxpool, nn.Identity)  # the small stem drops it
        config["feature_dim"] = _resnet_dim(trunk)
    if kind == "imagenet":
        config["mean"], config["std"] = list(IMAGENET_MEAN), list(IMAGENET_STD)
    return config


def _resnet_dim(trunk: Any) -> int:
    """Features of a torchvision ResNet trunk: the width of its last block's output."""
    last = trunk.layer4[-1]
    norm = getattr(last, "bn3", None) or last.bn2
    return int(norm.num_features)


def export_conv(method: Any, folder: Path) -> str:
    """Write the trunk's weights, config.json and load.py into `folder`; returns the snippet
    that loads them (shown in the card)."""
    from safetensors.torch import save_file

    trunk, _ = conv_trunk(method)
    config = conv_config(method)
    state = {k: v.detach().to("cpu").contiguous() for k, v in trunk.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    (folder / "load.py").write_text(load_script(config))
    return (
        "# pip install torch safetensors"
        + (" torchvision" if config["architecture"] != "convnet" else "")
        + "\n# in this folder (load.py rebuilds the network with plain torch):\n"
        "from load import load_encoder, preprocess\n\n"
        "encoder = load_encoder()  # eval mode\n"
        f"features = encoder(preprocess(images))  # uint8 (B, 3, {config['image_size']}, "
        f"{config['image_size']}) -> (B, {config['feature_dim']})"
    )


# ---- transformers models ------------------------------------------------------------------
def _export_transformers(method: Any, checkpoint: Path, folder: Path) -> str:
    """Copy the checkpoint's `pretrained/` folder (or export it now) into `folder`, add an
    image processor for the image-only ViTs; returns the loading snippet."""
    source = checkpoint / "pretrained"
    if not (source / "config.json").exists():
        scratch = folder / ".method-export"
        scratch.mkdir()
        method.export(scratch)
        source = scratch / "pretrained"
        if not (source / "config.json").exists():
            raise JobError(
                f"{method.name} exports no model folder for this run "
                f"(backbone {getattr(method.config, 'backbone', '?')}); nothing to export"
            )
    for item in source.iterdir():
        target = folder / item.name
        if item.is_dir():
            shutil.copytree(item, target)
        else:
            shutil.copy2(item, target)
    shutil.rmtree(folder / ".method-export", ignore_errors=True)
    if method.name in _VIT_METHODS and not (folder / "preprocessor_config.json").exists():
        from transformers import ViTImageProcessor

        from engine.data.views import IMAGENET_MEAN, IMAGENET_STD

        size = method.config.image_size
        ViTImageProcessor(
            size={"height": size, "width": size},
            image_mean=list(IMAGENET_MEAN),
            image_std=list(IMAGENET_STD),
        ).save_pretrained(folder)
    return SNIPPETS.get(method.name, SNIPPETS["default"]).strip()


# ---- the card's facts --------------------------------------------------------------------
def _facts(
    store: Any, job: Any, method: Any, step: int, config: dict, snippet: str, library: str
) -> CardFacts:
    from engine.evaluation.runner import leaderboard

    card = dataclasses.asdict(method.card) if method.card else None
    losses = [(s, v) for s, name, v in store.metrics(job.id, -1) if name == "loss" and s <= step]
    rows = leaderboard(store)
    mine = [dict(r, name=f"#{job.id} {method.name}") for r in rows if r.get("job_id") == job.id]
    datasets = {(r["dataset"], r.get("image_size")) for r in mine}
    baselines = [
        r
        for r in rows
        if r["kind"] == "baseline" and (r["dataset"], r.get("image_size")) in datasets
    ]
    pipeline_tag = _PIPELINE_TAGS.get(method.name, "image-feature-extraction")
    return CardFacts(
        method=method.name,
        title=card["title"] if card else method.name,
        job_id=job.id,
        step=step,
        dataset=job.dataset,
        preset=job.preset,
        backbone=str(getattr(method.config, "backbone", "")),
        config=config,
        library_name=library,
        pipeline_tag=pipeline_tag,
        load_snippet=snippet,
        files=[],
        card=card,
        paper=method.paper,
        evaluations=mine + baselines,
        losses=losses,
    )
