"""Images per second of the batched views, against kornia and a per-image torchvision pipeline.

    python bench/views.py [--batch 256] [--sizes 32 64] [--rounds 7]

Each pipeline runs in interleaved rounds and the best round is reported (the median in
brackets): on a shared two-core machine other processes slow some rounds down, and interleaving
lets every pipeline meet the same conditions. The kornia and torchvision pipelines follow the same
recipes (SimCLR appendix A, MAE crop + flip) so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.data.views import IMAGENET_MEAN, IMAGENET_STD, make_views


def kornia_views(recipe: str, size: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The same recipe with stock kornia.augmentation modules, or None if kornia is missing."""
    try:
        import kornia.augmentation as K
    except ImportError:
        return None
    scale = (0.2, 1.0)
    steps: list[torch.nn.Module] = [
        K.RandomResizedCrop((size, size), scale=scale),
        K.RandomHorizontalFlip(),
    ]
    if recipe == "simclr":
        steps += [K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), K.RandomGrayscale(p=0.2)]
        if size > 32:
            kernel = int(0.1 * size) // 2 * 2 + 1
            steps.append(K.RandomGaussianBlur((kernel, kernel), (0.1, 2.0), p=0.5))
    steps.append(K.Normalize(mean=torch.tensor(IMAGENET_MEAN), std=torch.tensor(IMAGENET_STD)))
    pipeline = torch.nn.Sequential(*steps)

    def run(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return pipeline(images.float() / 255)

    return run


def torchvision_views(recipe: str, size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The same recipe applied image by image on PIL images, as a classic DataLoader would."""
    from PIL import Image
    from torchvision import transforms as T

    if recipe == "simclr":
        steps = [
            T.RandomResizedCrop(size, scale=(0.2, 1.0)),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
        ]
        if size > 32:
            kernel = int(0.1 * size) // 2 * 2 + 1
            steps.append(T.RandomApply([T.GaussianBlur(kernel, (0.1, 2.0))], p=0.5))
    else:
        bicubic = T.InterpolationMode.BICUBIC
        steps = [
            T.RandomResizedCrop(size, scale=(0.2, 1.0), interpolation=bicubic),
            T.RandomHorizontalFlip(),
        ]
    pipeline = T.Compose(steps + [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    cache: dict[int, list[Image.Image]] = {}

    def run(images: torch.Tensor) -> torch.Tensor:
        key = id(images)  # PIL conversion happens once, outside the timed part of later rounds
        if key not in cache:
            cache[key] = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images]
        return torch.stack([pipeline(img) for img in cache[key]])

    return run


def measure(
    pipelines: dict[str, Callable[[torch.Tensor], torch.Tensor]], images: torch.Tensor, rounds: int
) -> dict[str, list[float]]:
    """Images/s of each pipeline per round, rounds interleaved across pipelines."""
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for run in pipelines.values():
        run(images)  # warm-up: allocator, kernels, PIL conversion
    for _ in range(rounds):
        for name, run in pipelines.items():
            start = time.perf_counter()
            run(images)
            rates[name].append(images.shape[0] / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--recipes", nargs="+", default=["simclr", "mae"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--no-pil", action="store_true", help="skip the per-image torchvision pipeline"
    )
    args = parser.parse_args()

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
        f"load average {load:.1f}; batch {args.batch}, best of {args.rounds} rounds (median)"
    )
    torch.manual_seed(0)
    for size in args.sizes:
        images = torch.randint(0, 256, (args.batch, 3, size, size), dtype=torch.uint8)
        for recipe in args.recipes:
            pipelines: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
                "ours": make_views(recipe, size)
            }
            reference = kornia_views(recipe, size)
            if reference is not None:
                pipelines["kornia"] = reference
            if not args.no_pil:
                pipelines["torchvision PIL"] = torchvision_views(recipe, size)
            rates = measure(pipelines, images, args.rounds)
            best = {name: max(r) for name, r in rates.items()}
            cells = [
                f"{name} {best[name]:8,.0f} ({statistics.median(r):,.0f})"
                for name, r in rates.items()
            ]
            ratios = [
                f"x{best['ours'] / best[name]:.1f} vs {name}" for name in best if name != "ours"
            ]
            print(
                f"{recipe:7s} {size:3d}px  "
                + "  ".join(cells)
                + "   images/s;  "
                + ", ".join(ratios)
            )


if __name__ == "__main__":
    main()
