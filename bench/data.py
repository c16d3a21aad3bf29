"""Streamed against in-memory training on a stored image set, and the worker's memory.

    python bench/data.py [--count 20000] [--store-size 128] [--image-size 64] [--steps 20]
                         [--pixels random|shapes] [--folder /tmp/pretext-bench-store]

Writes a store of `count` images at `store-size` px (random pixels, or procedural shapes
rendered at `store-size`) with `SplitWriter`, registers it, then trains SimCLR (quick preset:
the small convnet, batch 128) at `image-size` px for `steps` steps in a fresh process per job,
as a worker would: the store streamed (PRETEXT_IN_MEMORY_MB=0), the store in memory (the
default threshold), and digits. Prints images/s (the trainer's own figure, after the first
step), the peak RssAnon (sampled every 20 ms from /proc/self/status) and VmHWM of each job, and
the load average before and after. Nothing is asserted: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

NAME = "bench-store"


def status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def write_store(folder: Path, count: int, size: int, pixels: str) -> bool:
    """Write the store unless the folder holds this one already; whether it wrote."""
    import numpy as np
    import torch

    from engine.data.datasets import resize_images
    from engine.data.image_store import SplitWriter, has_split, open_split

    if has_split(folder, "train"):
        split = open_split(folder, "train")
        if (len(split), split.size, split.provenance.get("pixels")) == (count, size, pixels):
            return False
    rng = np.random.default_rng(0)
    with SplitWriter(folder, "train", count=count, size=size) as out:
        labels = np.zeros(count, dtype=np.int64)
        for start in range(0, count, 1000):
            n = min(1000, count - start)
            if pixels == "shapes":
                from engine.data.shapes import generate_shapes

                batch = generate_shapes(n, seed=10_000 + start, size=size, supersample=1)
                out[start : start + n] = batch.images.numpy()
                labels[start : start + n] = batch.labels.numpy()
            else:
                small = torch.from_numpy(rng.integers(0, 256, (n, 3, 16, 16), dtype=np.uint8))
                out[start : start + n] = resize_images(small, size).numpy()  # some structure
                labels[start : start + n] = rng.integers(0, 10, n)
        out.finish(labels, [str(i) for i in range(10)], provenance={"pixels": pixels})
    return True


def job(args: argparse.Namespace) -> None:
    """One training job in this process; prints a JSON line of its figures."""
    import torch

    from engine import trainer
    from engine.config import TrainSpec, build_config
    from engine.data.datasets import is_streamed, load_dataset
    from engine.data.presets import resolve_augmentation
    from engine.data.stored_images import register_stored_dataset
    from engine.registry import get_method

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    peak = {"anon": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak["anon"] = max(peak["anon"], status_kb("RssAnon"))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    dataset = args.dataset
    if dataset == NAME:
        register_stored_dataset(NAME, args.folder, {"store": 1})
    params = {
        "image_size": args.image_size,
        "steps": args.steps,
        "checkpoint_every": 10**6,
        "health_every": 0,
        "log_every": 10**6,
    }
    spec = TrainSpec("simclr", dataset, seed=0, params=params)
    config = build_config(get_method("simclr").Config, "quick", params)
    config = resolve_augmentation(config, dataset)

    class Sink:
        def started(self, *a): ...
        def metrics(self, *a): ...
        def checkpoint(self, *a): ...
        def flush(self): ...

    tick = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        result = trainer.run_job(spec, config, Path(run_dir), Sink(), lambda: False)
    seconds = time.perf_counter() - tick
    done.set()
    sampler.join()
    streamed = is_streamed(load_dataset(dataset, "train", args.image_size).images)
    print(
        json.dumps(
            {
                "images_per_second": result.images_per_second,
                "seconds": seconds,
                "streamed": streamed,
                "peak_rss_anon_mb": max(peak["anon"], status_kb("RssAnon")) / 1024,
                "vm_hwm_mb": status_kb("VmHWM") / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--store-size", type=int, default=128)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--pixels", choices=["random", "shapes"], default="random")
    parser.add_argument("--folder", default="/tmp/pretext-bench-store")
    parser.add_argument("--job", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", default=NAME, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        job(args)
        return

    print(f"load average before: {os.getloadavg()}")
    tick = time.perf_counter()
    wrote = write_store(Path(args.folder), args.count, args.store_size, args.pixels)
    print(
        f"store: {args.count} images at {args.store_size} px ({args.pixels}) in {args.folder}: "
        + (f"written in {time.perf_counter() - tick:.1f} s" if wrote else "reused")
    )
    runs = [
        ("store, streamed", NAME, {"PRETEXT_IN_MEMORY_MB": "0"}),
        ("store, in memory", NAME, {"PRETEXT_IN_MEMORY_MB": "512"}),
        ("digits", "digits", {}),
    ]
    print(
        f"SimCLR quick (convnet, batch 128) at {args.image_size} px, {args.steps} steps, "
        "one fresh process per job"
    )
    print(f"{'job':<18}{'images/s':>10}{'wall s':>9}{'peak RssAnon MB':>17}{'VmHWM MB':>10}")
    for label, dataset, env in runs:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--job",
                "--dataset",
                dataset,
                "--folder",
                args.folder,
                "--image-size",
                str(args.image_size),
                "--steps",
                str(args.steps),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, **env},
        )
        if out.returncode:
            print(f"{label:<18} failed: {out.stderr.strip()[-800:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        assert r["streamed"] == (label == "store, streamed"), r
        print(
            f"{label:<18}{r['images_per_second']:>10.1f}{r['seconds']:>9.1f}"
            f"{r['peak_rss_anon_mb']:>17.0f}{r['vm_hwm_mb']:>10.0f}"
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
