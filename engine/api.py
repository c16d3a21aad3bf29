"""The facade the web app and the CLI both call. Plain Python types in and out.

    studio = Studio(home)            # opens (or creates) the home folder and its database
    job_id = studio.submit({"method": "simclr", "dataset": "digits", "preset": "quick"})
    studio.metrics(job_id, since_step=0)   # only the points after step 0
    studio.cancel(job_id); studio.resume(job_id)

`submit` validates everything before a row is written; a bad spec raises `SpecError` (or
`DatasetError`) whose message names the problem and the fix. The lenses are `studio.lenses`
(engine/api_lenses.py). What the web app may call, and the shapes of the results, are typed in
engine/contract.py (the `Studio` protocol), which imports no torch.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, cast

from engine import checks
from engine.access import AccessError, ServerPaths
from engine.api_lenses import Lenses
from engine.config import TrainConfig, TrainSpec, config_fields
from engine.contract import (
    RESUMABLE_STATUSES,
    AddedDataset,
    DatasetInfo,
    DemoPlan,
    EmbeddingMap,
    EmbeddingModel,
    EvaluationRecord,
    ExportResult,
    FormField,
    HardwareInfo,
    HubColumns,
    JobDetail,
    JobSpec,
    JobStatus,
    JobSummary,
    LeaderboardRow,
    MethodInfo,
    MetricPoint,
    ProtocolInfo,
    PushResult,
    TextSample,
)
from engine.data.datasets import dataset_info, list_datasets
from engine.data.stored import register_user_datasets
from engine.errors import DatasetError, JobError, SpecError
from engine.home import Home
from engine.jobs import JobManager, recover_interrupted
from engine.registry import get_method, list_methods
from engine.runs import resolve
from engine.trackers import check_installed
from storage.db import Store, utcnow
from storage.models import Job


def _since(since_step: Any) -> int:
    """A `since_step` argument: -1 (every point) or a step."""
    return checks.whole_number(since_step, "since_step", -1, checks.MAX_ID)


def _image_size(value: Any) -> int | None:
    """An import's store size as sent (None, "" or 0: the importer's default)."""
    if value is None or value == "" or value == 0:
        return None
    return checks.whole_number(value, "image size", error=DatasetError)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value else None


def job_to_dict(job: Job) -> JobSummary:
    """A job row as plain types, with its wall-clock duration in seconds."""
    duration = job.elapsed_before
    if job.status == JobStatus.RUNNING and job.started_at is not None:
        duration += (utcnow() - job.started_at).total_seconds()
    return {
        "id": job.id,
        "method": job.method,
        "dataset": job.dataset,
        "backbone": job.backbone,
        "preset": job.preset,
        "status": JobStatus(job.status),
        "step": job.step,
        "total_steps": job.total_steps,
        "last_loss": job.last_loss,
        "images_per_second": job.images_per_second,
        "error": job.error,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "duration_s": round(duration, 1),
        "run_dir": job.run_dir,
        "pid": job.pid,
        "host": job.host,
        "cancel_requested": job.cancel_requested,
    }


class Studio:
    """Everything the UI and the CLI can do, over one home folder; its lenses are `lenses`."""

    def __init__(
        self, home: str | os.PathLike | None = None, paths: ServerPaths | None = None
    ) -> None:
        self.home = Home.resolve(home)
        # Which server paths callers may read: anywhere for the CLI; the web app passes
        # ServerPaths.from_env() (inside $PRETEXT_DATA_ROOTS only).
        self.paths = paths or ServerPaths.anywhere()
        self.store = Store.open(self.home.db_path)
        self.manager: JobManager | None = None
        self.lenses = Lenses(self)
        register_user_datasets(self.store)

    # ---- catalog ------------------------------------------------------------------------
    def methods(self) -> list[MethodInfo]:
        out: list[MethodInfo] = []
        for name in list_methods():
            cls = get_method(name)
            backbone = next(f for f in config_fields(cls.Config) if f["name"] == "backbone")
            out.append(
                {
                    "name": name,
                    "description": cls.description,
                    "paper": cls.paper,
                    "modality": cls.modality,
                    "backbones": backbone["choices"] or [],
                    "card": dataclasses.asdict(cls.card) if cls.card else None,
                    "presets": sorted(cls.Config.PRESETS),
                    "default_dataset": cls.default_dataset,
                }
            )
        return out

    def method_form(self, method: str, preset: str = "quick") -> list[FormField]:
        """The method's settings (name, type, default under `preset`, help, choices, bounds)."""
        return cast(list[FormField], config_fields(get_method(method).Config, preset))

    def datasets(self) -> list[DatasetInfo]:
        return cast(list[DatasetInfo], list_datasets())

    def add_image_dataset(
        self,
        source: str | os.PathLike,
        name: str,
        image_size: int | None = None,
        on_progress: Callable[[float, str], None] | None = None,
    ) -> AddedDataset:
        """Check, decode and store a folder or zip of images as dataset `name` (subfolders =
        labels) at `image_size` px (32-512; None: the images' median shorter side, at most 256).
        The same files added again under the same name and size are not decoded again.
        Returns its dataset info plus `message`, which counts what was skipped or refused.
        `on_progress(fraction, text)` reports the decoding."""
        from engine.data.datasets import clear_memory_cache
        from engine.data.stored_images import register_stored_dataset
        from engine.data.user_images import import_images

        source = self.paths.check(source, "image folder or zip")
        datasets_dir = self.home.root / "datasets"
        datasets_dir.mkdir(parents=True, exist_ok=True)
        report = import_images(source, name, datasets_dir, image_size, on_progress)
        earlier = {row.name: row.meta or {} for row in self.store.user_datasets()}
        version = int(utcnow().timestamp())
        if report.reused and report.name in earlier:  # the same pixels: caches stay valid
            version = int(earlier[report.name].get("version", version))
        meta = {
            "store": 1,
            "image_size": report.image_size,
            "num_images": report.num_images,
            "num_train": report.num_train,
            "num_test": report.num_test,
            "num_classes": len(report.class_names),
            "labelled": report.labelled,
            "class_names": report.class_names,
            "skipped_corrupt": report.skipped_corrupt,
            "refused_too_large": report.refused_too_large,
            "captioned": report.captioned,
            "without_caption": report.without_caption,
            "version": version,
        }
        path = str(datasets_dir / report.name)
        kind = "image-text" if report.captioned else "image"
        self.store.save_user_dataset(report.name, kind, path, str(source), meta)
        register_stored_dataset(report.name, path, meta)
        clear_memory_cache()
        return cast(AddedDataset, dict(dataset_info(report.name), message=report.message()))

    def add_text_dataset(
        self,
        source: str | os.PathLike,
        name: str,
        column: str | None = None,
        split: str | None = None,
    ) -> AddedDataset:
        """Store a UTF-8 text file, or one text `column` of a Hugging Face dataset (a folder
        saved with `save_to_disk`, or a Hub name when online), as text dataset `name`.
        Returns its dataset info plus `message` (documents, characters, any cut)."""
        from engine.data import user_text

        source = self.paths.check_source(os.fspath(source), "text file or dataset")
        datasets_dir = self.home.root / "datasets"
        datasets_dir.mkdir(parents=True, exist_ok=True)
        path = Path(source).expanduser()
        if path.is_file():
            report = user_text.import_text_file(path, name, datasets_dir)
        else:
            report = user_text.import_hf_dataset(str(source), name, datasets_dir, column, split)
        meta = {
            **dataclasses.asdict(report),
            "source_name": path.name or str(source),
            "version": int(utcnow().timestamp()),
        }
        folder = str(datasets_dir / report.name)
        self.store.save_user_dataset(report.name, "text", folder, str(source), meta)
        user_text.register_user_corpus(report.name, folder, meta)
        return cast(AddedDataset, dict(dataset_info(report.name), message=report.message()))

    def describe_hf_dataset(self, source: str, split: str | None = None) -> HubColumns:
        """A Hugging Face dataset's split and text columns, to choose one before adding it:
        {"split", "columns", "column" (the default, or "")}."""
        from engine.data.user_text import describe_hf_dataset

        return cast(
            HubColumns, describe_hf_dataset(self.paths.check_source(source, "dataset"), split)
        )

    def _register_stores(self, stores: list[dict[str, Any]], source: str, meta: dict) -> None:
        """Record and register image stores an importer wrote into `<home>/datasets/<name>`."""
        from engine.data.datasets import clear_memory_cache
        from engine.data.stored_images import register_stored_dataset

        version = int(utcnow().timestamp())
        for store in stores:
            folder = str(self.home.root / "datasets" / store["name"])
            labels = (
                f"{len(store['class_names'])} classes" if store["class_names"] else "unlabelled"
            )
            test = f", {store['num_test']:,} test" if store["num_test"] else ", train only"
            row = {
                **meta,
                "description": f"{meta['source_name']} ({store['num_train']:,} train{test}, "
                f"{labels}, stored at {meta['image_size']} px)",
                "store": 1,
                "num_train": store["num_train"],
                "num_test": store["num_test"],
                "num_classes": len(store["class_names"]),
                "labelled": bool(store["class_names"]),
                "class_names": store["class_names"],
                "version": version,
            }
            self.store.save_user_dataset(store["name"], "image", folder, source, row)
            register_stored_dataset(store["name"], folder, row)
        clear_memory_cache()

    def add_torchvision_dataset(
        self,
        name: str,
        root: str | os.PathLike,
        dataset_name: str,
        download: bool = False,
        image_size: int | None = None,
        on_progress: Callable[[float, str], None] | None = None,
    ) -> AddedDataset:
        """Store a torchvision dataset (CIFAR10, CIFAR100, STL10, MNIST, FashionMNIST, SVHN,
        Imagenette) read from its standard layout under `root` as dataset `name` (STL-10's
        unlabeled images also as `<name>-unlabeled`); `download` fetches it there first.
        `image_size` 32-512 (None: the native size). Returns the first dataset's info plus
        `message`. The web reads a root only inside its data roots, never an upload."""
        from engine.data.tv_datasets import canonical_name, import_torchvision

        dataset = canonical_name(checks.text(dataset_name, "torchvision dataset", 40, DatasetError))
        size = _image_size(image_size)
        path = self.paths.check(root, "dataset root")
        if self.paths.restricted and not any(
            path == r or path.is_relative_to(r) for r in self.paths.roots
        ):  # an upload folder is allowed to `check`; CIFAR's pickles are never read from it
            raise AccessError(
                f"a {dataset} root must be a folder inside the data folders "
                f"({', '.join(str(r) for r in self.paths.roots) or 'none'}), not an upload"
            )
        report = import_torchvision(
            dataset, path, name, self.home.root / "datasets", download is True, size, on_progress
        )
        meta = {"source_name": f"torchvision:{dataset}", "image_size": report.size}
        self._register_stores(report.stores, f"torchvision:{dataset}:{path}", meta)
        return cast(AddedDataset, dict(dataset_info(report.name), message=report.message()))

    def add_hf_image_dataset(
        self,
        source: str,
        name: str,
        split: str | None = None,
        image_column: str | None = None,
        label_column: str | None = None,
        image_size: int | None = None,
        on_progress: Callable[[float, str], None] | None = None,
    ) -> AddedDataset:
        """Store a Hugging Face image dataset (a folder saved with `save_to_disk`, or a Hub
        name when online) as image dataset `name`: its `image_column` (default: the `Image`
        one), labels from `label_column` (default: the first ClassLabel), its test split or a
        seeded 10% hold-out. Returns its dataset info plus `message`."""
        from engine.data.hf_images import import_hf_images

        ref = self.paths.check_source(checks.text(source, "dataset", 4096, DatasetError), "dataset")
        size = _image_size(image_size)

        def may_read(file: str) -> bool:
            try:
                self.paths.check(file, "image file")
            except AccessError:
                return False
            return True

        report = import_hf_images(
            ref,
            name,
            self.home.root / "datasets",
            split,
            image_column,
            label_column,
            size,
            may_read,
            on_progress,
        )
        store = {
            "name": report.name,
            "num_train": report.num_train,
            "num_test": report.num_test,
            "class_names": report.class_names,
        }
        meta = {"source_name": f"huggingface:{ref}", "image_size": report.size}
        self._register_stores([store], f"huggingface:{ref}", meta)
        return cast(AddedDataset, dict(dataset_info(report.name), message=report.message()))

    # ---- jobs ---------------------------------------------------------------------------
    def validate(self, spec: TrainSpec | JobSpec | dict[str, Any]) -> tuple[TrainSpec, TrainConfig]:
        """Check a spec completely; raises SpecError/DatasetError, returns it resolved."""
        # "auto" augmentation becomes the dataset's suggestion, as the worker will train it.
        spec, config = resolve(spec.to_dict() if isinstance(spec, TrainSpec) else spec)
        cls = get_method(spec.method)
        cls.check_config(config)
        if config.processes > 1:  # more than the devices, a batch that does not divide, ...
            self._check_processes(config, cls)
        check_installed(config.report_to)  # a tracker without its package would log nothing
        info = dataset_info(spec.dataset)
        if not info["available"]:
            raise DatasetError(f"dataset {spec.dataset!r} is not available: {info['reason']}")
        if cls.modality not in info.get("modalities", [info["kind"]]):
            raise SpecError(
                f"{spec.method} trains on {cls.modality} data; {spec.dataset!r} "
                f"holds {info['kind']}"
            )
        if spec.evals or spec.eval_dataset:  # before the corpus check, which may tokenise
            from engine.evaluation.runner import check_request

            check_request(spec.method, spec.evals, spec.eval_dataset, spec.dataset)
        if info["kind"] == "text":  # packed into blocks: documents do not count, tokens do
            from engine.methods._text import check_corpus

            check_corpus(cls, spec.dataset, config, self.home.cache_dir)
        elif config.batch_size > info["num_train"]:
            raise SpecError(
                f"batch_size {config.batch_size} is larger than the "
                f"{info['num_train']} training images of {spec.dataset}; use at "
                f"most {info['num_train']}"
            )
        return spec, config

    def _check_processes(self, config: TrainConfig | dict[str, Any], cls: type) -> None:
        """Refuse processes this machine or the method cannot run (a stored config too: a
        job resumed on another machine, or after a GPU went away)."""
        from engine import hardware
        from engine.launch import check_processes

        if isinstance(config, dict):
            processes, batch_size = config.get("processes", 1), config.get("batch_size", 1)
        else:
            processes, batch_size = config.processes, config.batch_size
        info = hardware.detect()
        machine = hardware.describe(info)
        check_processes(processes, batch_size, cls, info["max_processes"], machine)

    def _create(self, spec: TrainSpec, config: TrainConfig, **fields: Any) -> int:
        job_id = self.store.create_job(
            method=spec.method,
            dataset=spec.dataset,
            backbone=config.backbone,
            preset=spec.preset,
            spec=spec.to_dict(),
            config=dataclasses.asdict(config),
            total_steps=config.steps,
            **fields,
        )
        self.store.update_job(job_id, run_dir=str(self.home.run_dir(job_id)))
        return job_id

    def submit(self, spec: TrainSpec | JobSpec | dict[str, Any]) -> int:
        """Validate and queue a job; returns its id at once (the manager starts it)."""
        spec, config = self.validate(spec)
        return self._create(spec, config, status="queued")

    def run_foreground(
        self,
        spec: TrainSpec | dict[str, Any],
        on_step: Callable[[int, dict[str, float]], None] | None = None,
        wait: bool = True,
        on_wait: Callable[[list[int]], None] | None = None,
    ) -> dict[str, Any]:
        """Validate, store and run a job in this process (the CLI); returns its summary. With
        `wait` it first waits for a free slot of this home (PRETEXT_MAX_JOBS running jobs);
        `on_wait(job_ids)` hears which jobs it waits for."""
        from engine.jobs import max_jobs

        spec, config = self.validate(spec)
        limit = max_jobs() if wait else None
        # Queued with this process's pid: the job manager leaves it to this process.
        job_id = self._create(
            spec, config, status="queued", pid=os.getpid(), host=socket.gethostname()
        )
        return self._run_here(job_id, limit, on_step, on_wait)

    def resume_foreground(
        self,
        job_id: int,
        on_step: Callable[[int, dict[str, float]], None] | None = None,
        wait: bool = True,
        on_wait: Callable[[list[int]], None] | None = None,
    ) -> dict[str, Any]:
        """Continue a cancelled, interrupted or failed job in this process from its newest
        checkpoint, as `run_foreground` runs a new one; returns its summary."""
        from engine.jobs import max_jobs

        limit = max_jobs() if wait else None
        self.recover()  # a job whose worker was killed shows as interrupted, not running
        job = self.job(job_id)
        self._check_processes(job["config"], get_method(job["method"]))
        if not self.store.transition(
            job["id"],
            RESUMABLE_STATUSES,
            status="queued",
            cancel_requested=False,
            error=None,
            finished_at=None,
            pid=os.getpid(),
            host=socket.gethostname(),
        ):
            raise JobError(
                f"job {job_id} is {job['status']}; only "
                f"{', '.join(RESUMABLE_STATUSES)} jobs can be resumed"
            )
        return self._run_here(job["id"], limit, on_step, on_wait)

    def _run_here(
        self,
        job_id: int,
        limit: int | None,
        on_step: Callable[[int, dict[str, float]], None] | None,
        on_wait: Callable[[list[int]], None] | None,
    ) -> dict[str, Any]:
        from engine.jobs import capacity, processes_of, run_launched, wait_and_claim
        from engine.worker import run_worker

        job = self.store.get_job(job_id)
        processes = processes_of(job) if job is not None else 1
        room = capacity(limit) if limit is not None else None
        try:
            claimed = wait_and_claim(self.store, job_id, limit, on_wait, room=room)
        except BaseException:  # e.g. Ctrl-C while waiting: the job never started
            self.store.transition(job_id, ("queued",), status="cancelled", finished_at=utcnow())
            raise
        if claimed and processes > 1:  # N ranks under `accelerate launch` (engine/launch.py)
            run_launched(self.store, self.home, job_id, on_step=on_step)
        elif claimed:  # else it was cancelled while it waited
            run_worker(self.home, job_id, on_step=on_step)
        return self.summary(job_id)

    def summary(self, job_id: int) -> dict[str, Any]:
        """The CLI's JSON summary of a job."""
        job = self.job(job_id)
        return {
            "job_id": job_id,
            "status": job["status"],
            "method": job["method"],
            "dataset": job["dataset"],
            "backbone": job["backbone"],
            "steps": job["step"],
            "total_steps": job["total_steps"],
            "first_loss": self.store.first_metric(job_id, "loss"),
            "final_loss": job["last_loss"],
            "images_per_second": job["images_per_second"],
            "duration_s": job["duration_s"],
            "run_dir": job["run_dir"],
            "error": job["error"],
            "eval": self.eval_figures(job_id),
        }

    def jobs(self) -> list[JobSummary]:
        return [job_to_dict(j) for j in self.store.list_jobs()]

    def job(self, job_id: int) -> JobDetail:
        job = self.store.get_job(checks.job_id(job_id))
        if job is None:
            raise JobError(f"no job {job_id}; `python -m engine jobs` lists them")
        return {
            **job_to_dict(job),
            "spec": job.spec,
            "config": job.config,
            "checkpoints": [
                {"step": c.step, "dir": c.path} for c in self.store.checkpoints(job.id)
            ],
        }

    def metrics(self, job_id: int, since_step: int = -1) -> list[MetricPoint]:
        """Metric points with step > since_step: [{"step", "name", "value"}, ...]."""
        return [
            {"step": s, "name": n, "value": v}
            for s, n, v in self.store.metrics(checks.job_id(job_id), _since(since_step))
        ]

    def samples(self, job_id: int, since_step: int = -1) -> list[TextSample]:
        """Text samples a job wrote (GPT generations, T5 fills) with step > since_step."""
        from engine.methods._text import read_samples

        return cast(list[TextSample], read_samples(self.job(job_id)["run_dir"], _since(since_step)))

    def cancel(self, job_id: int) -> Literal["cancelled", "stopping"]:
        """Stop a job: a queued one at once, a running one after its current step."""
        job = self.job(job_id)
        if self.store.transition(job["id"], ("queued",), status="cancelled", finished_at=utcnow()):
            return "cancelled"
        if self.store.transition(job["id"], ("running",), cancel_requested=True):
            return "stopping"
        raise JobError(f"job {job_id} is {job['status']}; only queued or running jobs stop")

    def resume(self, job_id: int, steps: int | None = None) -> int:
        """Queue a cancelled, interrupted or failed job again; it continues from its last
        checkpoint (optionally to a new total of `steps`). Returns the job id."""
        job = self.job(job_id)
        if job["status"] not in RESUMABLE_STATUSES:
            raise JobError(
                f"job {job_id} is {job['status']}; only "
                f"{', '.join(RESUMABLE_STATUSES)} jobs can be resumed"
            )
        self._check_processes(job["config"], get_method(job["method"]))
        fields: dict[str, Any] = dict(
            status="queued", cancel_requested=False, error=None, finished_at=None, pid=None
        )
        if steps is not None:
            spec = dict(job["spec"])
            spec["params"] = dict(spec["params"], steps=checks.whole_number(steps, "steps"))
            spec_obj, config = self.validate(spec)
            fields.update(
                spec=spec_obj.to_dict(), config=dataclasses.asdict(config), total_steps=config.steps
            )
        if not self.store.transition(job["id"], RESUMABLE_STATUSES, **fields):
            raise JobError(f"job {job_id} changed state meanwhile; try again")
        return job["id"]

    # ---- evaluation ---------------------------------------------------------------------
    def protocols(self) -> list[ProtocolInfo]:
        """The evaluation protocols: [{"name", "description"}, ...]."""
        from engine.evaluation import PROTOCOLS

        return [{"name": k, "description": v} for k, v in PROTOCOLS.items()]

    def evaluate(
        self,
        job_id: int,
        protocol: str,
        dataset: str | None = None,
        on_progress: Callable[[float, str], None] | None = None,
        params: dict[str, Any] | None = None,
    ) -> EvaluationRecord:
        """Evaluate a finished job's latest checkpoint with `protocol` (knn, linear, fewshot,
        finetune, segmentation, reconstruction: `engine.evaluation.PROTOCOLS`) on a labelled
        `dataset` (default: its eval dataset, else its training
        dataset). The result is stored (with the matching pixels and random baselines when
        missing) and returned: {"id", "job_id", "protocol", "dataset", "params", "results",
        "figures", "created_at"}. `on_progress(fraction, text)` reports progress."""
        from engine.evaluation.runner import evaluate_job

        return cast(
            EvaluationRecord,
            evaluate_job(
                self.home,
                self.store,
                checks.job_id(job_id),
                protocol,
                checks.optional_text(dataset, "dataset"),
                params,
                on_progress,
            ),
        )

    def evaluate_baseline(
        self,
        baseline: str,
        dataset: str,
        backbone: str = "resnet18",
        protocol: str = "knn",
        image_size: int = 32,
        on_progress: Callable[[float, str], None] | None = None,
        params: dict[str, Any] | None = None,
    ) -> EvaluationRecord:
        """Evaluate a baseline: "pixels" (raw pixels at `image_size`) or "random" (`backbone`
        at random initialisation) with `protocol` on `dataset`; stored and returned."""
        from engine.evaluation.runner import evaluate_baseline

        return cast(
            EvaluationRecord,
            evaluate_baseline(
                self.home,
                self.store,
                baseline,
                dataset,
                protocol,
                backbone,
                checks.whole_number(image_size, "image_size"),
                params,
                on_progress,
            ),
        )

    def evaluate_model(
        self,
        model: str,
        dataset: str,
        protocol: str = "knn",
        on_progress: Callable[[float, str], None] | None = None,
        params: dict[str, Any] | None = None,
    ) -> EvaluationRecord:
        """Evaluate a transformers image model from the Hub or a model folder (a Hub id such
        as facebook/dinov2-small, or an exported run's folder; the server-path policy applies)
        with `protocol` (knn, linear, fewshot or segmentation) on a labelled `dataset`; stored
        with no job, so the leaderboard lists it beside the runs."""
        from engine.evaluation.runner import evaluate_model
        from engine.inference.encoders import parse_source

        source = self.model_source(model)
        kind, _ = parse_source(source) if source else ("", "")
        if kind != "hub":
            raise SpecError(
                f"{checks.shown(model)} is not a Hub id or a model folder; evaluate a job "
                "with `evaluate` (a job id) or a baseline with `evaluate_baseline`"
            )
        return cast(
            EvaluationRecord,
            evaluate_model(
                self.home,
                self.store,
                source,
                checks.text(dataset, "dataset"),
                protocol,
                params,
                on_progress,
            ),
        )

    def evaluations(self, job_id: int | None = None) -> list[EvaluationRecord]:
        """Stored evaluations of a job (or every one, baselines included, when None)."""
        from engine.evaluation.runner import evaluation_to_dict

        if job_id is not None:
            self.job(job_id)  # a JobError names an unknown id
        return [
            cast(EvaluationRecord, evaluation_to_dict(r))
            for r in self.store.evaluations(None if job_id is None else checks.job_id(job_id))
        ]

    def eval_figures(self, job_id: int) -> dict[str, float]:
        """A job's headline figures, e.g. {"knn_top1": 0.93, "linear_top1": 0.95}."""
        from engine.evaluation.runner import job_figures

        return job_figures(self.store, checks.job_id(job_id))

    def leaderboard(self) -> list[LeaderboardRow]:
        """One row per evaluated job and dataset, and per baseline, with their figures
        (knn_top1, knn_top5, linear_top1, fewshot_Nshot, finetune_Npct[_scratch]), read from
        the store: nothing is recomputed."""
        from engine.evaluation.runner import leaderboard

        return cast(list[LeaderboardRow], leaderboard(self.store))

    # ---- export and push to the Hub -----------------------------------------------------
    def export(
        self,
        job_id: int,
        out_dir: str | os.PathLike | None = None,
        step: int | None = None,
        make_zip: bool = False,
    ) -> ExportResult:
        """Export job `job_id`'s checkpoint `step` (default: the newest) as a folder that loads
        without the studio, with its model card (`engine.export`); with `make_zip` also a zip
        of it. `out_dir` must be new or empty; None: `<home>/exports/job-<id>-step-<n>`,
        replaced when exported again (the only choice the web app has). Returns {"job_id",
        "step", "folder", "zip", "files"}."""
        import json

        from engine.export import export_run, zip_folder

        job_id = checks.job_id(job_id)
        step = None if step is None or step == "" else checks.whole_number(step, "step")
        out, step = self._export_folder(job_id, out_dir, step)
        folder = export_run(self.home, self.store, job_id, out, step)
        archive = zip_folder(folder) if make_zip is True else None
        training = json.loads((folder / "training_config.json").read_text())
        return {
            "job_id": job_id,
            "step": int(training["step"]),
            "folder": str(folder),
            "zip": str(archive) if archive else None,
            "files": sorted(p.name for p in folder.iterdir()),
        }

    def _export_folder(
        self, job_id: int, out_dir: str | os.PathLike | None, step: int | None
    ) -> tuple[Path, int | None]:
        """Where `export` writes, and the step: a caller's folder (the CLI only), or the
        studio's own exports folder named by the checkpoint's step (an earlier export of the
        same checkpoint removed)."""
        import shutil

        from engine import checkpoints
        from engine.export import checkpoint_of

        if out_dir is not None and str(out_dir).strip():
            if self.paths.restricted:
                raise AccessError(
                    "the web app exports into the studio's own exports folder only; "
                    "leave the folder out"
                )
            return Path(out_dir), step
        row = self.store.get_job(job_id)
        if row is None:
            raise JobError(f"no job {job_id}; `python -m engine jobs` lists them")
        step = checkpoints.step_of(checkpoint_of(row, step))
        out = self.home.root / "exports" / f"job-{job_id}-step-{step}"
        shutil.rmtree(out, ignore_errors=True)
        out.with_name(out.name + ".zip").unlink(missing_ok=True)
        return out, step

    def push(
        self,
        job_id: int,
        repo_id: str,
        token: str | None = None,
        private: bool = False,
        step: int | None = None,
    ) -> PushResult:
        """Export job `job_id` (as `export`, into the exports folder) and upload it to the
        Hub model repo `repo_id` (USER/NAME; created, private when asked). The token is the
        argument, else HF_TOKEN or the saved login; it is neither stored nor logged. Offline,
        without a token or with a malformed repo id: HubPushError before anything is done.
        Returns {"job_id", "step", "repo_id", "url", "folder"}."""
        from engine import hub_push

        repo = hub_push.check_repo_id(repo_id)
        token = hub_push.ready(repo, token if isinstance(token, str) else None)
        exported = self.export(job_id, step=step)
        url = hub_push.push(exported["folder"], repo, token=token, private=private is True)
        return {
            "job_id": exported["job_id"],
            "step": exported["step"],
            "repo_id": repo,
            "url": url,
            "folder": exported["folder"],
        }

    # ---- embedding explorer -------------------------------------------------------------
    @property
    def explorer(self) -> Any:
        """The explorer's engine and caches (`engine.inference.embeddings.Explorer`), made on
        first use."""
        if getattr(self, "_explorer", None) is None:
            from engine.inference.embeddings import Explorer

            self._explorer = Explorer(self.home, self.store)
        return self._explorer

    def model_source(self, model: Any) -> str:
        """`model` (a job id, random:<id>, pixels, a Hub id or a folder) as text, after a folder
        is checked against the server-path policy (AccessError when outside the roots)."""
        from engine.inference.encoders import parse_source

        if isinstance(model, bool) or not isinstance(model, (str, int)):
            raise AccessError(f"model must be a job id or a name, got {type(model).__name__}")
        text = str(model).strip()
        if not text:
            return text
        kind, target = parse_source(text)
        return self.paths.check_source(target, "model") if kind == "hub" else text

    def embedding_models(self) -> list[EmbeddingModel]:
        """What the explorer can map: finished jobs with a checkpoint ("3"), their networks at
        random initialisation ("random:3") and the raw pixels ("pixels"); a Hub id or model
        folder works too. [{"value", "label", "job_id", "modality"}, ...]."""
        return cast(list[EmbeddingModel], self.explorer.models())

    def embeddings(
        self,
        model: str,
        dataset: str,
        samples: int = 2000,
        split: str = "train",
        texts: str = "none",
        on_progress: Callable[[float, str], None] | None = None,
    ) -> dict[str, Any]:
        """The embeddings of `samples` rows of `dataset` (drawn with a fixed seed, so every
        model gets the same rows) under `model`: {"features": float32 array (N, D), "labels",
        "label_names", "indices", "kinds", "texts", "model", "knn_top1"}. Cached by (model,
        checkpoint step, dataset, split, samples, texts). `texts` ("none", "prompts",
        "captions") adds a CLIP model's text embeddings to the images."""
        emb = self.explorer.embeddings(
            self.model_source(model),
            dataset,
            checks.whole_number(samples, "samples"),
            split,
            texts,
            on_progress,
        )
        names = emb.class_names
        return {
            "features": emb.features.numpy(),
            "labels": emb.labels.tolist(),
            "label_names": [names[i] for i in emb.labels.tolist()],
            "indices": list(emb.indices),
            "kinds": list(emb.kinds),
            "texts": list(emb.texts),
            "model": dict(emb.model),
            "knn_top1": emb.knn_top1,
        }

    def project(
        self,
        model: str,
        dataset: str,
        samples: int = 2000,
        projection: str = "pca",
        params: dict[str, Any] | None = None,
        split: str = "train",
        texts: str = "none",
        on_progress: Callable[[float, str], None] | None = None,
        dims: int = 2,
    ) -> EmbeddingMap:
        """A 2-D map ("pca", "umap" with n_neighbors/min_dist, "tsne" with perplexity) of the
        same sample as `embeddings`, with the leave-one-out k-NN accuracy of its points;
        `dims` 3 gives the 3-D view (points carry "z").
        See `engine.inference.embeddings.Explorer.map` for the keys."""
        return cast(
            EmbeddingMap,
            self.explorer.map(
                self.model_source(model),
                dataset,
                checks.whole_number(samples, "samples"),
                projection,
                params,
                split,
                texts,
                on_progress,
                dims,
            ),
        )

    def maps_csv(self, views: list[EmbeddingMap]) -> str:
        """`project` results as CSV text: model, index, x, y, label, kind, text per point."""
        from engine.inference.projections import maps_csv

        return maps_csv(cast(list[dict[str, Any]], views))

    def embedding_thumbnails(self, dataset: str, split: str, indices: list[int]) -> list[Any]:
        """Small (h, w, 3) uint8 images of the given rows of a dataset split."""
        return self.explorer.thumbnails(dataset, split, indices)

    def warm_up_umap(self) -> bool:
        """Import and compile UMAP in a background thread (once per process, unless
        PRETEXT_UMAP_WARMUP=0); True when this call started it."""
        from engine.inference.projections import UMAP_WARMUP

        return UMAP_WARMUP.start()

    def umap_status(self) -> str:
        """One line: cold, warming up, ready (with its time) or failed."""
        from engine.inference.projections import UMAP_WARMUP

        return UMAP_WARMUP.status()

    # ---- background ---------------------------------------------------------------------
    def hardware(self) -> HardwareInfo:
        """CPU cores, memory and CUDA devices of the machine the jobs run on."""
        from engine import hardware

        return hardware.detect()

    def hardware_line(self) -> str:
        """What the studio found, in one line ("2 CPU cores, 23.4 GiB memory, no GPU")."""
        from engine import hardware

        return hardware.describe()

    # ---- the demo pack (engine/demo.py) -------------------------------------------------
    def demo_plan(self) -> DemoPlan:
        """The showcase runs the demo pack would queue and their expected total time here;
        nothing is written."""
        from engine import demo

        return demo.plan(self.hardware(), self.hardware_line())

    def demo_pack(self) -> DemoPlan:
        """Queue the showcase runs (quick presets, with their evaluations); every spec is
        validated before the first is queued. Returns the plan with each job's id."""
        from engine import demo

        checked = [self.validate(spec) for spec in demo.showcase_specs()]
        out = self.demo_plan()
        for job, (spec, config) in zip(out["jobs"], checked, strict=True):
            job["job_id"] = self._create(spec, config, status="queued")
        return out

    def recover(self) -> list[int]:
        return recover_interrupted(self.store)

    def start_manager(self, max_running: int | None = None) -> JobManager:
        """Start the job manager (at most `max_running` jobs at once, default
        PRETEXT_MAX_JOBS, else 1)."""
        if self.manager is None:
            self.manager = JobManager(self.home, max_running=max_running).start()
        return self.manager

    def shutdown(self) -> None:
        if self.manager is not None:
            self.manager.stop()
            self.manager = None
