"""Example pictures for the image lenses: builtin shapes and scenes, scikit-image's photographs.

Written once as PNG files under the home's cache (the web app's example lists take files).
scikit-image ships its photographs (the cat, the coffee cup, the rocket, the astronaut) inside
the package, so they are there offline; without scikit-image only the shapes are offered.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from engine.data.scenes import SceneBatch
    from engine.data.shapes import ShapeBatch

PHOTOS = (
    ("cat", "chelsea"),
    ("coffee", "coffee"),
    ("rocket", "rocket"),
    ("astronaut", "astronaut"),
)
SHAPES_SEED = 2024  # neither a train nor a test split seed: pictures the runs never saw
NUM_SHAPES = 4
SHAPES_SIZE = 128
SCENES_SEED = 2024  # as SHAPES_SEED: not one of `scenes`' split seeds
NUM_SCENES = 4
SCENES_SIZE = 128
# An example of a builtin set is named "<set>-<n>-<label>": a lens shows a run trained on that
# set its own kind (webapp's ModelExamples); the photographs' names have no dash.
INDEX_VERSION = 2  # 2: scenes pictures; a cache written before is rewritten


def shape_examples() -> ShapeBatch:
    """The shapes example pictures with their labels and object masks."""
    from engine.data.shapes import generate_shapes

    return generate_shapes(NUM_SHAPES, seed=SHAPES_SEED, size=SHAPES_SIZE)


def scene_examples() -> SceneBatch:
    """The scenes example pictures with their labels and object masks."""
    from engine.data.scenes import generate_scenes

    return generate_scenes(NUM_SCENES, seed=SCENES_SEED, size=SCENES_SIZE)


def _pictures() -> list[tuple[str, np.ndarray]]:
    from engine.data.scenes import CLASS_NAMES
    from engine.data.shapes import SHAPE_NAMES

    out = []
    try:
        import skimage.data
    except ImportError:
        skimage = None
    if skimage is not None:
        out += [(name, getattr(skimage.data, loader)()) for name, loader in PHOTOS]
    batch = shape_examples()
    for i in range(NUM_SHAPES):
        label = SHAPE_NAMES[int(batch.labels[i])]
        out.append((f"shapes-{i + 1}-{label}", batch.images[i].permute(1, 2, 0).numpy()))
    scenes = scene_examples()
    for i in range(NUM_SCENES):
        label = CLASS_NAMES[int(scenes.labels[i])].replace(" ", "-")
        out.append((f"scenes-{i + 1}-{label}", scenes.images[i].permute(1, 2, 0).numpy()))
    return out


def example_images(folder: Path) -> list[dict[str, str]]:
    """[{"name": "cat", "path": ".../cat.png"}, ...], photographs first, then shapes and
    scenes."""
    from PIL import Image

    folder = Path(folder)
    try:
        import skimage  # noqa: F401

        index = folder / f"index-{INDEX_VERSION}.txt"
    except ImportError:
        index = folder / f"index-builtin-{INDEX_VERSION}.txt"
    if index.exists():
        names = index.read_text().split()
        if all((folder / f"{n}.png").exists() for n in names):
            return [{"name": n, "path": str(folder / f"{n}.png")} for n in names]
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for name, picture in _pictures():
        Image.fromarray(np.ascontiguousarray(picture)).save(folder / f"{name}.png")
        names.append(name)
    index.write_text("\n".join(names))
    return [{"name": n, "path": str(folder / f"{n}.png")} for n in names]


# ---- text examples that fit the model ------------------------------------------------------
# Studio runs trained on shapes' captions read sentences like theirs; Hub models everyday prose.
CAPTION_DATASETS = ("captions", "shapes")
EVERYDAY = {
    "fill_mask": [
        "The capital of France is [MASK].",
        "She poured hot [MASK] into her cup.",
        "The children played in the [MASK] all afternoon.",
    ],
    "generate": ["Once upon a time", "The best way to learn a language is", "The function returns"],
    "text2text": [
        "translate English to French: The house is wonderful.",
        "summarize: The studio trains self-supervised models on a laptop and shows what "
        "they learned: attention maps, reconstructions, and words in the blanks.",
        "The <extra_id_0> walks in <extra_id_1> park.",
    ],
}
NUM_CAPTIONS = 4


def _masked(caption: str, word: str, mask: str) -> str:
    return caption.replace(f" {word} ", f" {mask} ", 1)


def text_examples(lens: str) -> dict[str, list[str]]:
    """The text lenses' examples: {"captions": sentences like the `captions` corpus's own
    (shapes' captions of pictures the runs never saw, with a word masked for fill-mask and
    text-to-text, cut short for generation), "everyday": prose for Hub models}."""
    from engine.data.shapes import PALETTE, SHAPE_NAMES, shape_captions

    if lens not in EVERYDAY:
        raise ValueError(f"no text examples for {lens!r}; lenses: {', '.join(EVERYDAY)}")
    captions = shape_captions(NUM_CAPTIONS, SHAPES_SEED)
    shapes = [next(w for w in c.split() if w in SHAPE_NAMES) for c in captions]
    colours = [next(w for w in c.split() if w in PALETTE) for c in captions]
    if lens == "fill_mask":  # the shape, then the colour: what a captions model can know
        studio = [_masked(c, s, "[MASK]") for c, s in zip(captions[:2], shapes)]
        studio += [_masked(c, k, "[MASK]") for c, k in zip(captions[2:], colours[2:])]
    elif lens == "generate":
        studio = ["a small", *(" ".join(c.split()[:4]) for c in captions[:3])]
    else:
        studio = [_masked(captions[0], shapes[0], "<extra_id_0>")]
        studio += [
            _masked(_masked(c, s, "[MASK]"), k, "[MASK]")
            for c, s, k in zip(captions[1:3], shapes[1:3], colours[1:3])
        ]
    return {"captions": studio, "everyday": list(EVERYDAY[lens])}
