"""The public API: the user-facing actions as named endpoints (`gr.api`).

    from gradio_client import Client
    client = Client("http://127.0.0.1:7860/")
    job_id = client.predict({"method": "simclr", "dataset": "digits"}, api_name="/submit")
    client.predict(job_id, api_name="/job")["status"]

Every UI event (timer ticks, form refills, zoom) is registered with api_visibility="private",
so this module is the whole public surface, with one exception: the lens tabs (`lens_*.py`)
publish their own endpoints (`/attention`, `/reconstruct`, `/views`, ...), because their images
need the components' file handling; `LENS_ENDPOINTS` lists them. A refused request raises `gr.Error` with the
engine's message, which the client re-raises; a bug raises "internal error, logged on the server
(id N)" and leaves its traceback in the server log.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

import gradio as gr

from engine.contract import Studio
from webapp.errors import api_error, argument_checker

ENDPOINTS = (
    "submit",
    "cancel",
    "resume",
    "jobs",
    "job",
    "metrics",
    "methods",
    "datasets",
    "method_form",
    "leaderboard",
    "evaluate",
    "evaluate_baseline",
    "evaluate_model",
    "evaluations",
    "embeddings",
)
# Published by the lens tabs (see webapp/lens_common.py), not registered here.
LENS_ENDPOINTS = (
    "attention",
    "reconstruct",
    "views",
    "zero_shot",
    "retrieve",
    "fill_mask",
    "generate",
    "text2text",
)


def _user_errors(fn: Callable) -> Callable:
    """`fn` as an endpoint: each argument checked against its annotation first (a boolean is
    no job id, a dict no name), then a user's error (StudioError) becomes gr.Error with its
    message, and a bug gr.Error("internal error, logged on the server (id N)") with the
    traceback in the server log (see webapp/errors.py)."""
    check = argument_checker(fn)

    @wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            check(*args, **kwargs)
            return fn(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - sorted into the user's and bugs
            raise api_error(error, f"/{fn.__name__}") from None

    return wrapped


def register(studio: Studio) -> None:
    """Add the endpoints to the Blocks being built (call inside `with gr.Blocks()`)."""

    def submit(spec: dict) -> int:
        """Validate and queue a job: {"method", "dataset", "preset", "seed", "params"}.
        Returns the job id."""
        return studio.submit(spec)

    def cancel(job_id: int) -> str:
        """Stop a job: "cancelled" (it was queued) or "stopping" (after its current step)."""
        return studio.cancel(int(job_id))

    def resume(job_id: int) -> int:
        """Queue a cancelled, interrupted or failed job again from its last checkpoint."""
        return studio.resume(int(job_id))

    def jobs() -> list:
        """Every job (without its configuration), newest last."""
        return studio.jobs()

    def job(job_id: int) -> dict:
        """One job with its spec, resolved config, checkpoints and error."""
        return studio.job(int(job_id))

    def metrics(job_id: int, since_step: int = -1) -> list:
        """A job's metric points after `since_step`: [{"step", "name", "value"}, ...]."""
        return studio.metrics(int(job_id), int(since_step))

    def methods() -> list:
        """The registered methods with their descriptions, backbones and presets."""
        return studio.methods()

    def datasets() -> list:
        """The datasets, with whether each is available here."""
        return studio.datasets()

    def method_form(method: str, preset: str = "quick") -> list:
        """A method's settings: name, type, default under `preset`, help, choices, bounds."""
        return studio.method_form(method, preset)

    def leaderboard() -> list:
        """Every evaluated job and baseline with its figures (knn_top1, knn_top5, linear_top1,
        fewshot_Nshot, finetune_Npct, finetune_Npct_scratch), as stored."""
        return studio.leaderboard()

    def evaluate(job_id: int, protocol: str = "knn", dataset: str = "") -> dict:
        """Evaluate a finished job (knn, linear, fewshot or finetune) on a labelled dataset
        ("" = its eval or training dataset); stored with its baselines. Returns the result."""
        return studio.evaluate(int(job_id), protocol, dataset or None)

    def evaluate_baseline(
        baseline: str,
        dataset: str,
        backbone: str = "resnet18",
        protocol: str = "knn",
        image_size: int = 32,
    ) -> dict:
        """Evaluate a baseline: "pixels" or "random" (the backbone at random init)."""
        return studio.evaluate_baseline(baseline, dataset, backbone, protocol, int(image_size))

    def evaluate_model(model: str, dataset: str, protocol: str = "knn") -> dict:
        """Evaluate a transformers image model, a Hub id such as "facebook/dinov2-small" or a
        model folder under the data roots (knn, linear, fewshot or segmentation) on a labelled
        dataset; stored, and listed on the leaderboard. Returns the result."""
        return studio.evaluate_model(model, dataset, protocol)

    def evaluations(job_id: int) -> list:
        """A job's stored evaluations: protocol, dataset, params, results, figures."""
        return studio.evaluations(int(job_id))

    def embeddings(
        model: str,
        dataset: str = "digits",
        samples: int = 1000,
        projection: str = "pca",
        params: dict | None = None,
        split: str = "train",
        texts: str = "none",
        dims: int = 2,
    ) -> dict:
        """A 2-D map of `samples` rows of `dataset` under `model` (a job id, "random:<job id>",
        "pixels" or a Hub id): `projection` "pca", "umap" (params n_neighbors, min_dist) or
        "tsne" (perplexity); `dims` 3 for the 3-D view. Returns {"traces": one per label
        [{"name", "x", "y" (and "z"), "index", "text"}], "knn_top1" (leave-one-out k-NN of
        the embeddings), "model", "num_points", "dims", "feature_dim", "message", "timing",
        ...}."""
        from webapp.explorer_maps import summary, traces

        view = studio.project(
            model, dataset, int(samples), projection, params or None, split, texts, None, dims
        )
        return {**summary(view), "traces": traces(view)}

    for fn in (
        submit,
        cancel,
        resume,
        jobs,
        job,
        metrics,
        methods,
        datasets,
        method_form,
        leaderboard,
        evaluate,
        evaluate_baseline,
        evaluate_model,
        evaluations,
        embeddings,
    ):
        gr.api(_user_errors(fn), api_name=fn.__name__)
