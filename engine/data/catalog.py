"""The dataset catalog: every dataset the studio knows, image or text, builtin or the user's.

One registry of `DatasetSource` entries. Each says what it holds (`kind`: "image" or "text"),
what methods may train on it (`modalities`), whether it ships with the studio (`builtin`), and
how to load it: `build(split)` for images (native-resolution uint8; `engine.data.datasets`
resizes and caches them), `documents(cache_dir)` for text (`engine.data.text` splits and
tokenises them). Entries are cheap descriptors: listing the catalog loads nothing.

The builtins (shapes, digits, captions, pydocs) are registered below, at import. The user's
datasets (image folders and zips, text files, Hugging Face datasets) are registered at
startup from the store (`engine.data.stored.register_user_datasets`) and when added, by
`engine.data.user_images` and `engine.data.user_text`.

A name is taken once: a second source under it is refused, except a user dataset registered
again under its own name (re-imported, maybe as another kind), which replaces the first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from engine.checks import shown
from engine.data import digits, pydocs, scenes, shapes
from engine.errors import DatasetError

SPLITS: tuple[str, ...] = ("train", "test")
KINDS: tuple[str, ...] = ("image", "text")


@dataclass
class RawImages:
    """What an image source builds: one split at its native resolution."""

    images: torch.Tensor  # (N, 3, h, w) uint8
    labels: torch.Tensor  # (N,) int64
    class_names: list[str]
    captions: list[str] | None = None
    factors: dict[str, list[str]] | None = None  # nuisance factor -> one value per image
    masks: torch.Tensor | None = None  # (N, h, w) uint8 object masks (1 = object), or None


def _always_available() -> str:
    return ""


@dataclass(frozen=True)
class DatasetSource:
    """A registered dataset: what `list_datasets` shows and how to load it."""

    name: str
    description: str  # one line, shown in the UI
    kind: str  # "image" or "text"
    num_train: int  # images, or documents (approximate for pydocs)
    num_test: int
    # Shipped with the studio. A builtin's name can never be taken by a user dataset.
    builtin: bool = False
    # What methods may train on it: a method's `modality` must be listed (default: `kind`).
    # `shapes` is also "image-text" (CLIP), as is a user image set with captions.
    modalities: tuple[str, ...] = ()
    num_classes: int = 0
    labelled: bool = False
    # The loader: `build` for images, `documents` for text; each may be slow.
    build: Callable[[str], RawImages] | None = None  # split -> native images
    documents: Callable[[str | None], list[str]] | None = None  # cache_dir -> every document
    unavailable: Callable[[], str] = _always_available  # "" or why not; must be cheap
    native_size: int = 0  # px, the side of the images `build` returns
    resample: str = "bilinear"  # interpolation used to reach the requested image_size
    version: int = 1  # bump when the loader's output changes: old disk caches are then ignored
    # The view recipe (engine.data.views.DOMAINS) an `augmentation="auto"` job gets here.
    augmentation: str = "natural"
    # Procedural image sources: (count, seed) -> that many more native images, never the splits'.
    render: Callable[[int, int], RawImages] | None = None
    # Stored datasets (`engine.data.stored_images`): the store folder, and its pixels' bytes on
    # disk. `load_dataset` streams a split of one from disk when it is too large for memory.
    store: str = ""
    stored_bytes: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DatasetError(
                f"dataset {self.name!r} has kind {self.kind!r}; use one of: {', '.join(KINDS)}"
            )
        loader = self.build if self.kind == "image" else self.documents
        if loader is None:
            needed = "build" if self.kind == "image" else "documents"
            raise DatasetError(f"{self.kind} dataset {self.name!r} needs a `{needed}` loader")
        if not self.modalities:
            object.__setattr__(self, "modalities", (self.kind,))


_SOURCES: dict[str, DatasetSource] = {}


def register_dataset(source: DatasetSource) -> DatasetSource:
    """Add a source to the catalog. A name already taken is refused, unless both the old and
    the new source are user datasets: a re-import replaces the earlier one."""
    earlier = _SOURCES.get(source.name)
    if earlier is not None and (earlier.builtin or source.builtin):
        raise DatasetError(
            f"a dataset named {source.name!r} is already registered"
            f"{' (a builtin)' if earlier.builtin else ''}; pick another name"
        )
    _SOURCES[source.name] = source
    return source


def unregister_dataset(name: str) -> None:
    """Drop a user dataset from the catalog (its files are the caller's); builtins stay."""
    if is_builtin(name):
        raise DatasetError(f"{name!r} is a builtin dataset and cannot be removed")
    _SOURCES.pop(name, None)


def get_source(name: str) -> DatasetSource:
    """The source registered under `name`; an unknown name raises `DatasetError` naming the
    known ones."""
    if not isinstance(name, str) or name not in _SOURCES:
        raise DatasetError(
            f"unknown dataset {shown(name)}; known datasets: {', '.join(sorted(_SOURCES))}"
        )
    return _SOURCES[name]


def sources(kind: str | None = None) -> list[DatasetSource]:
    """Every registered source (of one `kind` when given), in registration order."""
    return [s for s in _SOURCES.values() if kind is None or s.kind == kind]


def is_builtin(name: str) -> bool:
    """Whether `name` is a builtin dataset (a name no user dataset may take)."""
    source = _SOURCES.get(name)
    return source is not None and source.builtin


def dataset_info(name: str) -> dict[str, Any]:
    """The `list_datasets` entry of one dataset; an unknown name raises `DatasetError`."""
    source = get_source(name)
    reason = source.unavailable()
    return {
        "name": source.name,
        "kind": source.kind,
        "description": source.description,
        "builtin": source.builtin,
        "available": not reason,
        "reason": reason,
        "num_train": source.num_train,
        "num_test": source.num_test,
        "num_classes": source.num_classes,
        "labelled": source.labelled,
        "native_size": source.native_size,
        "modalities": list(source.modalities),
        "augmentation": source.augmentation,
        "procedural": source.render is not None,  # can render more training images
        "stored": bool(source.store),  # held in an on-disk image store
        "stored_size": source.native_size if source.store else 0,  # px the store keeps
        "stored_bytes": source.stored_bytes,  # the store's pixels on disk
    }


def list_datasets() -> list[dict[str, Any]]:
    """One dict per registered dataset (see `dataset_info`); loads nothing."""
    return [dataset_info(name) for name in _SOURCES]


# --- builtin sources -------------------------------------------------------------------------


def _procedural(
    generate: Callable[..., Any], class_names: tuple[str, ...], seeds: dict[str, int], counts: dict
) -> tuple[Callable[[str], RawImages], Callable[[int, int], RawImages]]:
    """(build, render) of a procedural source (`shapes`, `scenes`): a split drawn with its own
    seed, with object masks; or `count` more images with any other seed (training only)."""

    def build(split: str) -> RawImages:
        batch = generate(counts[split], seed=seeds[split])
        return RawImages(
            batch.images,
            batch.labels,
            list(class_names),
            batch.captions,
            batch.factors,
            batch.masks,
        )

    def render(count: int, seed: int) -> RawImages:
        if seed in seeds.values():
            raise DatasetError(f"seed {seed} is a split's own; pick another")
        batch = generate(count, seed=seed)
        return RawImages(
            batch.images, batch.labels, list(class_names), batch.captions, batch.factors
        )

    return build, render


_build_shapes, _render_shapes = _procedural(
    shapes.generate_shapes,
    shapes.SHAPE_NAMES,
    shapes.SPLIT_SEEDS,
    {"train": shapes.NUM_TRAIN, "test": shapes.NUM_TEST},
)
_build_scenes, _render_scenes = _procedural(
    scenes.generate_scenes,
    scenes.CLASS_NAMES,
    scenes.SPLIT_SEEDS,
    {"train": scenes.NUM_TRAIN, "test": scenes.NUM_TEST},
)


def _build_digits(split: str) -> RawImages:
    images, labels = digits.load_digits_split(split)
    return RawImages(images, labels, list(digits.CLASS_NAMES), digits.captions_for(labels))


def _shapes_captions(cache_dir: str | None) -> list[str]:
    """The captions of both `shapes` splits, train first (no image is drawn)."""
    return [
        caption
        for split in SPLITS
        for caption in shapes.shape_captions(
            shapes.NUM_TRAIN if split == "train" else shapes.NUM_TEST, shapes.SPLIT_SEEDS[split]
        )
    ]


register_dataset(
    DatasetSource(
        name="shapes",
        kind="image",
        builtin=True,
        description="Procedural coloured shapes with captions; colour, size, place and background vary",
        num_train=shapes.NUM_TRAIN,
        num_test=shapes.NUM_TEST,
        num_classes=len(shapes.SHAPE_NAMES),
        labelled=True,
        native_size=shapes.NATIVE_SIZE,
        build=_build_shapes,
        modalities=("image", "image-text"),
        version=3,  # 3: object masks
        augmentation="synthetic",
        render=_render_shapes,
    )
)
register_dataset(
    DatasetSource(
        name="scenes",
        kind="image",
        builtin=True,
        description="Procedural upright scenes: ten everyday objects in their usual colours "
        "under a sky, on the ground (for rotation and colorization)",
        num_train=scenes.NUM_TRAIN,
        num_test=scenes.NUM_TEST,
        num_classes=len(scenes.CLASS_NAMES),
        labelled=True,
        native_size=scenes.NATIVE_SIZE,
        build=_build_scenes,
        modalities=("image", "image-text"),
        # natural: colours mean something here, and "up" does too (the natural recipe flips
        # horizontally only).
        augmentation="natural",
        render=_render_scenes,
        version=2,  # 2: plain walls behind 60% of the objects
    )
)
register_dataset(
    DatasetSource(
        name="digits",
        kind="image",
        builtin=True,
        description="scikit-learn's 1,797 real 8x8 handwritten digits (0-9), upsampled",
        num_train=digits.NUM_TRAIN,
        num_test=digits.NUM_TEST,
        num_classes=len(digits.CLASS_NAMES),
        labelled=True,
        native_size=digits.NATIVE_SIZE,
        build=_build_digits,
        unavailable=digits.unavailable_reason,
        resample="bicubic",
    )
)
register_dataset(
    DatasetSource(
        name="captions",
        kind="text",
        builtin=True,
        description="The captions of `shapes` as a text corpus (6,000 short sentences)",
        num_train=5700,
        num_test=300,
        documents=_shapes_captions,
    )
)
register_dataset(
    DatasetSource(
        name="pydocs",
        kind="text",
        builtin=True,
        description="English prose from the Python standard library's docstrings (~1.1 MB, "
        "harvested and cached on first use)",
        num_train=8100,
        num_test=420,
        documents=pydocs.load_pydocs,
    )
)
