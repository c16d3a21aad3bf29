"""One quick-preset job against its own random-init twin: the tuning runs of bench/RESULTS.md.

    python bench/quick_run.py TAG METHOD DATASET [--eval knn,segmentation] [-- ENGINE ARGS...]

Runs `python -m engine train --method METHOD --dataset DATASET --preset quick --eval ... --now
--json ENGINE ARGS` in the home folder `--home` (default ./.bench-quick), then prints one table
row: the steps and the job's training seconds, the loss, each figure of the evaluation next to
the twin's (the job's own network at random initialisation, which the end-of-job evaluation
stores), the CPU seconds of the whole command and the load average. Each row is also appended
as JSON to `--out` (default quick_runs.jsonl). Run one at a time on an idle machine; rerun a row
taken at a load above 2.5.

Example (MoCo's tuned settings, issue #17):
    python bench/quick_run.py moco3 moco shapes -- --steps 1400 --set queue_size=256 \\
        --set temperature=0.1 --set projection_batch_norm=true
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def twin_figures(home: str, method: str, dataset: str) -> dict[str, dict[str, Any]]:
    """{protocol: figures} of the random-init baselines stored for `method` on `dataset`."""
    from engine.api import Studio

    out: dict[str, dict[str, Any]] = {}
    for ev in Studio(home=home).evaluations():
        params = ev["params"] or {}
        if ev["job_id"] is None and ev["dataset"] == dataset and params.get("method") == method:
            out[ev["protocol"]] = ev["figures"]
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tag")
    parser.add_argument("method")
    parser.add_argument("dataset")
    parser.add_argument("--eval", default="knn", help="protocols, comma-separated")
    parser.add_argument("--home", default=".bench-quick")
    parser.add_argument("--out", default="quick_runs.jsonl")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    command = [
        sys.executable, "-m", "engine", "train", "--home", args.home, "--method", args.method,
        "--dataset", args.dataset, "--preset", "quick", "--eval", args.eval, "--now", "--json",
        *extra,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return done.returncode
    summary = json.loads(done.stdout)
    row = {
        "tag": args.tag,
        "method": args.method,
        "dataset": args.dataset,
        "settings": " ".join(extra),
        "status": summary["status"],
        "steps": summary["steps"],
        "train_s": summary["duration_s"],
        "loss": [summary["first_loss"], summary["final_loss"]],
        "eval": summary.get("eval", {}),
        "twin": twin_figures(args.home, args.method, args.dataset),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "load": os.getloadavg(),
    }
    with open(args.out, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
    twin = {k: v for figures in row["twin"].values() for k, v in figures.items()}
    figures = "; ".join(
        f"{name} {value:.3f} (twin {twin[name]:.3f})" if name in twin else f"{name} {value:.3f}"
        for name, value in row["eval"].items()
        if isinstance(value, float)
    )
    first, last = row["loss"]
    print(
        f"| {args.tag} | {args.method} | {args.dataset} | {row['settings'] or '-'} | "
        f"{row['steps']} / {row['train_s']:.0f} | {first:.3f} -> {last:.3f} | {figures} | "
        f"cpu {row['cpu_s']:.0f} s, load {row['load'][0]:.2f} |"
    )
    return 0 if row["status"] == "completed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
