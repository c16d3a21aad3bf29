"""The contract between the web app and the engine: what `engine.api.Studio` offers, typed.

`webapp/` imports this module (and `engine.errors`, `engine.checks`) from the engine and nothing
else, so the UI never loads torch. It holds:

- `JobStatus`, the six states of a job, with the groups the UI and the engine branch on
  (`ACTIVE_STATUSES`, `RESUMABLE_STATUSES`, `TERMINAL_STATUSES`). A member is a `str` equal to
  its value ("running"), which is what SQLite stores and what API clients receive.
- `TypedDict`s for what crosses the seam: jobs, metric points, evaluations, datasets, method
  forms, embedding maps and each lens's result.
- `Studio` and `Lenses`, the protocols the web app's handlers are typed against. The engine's
  `Studio` implements them, and so does `webapp.access.GuardedStudio`, which wraps it;
  tests/engine/test_contract.py checks that the signatures here match the engine's.

Pictures are uint8 (H, W, 3) numpy arrays (`Picture`); this module does not import numpy.
Imports only the standard library, like `engine.errors`.
"""

import enum
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NotRequired, Protocol, Required, TypedDict, runtime_checkable

Picture = Any  # a uint8 (H, W, 3) numpy array
Progress = Callable[[float, str], None]  # on_progress(fraction done, what is happening)


# ---- jobs --------------------------------------------------------------------------------
class JobStatus(enum.StrEnum):
    """A job moves queued -> running -> completed | cancelled | failed; a running job whose
    process vanished becomes interrupted; a cancelled, interrupted or failed job can be resumed
    (back to queued)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def active(self) -> bool:
        """Queued or running: its row and curves still change."""
        return self in ACTIVE_STATUSES

    @property
    def resumable(self) -> bool:
        return self in RESUMABLE_STATUSES

    @property
    def terminal(self) -> bool:
        """Finished one way or another: nothing changes until someone resumes it."""
        return self in TERMINAL_STATUSES


JOB_STATUSES = tuple(JobStatus)
ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
RESUMABLE_STATUSES = (JobStatus.CANCELLED, JobStatus.INTERRUPTED, JobStatus.FAILED)
TERMINAL_STATUSES = (
    JobStatus.COMPLETED,
    JobStatus.CANCELLED,
    JobStatus.FAILED,
    JobStatus.INTERRUPTED,
)


class JobSpec(TypedDict, total=False):
    """What `submit` takes (the CLI's and the Train form's request); only the two names are
    required: the preset ("quick") and the method's defaults fill the rest."""

    method: Required[str]
    dataset: Required[str]
    preset: str  # "quick" or "paper"
    seed: int
    params: dict[str, Any]  # config fields that differ from the preset
    evals: list[str]  # protocols to run when the job completes
    eval_dataset: str  # a labelled image dataset to run them on


class JobSummary(TypedDict):
    """One row of `jobs()`. Times are UTC ISO strings ending in "Z", or None."""

    id: int
    method: str
    dataset: str
    backbone: str
    preset: str
    status: JobStatus
    step: int
    total_steps: int
    last_loss: float | None
    images_per_second: float | None
    error: str | None  # why it failed, in words
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    duration_s: float  # wall-clock seconds spent running, resumes added up
    run_dir: str
    pid: int | None
    host: str | None
    cancel_requested: bool


class CheckpointInfo(TypedDict):
    step: int
    dir: str


class JobDetail(JobSummary):
    """`job(id)`: the row with its spec as asked, its resolved config and its checkpoints."""

    spec: dict[str, Any]
    config: dict[str, Any]
    checkpoints: list[CheckpointInfo]


class MetricPoint(TypedDict):
    step: int
    name: str  # "loss", "lr", "embedding_std", ...
    value: float


class TextSample(TypedDict, total=False):
    """What a text job wrote at `step`: a GPT's "text", or a T5's input, target and fill."""

    step: Required[int]
    text: str
    input: str
    target: str
    prediction: str


# ---- catalog -----------------------------------------------------------------------------
class MethodInfo(TypedDict):
    name: str
    description: str
    paper: str
    modality: str  # "image", "text" or "image-text"
    backbones: list[str]
    card: dict[str, Any] | None  # title, authors, year, paper, idea, good_at, hyperparameters
    presets: list[str]
    default_dataset: str  # the builtin its pretext task suits (the Train tab starts with it)


class FormField(TypedDict):
    """One setting of a method's config, as `method_form` describes it to build a widget."""

    name: str
    type: str  # "int", "float", "bool" or "str"
    default: Any  # under the preset asked for
    help: str
    choices: list[Any] | None
    min: float | None
    max: float | None
    main: bool  # shown at the top of the form, not under "More settings"


class DatasetInfo(TypedDict):
    name: str
    kind: str  # "image", "text" or "image-text"
    description: str
    available: bool
    reason: str  # why it is not available ("" when it is)
    num_train: int
    num_test: int
    num_classes: int
    labelled: bool
    native_size: int | None
    modalities: list[str]  # what methods it can feed ("image", "image-text", ...)
    augmentation: str
    procedural: bool
    builtin: bool  # shipped with the studio (not a user's upload)
    stored: bool  # held in an on-disk image store (engine.data.image_store)
    stored_size: int  # px the store keeps its images at (0 when not stored)
    stored_bytes: int  # the store's pixels on disk (0 when not stored)


class AddedDataset(DatasetInfo):
    message: str  # what was added, skipped or refused, in words


class HubColumns(TypedDict):
    split: str
    columns: list[str]  # the split's text columns
    column: str  # the default one, or ""


# ---- evaluation --------------------------------------------------------------------------
class ProtocolInfo(TypedDict):
    name: str  # "knn", "linear", "fewshot", "finetune"
    description: str


class EvaluationRecord(TypedDict):
    id: int
    job_id: int | None  # None for a baseline
    protocol: str
    dataset: str
    params: dict[str, Any]
    results: dict[str, Any]  # the protocol's own numbers
    figures: dict[str, float]  # headline figures: knn_top1, linear_top1, ...
    created_at: str


class ExportResult(TypedDict):
    """An exported run (`Studio.export`): a folder that loads without the studio."""

    job_id: int
    step: int  # the checkpoint exported
    folder: str
    zip: str | None  # the folder as a zip, when asked for
    files: list[str]  # what the folder holds (README.md is the model card)


class PushResult(TypedDict):
    """A run pushed to the Hugging Face Hub (`Studio.push`)."""

    job_id: int
    step: int
    repo_id: str
    url: str
    folder: str  # the export that was uploaded


class LeaderboardRow(TypedDict, total=False):
    """One evaluated job (and dataset) or baseline, with figure keys such as knn_top1,
    fewshot_5shot or finetune_10pct(_scratch) besides these."""

    kind: Required[str]  # "job", "baseline" or "hub" (a Hub model or folder, evaluate_model)
    job_id: Required[int | None]
    name: Required[str]  # "#3 simclr", "pixels", "random resnet18"
    method: str
    backbone: str | None
    dataset: Required[str]
    trained_on: str
    steps: int
    wall_time_s: float | None
    image_size: int | None
    status: str


# ---- embedding explorer ------------------------------------------------------------------
class EmbeddingModel(TypedDict):
    value: str  # what `project` takes: "3", "random:3", "pixels"
    label: str
    kind: str  # "run", "random" or "pixels"
    job_id: int | None
    modality: str
    dataset: str | None  # the run's training dataset


class MapPoints(TypedDict):
    index: list[int]  # rows of the dataset split
    x: list[float]
    y: list[float]
    z: NotRequired[list[float]]  # the 3-D view's third axis (dims 3)
    label: list[str]
    kind: list[str]  # "image" or "text"
    text: list[str]  # caption or prompt ("" for none)
    factors: dict[str, list[Any]]  # nuisance factors (shapes: color, size, ...)


class EmbeddingMap(TypedDict):
    """`project`'s 2-D map (or 3-D view) of a sample of a dataset under one model."""

    model: dict[str, Any]  # {"name", ...}
    dataset: str
    split: str
    projection: str  # "pca", "umap" or "tsne"
    params: dict[str, Any]
    dims: int  # 2, or 3 for the 3-D view (points carry "z")
    num_points: int
    feature_dim: int
    class_names: list[str]
    knn_top1: float | None  # leave-one-out k-NN of the embeddings by label
    factor_knn: dict[str, float]  # the same with each nuisance factor as the label
    points: MapPoints
    message: str
    capped: bool  # the projection's point cap cut the sample
    timing: dict[str, Any]  # embed_s, project_s, embeddings_cached


# ---- lenses ------------------------------------------------------------------------------
class LensChoice(TypedDict):
    value: str  # a run id or a Hub id
    label: str


class LensExample(TypedDict):
    name: str
    path: str  # a PNG file


class ZeroShotExample(LensExample):
    labels: str
    templates: str
    ignore: str


class LensModelInfo(TypedDict):
    model: str
    model_type: str
    num_layers: int
    num_heads: int
    image_size: int
    patch_size: int
    decoder: bool  # an MAE that can reconstruct


class HardwareInfo(TypedDict):
    """What `hardware.detect()` found; the Train tab and the start-up log show it."""

    cpu_cores: int
    memory_gb: float
    memory_available_gb: float
    cuda_devices: list[dict[str, Any]]  # index, name, memory_gb
    device: Literal["cpu", "cuda"]
    fast_bf16: bool  # the device computes bf16 natively, so precision "auto" picks bf16
    max_processes: int  # one per GPU with CUDA, one per core without


class DemoJob(TypedDict):
    """One showcase run of the demo pack, with its expected duration here."""

    method: str
    dataset: str
    preset: str
    evals: list[str]
    steps: int
    backbone: str
    expected_s: int  # training steps x measured seconds per step, plus its evaluations
    source: str  # the measurement behind the figure (bench/RESULTS*.md)
    job_id: int | None  # None in a plan, the queued job's id once queued


class DemoPlan(TypedDict):
    """`demo_plan()` / `demo_pack()`: the seven showcase runs and the expected total."""

    jobs: list[DemoJob]
    expected_s: int
    measured_on: str  # the machine the figures come from, e.g. "2 CPU cores, no GPU"
    hardware: str  # this machine, as hardware.describe() says it
    note: str  # one line: the total and how this machine compares


class AttentionResult(TypedDict):
    heads: list[Picture]  # one overlay per head
    mean: Picture
    mask: Picture
    image: Picture
    attention: Any  # float32 (heads, grid, grid)
    prefix: Any
    keep_mask: Any  # bool (grid, grid)
    kept_share: float
    share_range: tuple[float, float]
    layer: int  # 1..num_layers
    num_layers: int
    num_heads: int
    grid: int
    model: str
    scale: str  # "map" (each map its own range) or "shared" (uniform = the middle colour)
    jaccard: float | None  # the drawn mask against a builtin example's object mask, else None
    jaccard_heads: list[float] | None  # each head's own mask against it


class ReconstructResult(TypedDict):
    original: Picture
    masked: Picture
    reconstruction: Picture | None  # None for a checkpoint without a decoder
    pasted: Picture | None
    mask: Any  # bool (grid, grid), True on hidden patches
    visible_patches: int
    num_patches: int
    loss: float | None
    norm_pix_loss: bool
    warning: str | None
    model: str
    psnr: float | None  # dB on the hidden patches (None without a decoder)
    psnr_mean_colour: float | None  # the same patches filled with the image's mean colour
    psnr_nearest_visible: float | None  # ... with their nearest visible patch


class ViewsResult(TypedDict):
    items: list[tuple[Picture, str]]  # row by row: the image, then each view
    columns: int
    captions: list[str]
    sizes: list[int]
    image_size: int
    method: str
    dataset: str
    preset: str


class ZeroShotResult(TypedDict):
    labels: list[str]
    probabilities: list[float]  # in the labels' order, summing to 1
    similarities: list[float]
    ranking: list[int]  # label positions, most probable first
    templates: list[str]
    ignored: list[str]
    logit_scale: float
    model: str


class RetrieveResult(TypedDict):
    query: str
    scores: list[float]  # cosine similarity, best first
    indices: list[int]
    labels: list[str]
    captions: list[str]
    searched: int
    dataset: str
    split: str
    model: str
    embeddings_cached: bool  # False when this call embedded the dataset
    images: list[Picture]


class FillPrediction(TypedDict):
    token: str
    token_id: int
    score: float
    sequence: str


class FillMaskResult(TypedDict):
    text: str
    mask_token: str
    predictions: list[FillPrediction]
    model: str


class GenerateResult(TypedDict):
    prompt: str
    continuation: str
    text: str
    new_tokens: int
    stopped: str
    greedy: bool
    seconds: float
    model: str


class Span(TypedDict):
    sentinel: str
    text: str


class Text2TextResult(TypedDict):
    input: str
    output: str
    spans: list[Span]
    filled: str | None
    parts: list[tuple[str, bool]]  # (piece, whether the model wrote it)
    hint: str | None
    model: str


# ---- the facade --------------------------------------------------------------------------
@runtime_checkable
class PathPolicy(Protocol):
    """Which server paths the studio reads (`engine.access.ServerPaths`)."""

    @property
    def restricted(self) -> bool: ...
    @property
    def roots(self) -> tuple[Path, ...]: ...
    @property
    def server_paths_allowed(self) -> bool: ...


@runtime_checkable
class Lenses(Protocol):
    """`studio.lenses`: every lens as one method. A model is a run id ("12"), a folder or a Hub
    id; images are file paths, PIL images or uint8 arrays. Bad input raises a StudioError."""

    def lens_models(self, lens: str) -> list[LensChoice]: ...
    def default_model(self, lens: str) -> str | None: ...
    def lens_model_info(self, lens: str, model: str) -> LensModelInfo: ...
    def lens_examples(self) -> list[LensExample]: ...
    def text_examples(self, lens: str) -> dict[str, list[str]]: ...
    def attention(
        self, image: Any, model: str, layer: int = 0, keep: float = 0.6, scale: str = "map"
    ) -> AttentionResult: ...
    def reconstruct(
        self, image: Any, model: str, mask_ratio: float = 0.75, seed: int = 0
    ) -> ReconstructResult: ...
    def view_methods(self) -> list[str]: ...
    def preview_views(
        self, method: str, dataset: str, seed: int = 0, num_images: int = 4, preset: str = "quick"
    ) -> ViewsResult: ...
    def zero_shot(
        self,
        image: Any,
        model: str,
        labels: str | list[str],
        templates: str | list[str] | None = None,
        ignore: str | list[str] | None = None,
    ) -> ZeroShotResult: ...
    def zero_shot_examples(self) -> list[ZeroShotExample]: ...
    def retrieve(
        self,
        query: str,
        model: str,
        dataset: str = "shapes",
        k: int = 8,
        split: str = "test",
        samples: int = 1000,
    ) -> RetrieveResult: ...
    def fill_mask(self, text: str, model: str, k: int = 5) -> FillMaskResult: ...
    def generate(
        self,
        prompt: str,
        model: str,
        max_new_tokens: int = 40,
        temperature: float = 0.8,
        top_k: int = 50,
        seed: int = 0,
    ) -> GenerateResult: ...
    def text2text(
        self, text: str, model: str, num_beams: int = 4, max_new_tokens: int = 40
    ) -> Text2TextResult: ...


@runtime_checkable
class Studio(Protocol):
    """What the web app calls on `engine.api.Studio` (see its docstrings for the details)."""

    @property
    def paths(self) -> PathPolicy: ...
    @property
    def lenses(self) -> Lenses: ...

    # catalog
    def methods(self) -> list[MethodInfo]: ...
    def method_form(self, method: str, preset: str = "quick") -> list[FormField]: ...
    def datasets(self) -> list[DatasetInfo]: ...
    def add_image_dataset(
        self,
        source: str | os.PathLike,
        name: str,
        image_size: int | None = None,
        on_progress: Progress | None = None,
    ) -> AddedDataset: ...
    def add_text_dataset(
        self,
        source: str | os.PathLike,
        name: str,
        column: str | None = None,
        split: str | None = None,
    ) -> AddedDataset: ...
    def describe_hf_dataset(self, source: str, split: str | None = None) -> HubColumns: ...
    def add_torchvision_dataset(
        self,
        name: str,
        root: str | os.PathLike,
        dataset_name: str,
        download: bool = False,
        image_size: int | None = None,
        on_progress: Progress | None = None,
    ) -> AddedDataset: ...
    def add_hf_image_dataset(
        self,
        source: str,
        name: str,
        split: str | None = None,
        image_column: str | None = None,
        label_column: str | None = None,
        image_size: int | None = None,
        on_progress: Progress | None = None,
    ) -> AddedDataset: ...

    # jobs
    def submit(self, spec: JobSpec | dict[str, Any]) -> int: ...
    def jobs(self) -> list[JobSummary]: ...
    def job(self, job_id: int) -> JobDetail: ...
    def metrics(self, job_id: int, since_step: int = -1) -> list[MetricPoint]: ...
    def samples(self, job_id: int, since_step: int = -1) -> list[TextSample]: ...
    def cancel(self, job_id: int) -> Literal["cancelled", "stopping"]: ...
    def resume(self, job_id: int, steps: int | None = None) -> int: ...

    # evaluation
    def protocols(self) -> list[ProtocolInfo]: ...
    def evaluate(
        self,
        job_id: int,
        protocol: str,
        dataset: str | None = None,
        on_progress: Progress | None = None,
        params: dict[str, Any] | None = None,
    ) -> EvaluationRecord: ...
    def evaluate_baseline(
        self,
        baseline: str,
        dataset: str,
        backbone: str = "resnet18",
        protocol: str = "knn",
        image_size: int = 32,
        on_progress: Progress | None = None,
        params: dict[str, Any] | None = None,
    ) -> EvaluationRecord: ...
    def evaluate_model(
        self,
        model: str,
        dataset: str,
        protocol: str = "knn",
        on_progress: Progress | None = None,
        params: dict[str, Any] | None = None,
    ) -> EvaluationRecord: ...
    def evaluations(self, job_id: int | None = None) -> list[EvaluationRecord]: ...
    def leaderboard(self) -> list[LeaderboardRow]: ...

    # export and push to the Hub
    def export(
        self,
        job_id: int,
        out_dir: str | os.PathLike | None = None,
        step: int | None = None,
        make_zip: bool = False,
    ) -> ExportResult: ...
    def push(
        self,
        job_id: int,
        repo_id: str,
        token: str | None = None,
        private: bool = False,
        step: int | None = None,
    ) -> PushResult: ...

    # the machine
    def hardware(self) -> HardwareInfo: ...
    def hardware_line(self) -> str: ...
    def demo_plan(self) -> DemoPlan: ...
    def demo_pack(self) -> DemoPlan: ...

    # embedding explorer
    def embedding_models(self) -> list[EmbeddingModel]: ...
    def project(
        self,
        model: str,
        dataset: str,
        samples: int = 2000,
        projection: str = "pca",
        params: dict[str, Any] | None = None,
        split: str = "train",
        texts: str = "none",
        on_progress: Progress | None = None,
        dims: int = 2,
    ) -> EmbeddingMap: ...
    def maps_csv(self, views: list[EmbeddingMap]) -> str: ...
    def embedding_thumbnails(
        self, dataset: str, split: str, indices: list[int]
    ) -> list[Picture]: ...
    def warm_up_umap(self) -> bool: ...
    def umap_status(self) -> str: ...
