"""Seconds from Start to the first loss point, as the Train tab sees it.

    python bench/first_point.py [--method simclr] [--dataset digits] [--preset quick]

Submits a job through the engine API to a fresh home folder, lets the job manager start the
worker process, and polls `metrics` as the UI does; prints the time to the first point, to the
tenth, and the images/s the worker reports.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.api import Studio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--precision", default=None, help="bf16 or fp32 (default: the preset's)")
    args = parser.parse_args()
    params = {"precision": args.precision} if args.precision else {}
    with tempfile.TemporaryDirectory() as home:
        studio = Studio(home)
        studio.start_manager()
        start = time.monotonic()
        job_id = studio.submit(
            {
                "method": args.method,
                "dataset": args.dataset,
                "preset": args.preset,
                "params": params,
            }
        )
        first = tenth = None
        while tenth is None and time.monotonic() - start < 300:
            steps = [p["step"] for p in studio.metrics(job_id) if p["name"] == "loss"]
            if steps and first is None:
                first = time.monotonic() - start
            if len(steps) >= 10:
                tenth = time.monotonic() - start
            time.sleep(0.1)
        studio.cancel(job_id)
        while studio.job(job_id)["status"] == "running":
            time.sleep(0.2)
        job = studio.job(job_id)
        studio.shutdown()
    print(
        f"{args.method} on {args.dataset} ({args.preset}): first loss point after "
        f"{first:.1f} s, tenth after {tenth:.1f} s; {job['images_per_second'] or 0:.0f} "
        f"images/s at step {job['step']}"
    )


if __name__ == "__main__":
    main()
