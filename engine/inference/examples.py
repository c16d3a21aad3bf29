"""Example pictures for the image lenses: builtin shapes and scikit-image's photographs.

Written once as PNG files under the home's cache (the web app's example lists take files).
scikit-image ships its photographs (the cat, the coffee cup, the rocket, the astronaut) inside
the package, so they are there offline; without scikit-image only the shapes are offered.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PHOTOS = (
    ("cat", "chelsea"),
    ("coffee", "coffee"),
    ("rocket", "rocket"),
    ("astronaut", "astronaut"),
)
SHAPES_SEED = 2024  # neither a train nor a test split seed: pictures the runs never saw
NUM_SHAPES = 4
SHAPES_SIZE = 128


def _pictures() -> list[tuple[str, np.ndarray]]:
    from engine.data.shapes import SHAPE_NAMES, generate_shapes

    out = []
    try:
        import skimage.data
    except ImportError:
        skimage = None
    if skimage is not None:
        out += [(name, getattr(skimage.data, loader)()) for name, loader in PHOTOS]
    batch = generate_shapes(NUM_SHAPES, seed=SHAPES_SEED, size=SHAPES_SIZE)
    for i in range(NUM_SHAPES):
        label = SHAPE_NAMES[int(batch.labels[i])]
        out.append((f"shapes-{i + 1}-{label}", batch.images[i].permute(1, 2, 0).numpy()))
    return out


def example_images(folder: Path) -> list[dict[str, str]]:
    """[{"name": "cat", "path": ".../cat.png"}, ...], photographs first, then shapes."""
    from PIL import Image

    folder = Path(folder)
    try:
        import skimage  # noqa: F401

        index = folder / "index.txt"
    except ImportError:
        index = folder / "index-shapes.txt"
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
