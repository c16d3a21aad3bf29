"""Importing a folder of JPEGs into an image store: images/s, pooled and in one process.

    python bench/data_import.py [--count 10000] [--side 300] [--image-size 128]
                                [--folder /tmp/pretext-bench-jpegs] [--no-single]

Renders `count` JPEGs of about `side` px (each its own smooth random picture with an ellipse,
quality 90, sides varying by +-15%, two label folders) into `folder` once (kept for reruns),
then imports them with `engine.data.user_images.import_images` at `image-size` px: with the
process pool on the cores this process may use, then (unless --no-single) in this process only,
then the same pooled import again (same files, name and size: reused, nothing decoded). Prints
images/s of each (wall clock, headers read and store written included) and the load average
before and after. Nothing is asserted: figures depend on the machine; rerun any taken at a
load above 2.5.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _render(job: tuple[str, int, int]) -> None:
    import numpy as np
    from PIL import Image, ImageDraw

    path, side, seed = job
    rng = np.random.default_rng(seed)
    w, h = (int(side * rng.uniform(0.85, 1.15)) for _ in range(2))
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
    box = sorted(rng.integers(0, w, 2).tolist()) + sorted(rng.integers(0, h, 2).tolist())
    ImageDraw.Draw(img).ellipse(
        (box[0], box[2], box[1] + 1, box[3] + 1), fill=tuple(rng.integers(0, 256, 3).tolist())
    )
    img.save(path, format="JPEG", quality=90)


def render(folder: Path, count: int, side: int) -> None:
    marker = folder / f".complete-{count}-{side}"
    if marker.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    jobs = []
    for i in range(count):
        label = folder / ("a" if i % 2 else "b")
        label.mkdir(parents=True, exist_ok=True)
        jobs.append((str(label / f"{i:06d}.jpg"), side, i))
    start = time.perf_counter()
    with ProcessPoolExecutor(max(1, len(os.sched_getaffinity(0)))) as pool:
        list(pool.map(_render, jobs, chunksize=64))
    marker.touch()
    print(f"rendered {count} JPEGs of ~{side} px in {time.perf_counter() - start:.1f} s")


def timed_import(folder: Path, name: str, datasets: Path, size: int) -> tuple[float, object]:
    from engine.data.user_images import import_images

    start = time.perf_counter()
    report = import_images(folder, name, datasets, size)
    return time.perf_counter() - start, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--side", type=int, default=300)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument(
        "--folder", default=os.path.join(tempfile.gettempdir(), "pretext-bench-jpegs")
    )
    parser.add_argument("--no-single", action="store_true", help="skip the one-process import")
    args = parser.parse_args()

    import engine.data.user_images as user_images

    folder = Path(args.folder)
    render(folder, args.count, args.side)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="pretext-bench-import-") as tmp:
        datasets = Path(tmp)
        workers = user_images.decode_workers(args.count)
        seconds, report = timed_import(folder, "pooled", datasets, args.image_size)
        print(
            f"pool of {workers} processes: {args.count} JPEGs at {args.image_size} px in "
            f"{seconds:.1f} s = {args.count / seconds:.0f} images/s "
            f"({report.num_train} train, {report.num_test} test)"
        )
        if not args.no_single:
            user_images.MAX_WORKERS = 1
            seconds, _ = timed_import(folder, "single", datasets, args.image_size)
            print(f"one process: {seconds:.1f} s = {args.count / seconds:.0f} images/s")
        seconds, report = timed_import(folder, "pooled", datasets, args.image_size)
        print(f"re-added (reused: {report.reused}): {seconds:.2f} s")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
