"""Run a protocol on a job or a baseline, store the result, and read results back as a
leaderboard. `engine.api.Studio` calls these; nothing here is recomputed when it is only viewed.

An evaluation row holds the protocol, the dataset, the parameters (protocol settings plus what
was evaluated: checkpoint step, image size, backbone, baseline) and the results. `figures`
flattens a result into the headline numbers (`knn_top1`, `linear_top1`, `fewshot_5shot`,
`finetune_10pct`, ...) that the leaderboard, the CLI's `eval` object and the UI show.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from engine import checks
from engine.contract import TERMINAL_STATUSES
from engine.data.datasets import load_dataset
from engine.errors import DatasetError, JobError, SpecError
from engine.evaluation import BASELINES, DENSE_PROTOCOLS, PROTOCOLS
from engine.evaluation.features import (
    Subject,
    features,
    hub_subject,
    job_subject,
    labelled_image_dataset,
    pixels_subject,
    random_subject,
)
from engine.evaluation.health import has_image_embed
from engine.home import Home
from engine.registry import get_method
from storage.db import Store, utcnow

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]

DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "knn": {"k": 20, "temperature": 0.07},
    "linear": {
        "weight_decays": [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
        "val_fraction": 0.2,
        "max_iter": 100,
        "seed": 0,
    },
    "fewshot": {"shots": [1, 5, 10], "draws": 5, "seed": 0},
    "finetune": {"fractions": [0.01, 0.1], "steps": 60, "batch_size": 32, "lr": 3e-4, "seed": 0},
    "segmentation": {"keep": 0.6, "max_images": 1000, "batch_size": 64},
    "reconstruction": {"mask_ratio": 0.75, "seed": 0, "max_images": 1000, "batch_size": 128},
}
# What a Hub model cannot be scored with, and why.
HUB_REFUSED = {
    "finetune": "it fine-tunes the method's network next to the same network from scratch",
    "reconstruction": "it reads the studio MAE's decoder and its pixel normalisation",
}
FINISHED = TERMINAL_STATUSES  # a job that stopped, one way or another, can be evaluated
MAX_SETTING = 10**7  # the largest whole-number setting (steps, iterations, k, draws)


def check_protocol(protocol: str) -> str:
    if not isinstance(protocol, str) or protocol not in PROTOCOLS:
        raise SpecError(
            f"unknown protocol {checks.shown(protocol)}; choose one of: {', '.join(PROTOCOLS)}"
        )
    return protocol


def resolve_params(protocol: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The protocol's defaults updated with `params` (unknown keys refused, each value of its
    default's type: whole numbers from 0, numbers, lists of them)."""
    defaults = DEFAULT_PARAMS[check_protocol(protocol)]
    checks.mapping(params or {}, "params")
    unknown = sorted(set(params or {}) - set(defaults))
    if unknown:
        raise SpecError(
            f"unknown {protocol} setting(s) {', '.join(unknown)}; it knows: {', '.join(defaults)}"
        )
    return {
        **defaults,
        **{
            name: _setting(f"{protocol} setting {name}", value, defaults[name])
            for name, value in (params or {}).items()
        },
    }


def _setting(label: str, value: Any, default: Any) -> Any:
    if isinstance(default, list):
        if not isinstance(value, list) or not value:
            raise SpecError(f"{label} must be a non-empty list, got {checks.shown(value)}")
        return [_setting(label, item, default[0]) for item in value]
    if isinstance(default, int):
        high = checks.MAX_SEED if label.endswith("seed") else MAX_SETTING
        return checks.whole_number(value, label, 0, high)
    return checks.number(value, label)


def check_request(
    method: str, evals: list[str], eval_dataset: str | None, train_dataset: str
) -> None:
    """What `Studio.validate` checks of a spec's evaluations (SpecError/DatasetError)."""
    if not evals:
        return
    if not isinstance(evals, (list, tuple)):
        raise SpecError(f"evals must be a list of protocols, got {checks.shown(evals)}")
    for protocol in evals:
        check_protocol(protocol)
    cls = get_method(method)
    if not has_image_embed(cls):
        raise SpecError(
            f"{method} is a {cls.modality} method: it has no image features for "
            f"{', '.join(evals)}; leave the evaluations empty"
        )
    labelled_image_dataset(eval_dataset or train_dataset)


# ---- results as figures --------------------------------------------------------------------
def figures(protocol: str, results: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of one result, e.g. {"knn_top1": 0.93, "knn_top5": 0.99}."""
    out: dict[str, float] = {}
    if protocol == "knn":
        out = {"knn_top1": results["top1"], "knn_top5": results["top5"]}
    elif protocol == "linear":
        out = {"linear_top1": results["top1"]}
    elif protocol == "fewshot":
        for shots, row in results["shots"].items():
            out[f"fewshot_{shots}shot"] = row["mean"]
            out[f"fewshot_{shots}shot_std"] = row["std"]
    elif protocol == "finetune":
        for key, row in results["fractions"].items():
            main = row.get("pretrained_top1", row.get("random_top1"))
            if main is not None:
                out[f"finetune_{key}"] = main
            if "scratch_top1" in row:
                out[f"finetune_{key}_scratch"] = row["scratch_top1"]
    elif protocol == "segmentation":
        out = {
            "seg_jaccard_best": results["jaccard_best_head"],
            "seg_jaccard_mean": results["jaccard_mean_heads"],
        }
    elif protocol == "reconstruction":
        out = {
            "recon_psnr": results["psnr"],
            "recon_psnr_mean_colour": results["psnr_mean_colour"],
            "recon_psnr_nearest": results["psnr_nearest_visible"],
            "recon_margin_db": results["margin_db"],
        }
    return {k: round(float(v), 4) for k, v in out.items()}


def evaluation_to_dict(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "job_id": row.job_id,
        "protocol": row.protocol,
        "dataset": row.dataset,
        "params": row.params,
        "results": row.results,
        "figures": figures(row.protocol, row.results),
        "created_at": row.created_at.isoformat(timespec="seconds") + "Z",
    }


# ---- running a protocol --------------------------------------------------------------------
def _stage(on_progress: Progress | None, low: float, high: float) -> Progress | None:
    if on_progress is None:
        return None
    return lambda f, text: on_progress(low + (high - low) * min(max(f, 0.0), 1.0), text)


def run_protocol(
    protocol: str,
    subject: Subject,
    dataset: str,
    params: dict[str, Any],
    cache_root: Any,
    on_progress: Progress | None = None,
    scratch: Subject | None = None,
) -> dict[str, Any]:
    """Results of `protocol` on `subject`'s features of `dataset` (train -> test)."""
    info = labelled_image_dataset(dataset)
    num_classes = info["num_classes"]
    if protocol in DENSE_PROTOCOLS:
        return _run_dense(protocol, subject, dataset, params, cache_root, on_progress)
    if protocol == "finetune":
        from engine.evaluation.finetune import FinetuneSettings, finetune

        if subject.make_method is None:
            raise SpecError(
                "the pixels baseline has no network to fine-tune; fine-tune the "
                "random baseline (--baseline random) instead"
            )
        train = load_dataset(dataset, "train", subject.image_size, cache_dir=cache_root)
        test = load_dataset(dataset, "test", subject.image_size, cache_dir=cache_root)
        precision = getattr(subject.config, "precision", "fp32")
        settings = FinetuneSettings(
            fractions=[float(f) for f in params["fractions"]],
            steps=int(params["steps"]),
            batch_size=int(params["batch_size"]),
            lr=float(params["lr"]),
            seed=int(params["seed"]),
            precision=precision,
        )
        makers = {"pretrained": subject.make_method}
        if scratch is not None:
            makers["scratch"] = scratch.make_method
        elif subject.step is None:  # a baseline: its own network is the random one
            makers = {"random": subject.make_method}
        fractions = finetune(
            makers,
            train.images,
            train.labels,
            test.images,
            test.labels,
            num_classes,
            settings,
            on_progress,
        )
        return {"fractions": fractions, "num_train": len(train), "num_test": len(test)}

    split = features(subject, dataset, cache_root, _stage(on_progress, 0.0, 0.8))
    (train_x, train_y), (test_x, test_y) = split["train"], split["test"]
    if on_progress is not None:
        on_progress(0.85, f"running {protocol}")
    common = {
        "num_train": len(train_y),
        "num_test": len(test_y),
        "feature_dim": int(train_x.shape[1]),
    }
    if protocol == "knn":
        from engine.evaluation.knn import knn_evaluate

        out = knn_evaluate(
            train_x,
            train_y,
            test_x,
            test_y,
            num_classes,
            int(params["k"]),
            float(params["temperature"]),
        )
    elif protocol == "linear":
        from engine.evaluation.linear import linear_probe

        out = linear_probe(
            train_x,
            train_y,
            test_x,
            test_y,
            num_classes,
            [float(w) for w in params["weight_decays"]],
            float(params["val_fraction"]),
            int(params["max_iter"]),
            int(params["seed"]),
        )
    else:
        from engine.evaluation.fewshot import few_shot

        out = {
            "shots": few_shot(
                train_x,
                train_y,
                test_x,
                test_y,
                num_classes,
                [int(n) for n in params["shots"]],
                int(params["draws"]),
                int(params["seed"]),
            )
        }
    return {**out, **common}


def _run_dense(
    protocol: str,
    subject: Subject,
    dataset: str,
    params: dict[str, Any],
    cache_root: Any,
    on_progress: Progress | None,
) -> dict[str, Any]:
    """`segmentation` or `reconstruction` of `subject` on the first `max_images` test images."""
    if subject.make_method is None:
        raise SpecError(
            f"the pixels baseline has no network for {protocol}; evaluate a run, or the "
            "random baseline (--baseline random) of its architecture"
        )
    count = int(params["max_images"])
    if protocol == "segmentation":
        from engine.evaluation.segmentation import evaluate_segmentation, vision_model

        if subject.make_lens is not None:  # a Hub model: the Attention lens's loader
            lm = subject.make_lens()
        else:
            lm = vision_model(subject.make_method(), subject.key)
        test = load_dataset(dataset, "test", lm.image_size, cache_dir=cache_root)
        if test.masks is None:
            raise DatasetError(
                f"dataset {dataset!r} has no object masks, and segmentation scores attention "
                "against them; evaluate on a set that draws them, such as shapes"
            )
        return evaluate_segmentation(
            lm,
            _first_images(test.images, count),
            test.masks[:count],
            float(params["keep"]),
            segmentation_batch(int(params["batch_size"]), lm.image_size, lm.patch_size),
            on_progress,
        )
    from engine.data.views import IMAGENET_MEAN, IMAGENET_STD
    from engine.evaluation.reconstruction import evaluate_reconstruction, mae_model

    model = mae_model(subject.make_method(), subject.key)
    test = load_dataset(dataset, "test", subject.image_size, cache_dir=cache_root)
    return evaluate_reconstruction(
        model,
        _first_images(test.images, count),
        IMAGENET_MEAN,  # what the studio's MAE normalises with (engine.data.views.normalize)
        IMAGENET_STD,
        float(params["mask_ratio"]),
        int(params["seed"]),
        int(params["batch_size"]),
        on_progress,
    )


def segmentation_batch(batch_size: int, image_size: int, patch_size: int) -> int:
    """`batch_size` cut so that a batch's attention maps (batch x tokens^2 per head and layer)
    take no more than a batch of 64 at 257 tokens (224 px in 14 px patches): a model read at
    518 px (1,370 tokens) runs 2 images at a time, not 64 (some 35 GB of maps)."""
    tokens = (image_size // max(1, patch_size)) ** 2 + 1
    return max(1, min(batch_size, 64 * 257 * 257 // (tokens * tokens)))


def _first_images(images: Any, count: int) -> Any:
    """The first `count` rows of a split as a tensor (a streamed split reads just those)."""
    return images[: min(count, len(images))]


# ---- jobs ----------------------------------------------------------------------------------
def evaluate_job(
    home: Home,
    store: Store,
    job_id: int,
    protocol: str,
    dataset: str | None = None,
    params: dict[str, Any] | None = None,
    on_progress: Progress | None = None,
    with_baselines: bool = True,
    require_finished: bool = True,
) -> dict[str, Any]:
    """Evaluate the job's latest checkpoint with `protocol` on `dataset` (default: the spec's
    eval_dataset, else the training dataset), store it, and return the stored row. With
    `with_baselines`, the pixels and random baselines of the same protocol, dataset and
    image size are computed too when the store has none yet."""
    check_protocol(protocol)
    settings = resolve_params(protocol, params)
    job = store.get_job(checks.job_id(job_id))
    if job is None:
        raise JobError(f"no job {job_id}; `python -m engine jobs` lists them")
    if require_finished and job.status not in FINISHED:
        raise JobError(f"job {job_id} is {job.status}; evaluate it once it has finished")
    dataset = dataset or job.spec.get("eval_dataset") or job.dataset
    labelled_image_dataset(dataset)
    subject = job_subject(job, home.cache_dir)
    scratch = None
    if protocol == "finetune":
        scratch = random_subject(
            subject.backbone,
            subject.image_size,
            home.cache_dir,
            subject.method,
            subject.config,
            seed=settings["seed"],
        )
    stored = dict(
        settings,
        checkpoint_step=subject.step,
        image_size=subject.image_size,
        method=subject.method,
        backbone=subject.backbone,
    )
    job_share = 0.6 if with_baselines and protocol != "finetune" else 1.0
    results = run_protocol(
        protocol,
        subject,
        dataset,
        settings,
        home.cache_dir,
        _stage(on_progress, 0.0, job_share),
        scratch,
    )
    row_id = store.add_evaluation(job.id, protocol, dataset, stored, results)
    if with_baselines:
        _ensure_baselines(
            home,
            store,
            protocol,
            dataset,
            settings,
            subject,
            results,
            _stage(on_progress, job_share, 1.0),
        )
    if on_progress is not None:
        on_progress(1.0, "done")
    return next(evaluation_to_dict(r) for r in store.evaluations(job.id) if r.id == row_id)


def _baseline_rows(store: Store) -> list[Any]:
    return [r for r in store.evaluations() if r.job_id is None]


def _has_baseline(
    store: Store,
    baseline: str,
    protocol: str,
    dataset: str,
    backbone: str,
    image_size: int,
    method: str | None = None,
) -> bool:
    """A random baseline is the job's own network at random init: the same backbone name
    is a different network under another method (colorization's ResNet reads L only, BEiT's
    ViT is not MAE's), so it matches on the method too."""
    for row in _baseline_rows(store):
        p = row.params
        if (
            row.protocol == protocol
            and row.dataset == dataset
            and p.get("baseline") == baseline
            and p.get("image_size") == image_size
            and (
                baseline == "pixels"
                or (p.get("backbone") == backbone and p.get("method") == method)
            )
        ):
            return True
    return False


def _ensure_baselines(
    home: Home,
    store: Store,
    protocol: str,
    dataset: str,
    settings: dict[str, Any],
    subject: Subject,
    results: dict[str, Any],
    on_progress: Progress | None,
) -> None:
    """Store the pixels and random baselines matching a job's evaluation when missing."""
    size, backbone = subject.image_size, subject.backbone
    try:
        if protocol == "finetune":
            # The job's scratch runs are the random baseline's fine-tuning: store them as such.
            if not _has_baseline(
                store, "random", protocol, dataset, backbone, size, subject.method
            ):
                fractions = {
                    k: {
                        "fraction": v["fraction"],
                        "num_labels": v["num_labels"],
                        "random_top1": v["scratch_top1"],
                    }
                    for k, v in results["fractions"].items()
                    if "scratch_top1" in v
                }
                store.add_evaluation(
                    None,
                    protocol,
                    dataset,
                    dict(
                        settings,
                        baseline="random",
                        backbone=backbone,
                        image_size=size,
                        method=subject.method,
                    ),
                    {**results, "fractions": fractions},
                )
            return
        todo = [
            b
            for b in ("pixels", "random")
            if not _has_baseline(store, b, protocol, dataset, backbone, size, subject.method)
            and not (b == "pixels" and protocol in DENSE_PROTOCOLS)
        ]
        for i, baseline in enumerate(todo):
            if baseline == "pixels":
                base = pixels_subject(size, home.cache_dir)
            else:
                base = random_subject(
                    backbone, size, home.cache_dir, subject.method, subject.config
                )
            part = _stage(on_progress, i / len(todo), (i + 1) / len(todo))
            out = run_protocol(protocol, base, dataset, settings, home.cache_dir, part)
            store.add_evaluation(
                None,
                protocol,
                dataset,
                dict(
                    settings,
                    baseline=baseline,
                    backbone="pixels" if baseline == "pixels" else backbone,
                    image_size=size,
                    method=None if baseline == "pixels" else subject.method,
                ),
                out,
            )
    except Exception:  # a baseline failing must not lose the job's own result
        log.exception("baseline for %s on %s failed", protocol, dataset)


def evaluate_baseline(
    home: Home,
    store: Store,
    baseline: str,
    dataset: str,
    protocol: str = "knn",
    backbone: str = "resnet18",
    image_size: int = 32,
    params: dict[str, Any] | None = None,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate a baseline ("pixels" or "random" with `backbone`) on `dataset`; stored."""
    if not isinstance(baseline, str) or baseline not in BASELINES:
        raise SpecError(
            f"unknown baseline {checks.shown(baseline)}; choose one of: {', '.join(BASELINES)}"
        )
    check_protocol(protocol)
    settings = resolve_params(protocol, params)
    labelled_image_dataset(dataset)
    image_size = checks.whole_number(image_size, "image_size")
    if baseline == "pixels":
        subject = pixels_subject(int(image_size), home.cache_dir)
        stored = dict(
            settings, baseline="pixels", backbone="pixels", image_size=int(image_size), method=None
        )
    else:
        subject = random_subject(backbone, int(image_size), home.cache_dir)
        stored = dict(
            settings,
            baseline="random",
            backbone=backbone,
            image_size=subject.image_size,
            method=subject.method,
        )
    return _run_unowned(home, store, protocol, subject, dataset, settings, stored, on_progress)


def evaluate_model(
    home: Home,
    store: Store,
    source: str,
    dataset: str,
    protocol: str = "knn",
    params: dict[str, Any] | None = None,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate a transformers model from the Hub or a local folder (e.g. facebook/dinov2-small
    or an exported run) on `dataset`, the way a job is: frozen features for knn, linear and
    fewshot, its [CLS] attention for segmentation. Stored as a row with no job (baseline
    "hub", the source under "model"), so the leaderboard lists it beside the runs."""
    check_protocol(protocol)
    settings = resolve_params(protocol, params)
    labelled_image_dataset(dataset)
    _check_hub_protocol(protocol, source)
    subject = hub_subject(source, home.root, home.cache_dir, dataset)
    stored = dict(
        settings,
        baseline="hub",
        model=source,
        backbone=subject.backbone,
        image_size=subject.image_size,
        method=None,
    )
    return _run_unowned(home, store, protocol, subject, dataset, settings, stored, on_progress)


def _check_hub_protocol(protocol: str, source: str) -> None:
    if protocol in HUB_REFUSED:
        raise SpecError(
            f"{protocol} scores the studio's own runs ({HUB_REFUSED[protocol]}); evaluate "
            f"{source} with {', '.join(p for p in PROTOCOLS if p not in HUB_REFUSED)}"
        )


def _run_unowned(
    home: Home,
    store: Store,
    protocol: str,
    subject: Subject,
    dataset: str,
    settings: dict[str, Any],
    stored: dict[str, Any],
    on_progress: Progress | None,
) -> dict[str, Any]:
    """Run `protocol` on a subject that is no job (a baseline, a Hub model), store the row
    with `stored` as its params, and return it."""
    results = run_protocol(protocol, subject, dataset, settings, home.cache_dir, on_progress)
    row_id = store.add_evaluation(None, protocol, dataset, stored, results)
    if on_progress is not None:
        on_progress(1.0, "done")
    return next(evaluation_to_dict(r) for r in _baseline_rows(store) if r.id == row_id)


def run_end_of_job(
    home: Home,
    store: Store,
    job_id: int,
    evals: list[str],
    dataset: str | None,
    should_stop: Callable[[], bool],
) -> dict[str, Any]:
    """The spec's evaluations at the end of a job (the worker calls this while the job is still
    running). Returns job fields to record: an `error` naming what failed, or nothing."""
    failed = []
    for protocol in evals:
        if should_stop():
            break
        try:
            evaluate_job(home, store, job_id, protocol, dataset, require_finished=False)
        except Exception as exc:
            log.exception("evaluation %s of job %s failed", protocol, job_id)
            failed.append(f"{protocol}: {exc}")
    if failed:
        return {"error": "training completed, but evaluation failed: " + "; ".join(failed)}
    return {}


# ---- reading back --------------------------------------------------------------------------
def job_figures(store: Store, job_id: int) -> dict[str, float]:
    """The newest figures of each protocol a job was evaluated with, merged."""
    out: dict[str, float] = {}
    for row in store.evaluations(int(job_id)):
        out.update(figures(row.protocol, row.results))
    return out


def _at_default_settings(ev: Any) -> bool:
    """Whether a stored evaluation ran with its protocol's default settings."""
    defaults = DEFAULT_PARAMS.get(ev.protocol, {})
    params = ev.params or {}
    return all(params.get(name, value) == value for name, value in defaults.items())


def leaderboard(store: Store) -> list[dict[str, Any]]:
    """One row per evaluated (job, dataset) and per baseline (kind, backbone, dataset, image
    size), newest result of each protocol; jobs first, then baselines, by dataset. A result at
    the protocol's default settings wins over one with other settings (`eval --set`), so a
    row is compared with baselines scored the same way."""
    jobs = {job.id: job for job in store.list_jobs()}
    rows: dict[tuple, dict[str, Any]] = {}
    now = utcnow()
    # Stable sort: other settings first, so a default-settings result overwrites them.
    for ev in sorted(store.evaluations(), key=_at_default_settings):
        p = ev.params or {}
        if ev.job_id is not None:
            job = jobs.get(ev.job_id)
            if job is None:
                continue
            key = ("job", ev.job_id, ev.dataset)
            if key not in rows:
                duration = job.elapsed_before
                if job.status == "running" and job.started_at is not None:
                    duration += (now - job.started_at).total_seconds()
                rows[key] = {
                    "kind": "job",
                    "job_id": job.id,
                    "name": f"#{job.id} {job.method}",
                    "method": job.method,
                    "backbone": job.backbone,
                    "dataset": ev.dataset,
                    "trained_on": job.dataset,
                    "steps": job.step,
                    "wall_time_s": round(duration, 1),
                    "image_size": p.get("image_size"),
                    "status": job.status,
                }
            rows[key]["eval_step"] = p.get("checkpoint_step")
        else:
            baseline = p.get("baseline", "?")
            method = p.get("method") if baseline == "random" else None
            if baseline == "hub":  # a Hub model or folder, one row per source
                method = p.get("model")
            key = ("baseline", baseline, p.get("backbone"), method, ev.dataset, p.get("image_size"))
            if key not in rows:
                if baseline == "pixels":
                    name = "pixels"
                elif baseline == "hub":
                    name = str(p.get("model"))
                else:
                    name = f"random {p.get('backbone')}" + (f" ({method})" if method else "")
                kind = "hub" if baseline == "hub" else "baseline"
                rows[key] = {
                    "kind": kind,
                    "job_id": None,
                    "name": name,
                    # "hub: dinov2", "baseline: random"
                    "method": f"{kind}: {p.get('backbone') if kind == 'hub' else baseline}",
                    "backbone": p.get("backbone"),
                    "dataset": ev.dataset,
                    "trained_on": "",
                    "steps": 0,
                    "wall_time_s": None,
                    "image_size": p.get("image_size"),
                    "status": "",
                }
        rows[key].update(figures(ev.protocol, ev.results))
    return sorted(
        rows.values(),
        key=lambda r: (r["dataset"], r["kind"] != "job", -(r["job_id"] or 0), r["name"]),
    )
