"""SimCLR on digits for a fixed budget, then k-NN and linear accuracy next to both baselines.

    python bench/eval_simclr.py [--budget 180] [--preset quick] [--protocols knn,linear]

Trains `simclr` on `digits` with the preset through the job manager (a worker process, as the
app runs it) until the preset's steps are done or the budget (seconds of wall time) runs out,
when the job is stopped cleanly with a checkpoint. Then evaluates the last checkpoint with each
protocol; the `pixels` and `random` (same ResNet, random init) baselines at the same image size
come through the same code. The digits train/test split is fixed by seed (engine/data/digits.py),
so the baselines are reproducible; the SimCLR figure depends on how many steps the budget
allowed, which the report states along with the machine's load.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from engine.api import Studio


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=float, default=180.0, help="training seconds")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--protocols", default="knn,linear")
    parser.add_argument("--home", default=None, help="home folder (default: a temporary one)")
    args = parser.parse_args()
    protocols = [p for p in args.protocols.split(",") if p]
    with tempfile.TemporaryDirectory() as tmp:
        studio = Studio(args.home or tmp)
        print(f"load before: {load()}")
        studio.start_manager()
        job_id = studio.submit({"method": "simclr", "dataset": "digits", "preset": args.preset})
        start, stopped = time.monotonic(), False
        while True:
            job = studio.job(job_id)
            if job["status"] not in ("queued", "running"):
                break
            if (
                not stopped
                and job["status"] == "running"
                and time.monotonic() - start > args.budget
            ):
                studio.cancel(job_id)
                stopped = True
            time.sleep(1.0)
        studio.shutdown()
        job = studio.job(job_id)
        print(
            f"trained: job {job_id} {job['status']}, {job['step']}/{job['total_steps']} "
            f"steps in {job['duration_s']:.0f} s, loss {studio.summary(job_id)['first_loss']:.3f}"
            f" -> {job['last_loss']:.3f}, {job['images_per_second'] or 0:.0f} images/s"
        )
        print(f"load after training: {load()}")
        tick = time.monotonic()
        for protocol in protocols:
            studio.evaluate(job_id, protocol)
        print(f"evaluation (with baselines): {time.monotonic() - tick:.0f} s; load {load()}")
        rows = [r for r in studio.leaderboard() if r["dataset"] == "digits"]
        keys = [
            k
            for k in (
                "knn_top1",
                "knn_top5",
                "linear_top1",
                "fewshot_1shot",
                "fewshot_5shot",
                "fewshot_10shot",
                "finetune_1pct",
                "finetune_1pct_scratch",
                "finetune_10pct",
                "finetune_10pct_scratch",
            )
            if any(k in r for r in rows)
        ]
        print()
        print(f"{'digits (test split, 360 images)':<34}" + "".join(f"{k:>14}" for k in keys))
        for r in rows:
            label = (
                f"simclr #{r['job_id']} (step {r['eval_step']})"
                if r["kind"] == "job"
                else f"{r['name']} ({r['image_size']} px)"
            )
            print(
                f"{label:<34}" + "".join(f"{r[k]:>14.4f}" if k in r else f"{'':>14}" for k in keys)
            )


if __name__ == "__main__":
    main()
