"""The CLI: the same engine as the web app, writing to the same job store.

    python -m engine methods [--json]
    python -m engine datasets [--json]
    python -m engine datasets --add PATH|HF_DATASET [--name N] [--image-size S]
                              [--column C] [--split S]
    python -m engine datasets --add torchvision:CIFAR10 --root DIR [--name N] [--download]
                              [--image-size S]
    python -m engine datasets --add HF_IMAGE_DATASET [--name N] [--split S]
                              [--image-column C] [--label-column L] [--image-size S]
    python -m engine train --method simclr --dataset digits [--preset quick] [--steps N]
                           [--batch-size B] [--lr X] [--seed S] [--processes N]
                           [--set key=value ...] [--now]
                           [--json]
    python -m engine resume JOB_ID [--now] [--json]
    python -m engine jobs [--json]
    python -m engine demo [--dry-run] [--no-wait] [--json]
    python -m engine metrics JOB_ID [--name loss] [--json]
    python -m engine eval --job ID --protocol knn|linear|fewshot|finetune|segmentation|reconstruction
                          [--dataset D] [--json]
    python -m engine eval --baseline pixels|random --dataset D [--backbone B] [--json]
    python -m engine eval --model HUB_ID_OR_FOLDER --dataset D [--protocol P] [--json]
    python -m engine export JOB_ID --out DIR [--step N] [--zip] [--json]
    python -m engine push JOB_ID --repo USER/NAME [--private] [--step N] [--json]

Every command takes --home DIR (default $PRETEXT_HOME, else ./.pretext).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if sys.argv[1:2] != ["push"]:  # only `push` needs the Hub; the rest never waits on it
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _parse_set(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            from engine.errors import SpecError

            raise SpecError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _protocol_params(items: list[str], protocols: list[str]) -> dict[str, Any] | None:
    """`eval --set KEY=VALUE` as protocol settings: each value read as JSON (240, 0.5,
    [0.1]), else kept as text for the protocol's own check to name."""
    if not items:
        return None
    if len(protocols) != 1:
        from engine.errors import SpecError

        raise SpecError(
            "--set changes one protocol's settings; evaluate one protocol at a time with it"
        )
    params: dict[str, Any] = {}
    for key, text in _parse_set(items).items():
        try:
            params[key] = json.loads(text)
        except json.JSONDecodeError:
            params[key] = text
    from engine.evaluation.runner import resolve_params

    resolve_params(protocols[0], params)  # refused here, before any progress bar starts
    return params


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def cmd_methods(studio, args) -> int:
    methods = studio.methods()
    if args.json:
        print(json.dumps(methods))
    else:
        for m in methods:
            print(f"{m['name']:<14}{m['description']}")
    return 0


@contextmanager
def _progress_bar():
    """An `on_progress(fraction, text)` drawing a tqdm bar on stderr (a terminal only); the
    bar appears with the first report, so an import refused at once prints only its error."""
    from tqdm import tqdm

    bar = None

    def on_progress(fraction: float, text: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=1000, disable=None, leave=False, bar_format="{l_bar}{bar}| {elapsed}")
        bar.set_description_str(text, refresh=False)
        bar.update(round(fraction * 1000) - bar.n)

    try:
        yield on_progress
    finally:
        if bar is not None:
            bar.close()


def _add_image_source(studio, args) -> dict[str, Any] | None:
    """`datasets --add torchvision:NAME --root DIR`, or a Hugging Face image dataset (an image
    column asked for, or a saved folder holding one); None for any other source."""
    size = args.image_size
    if args.add.lower().startswith("torchvision:"):
        from engine.data.tv_datasets import canonical_name

        dataset = canonical_name(args.add)
        if not args.root:
            from engine.errors import DatasetError

            raise DatasetError(f"--add torchvision:{dataset} needs --root DIR (its folder)")
        name = args.name or dataset.lower()
        with _progress_bar() as on_progress:
            return studio.add_torchvision_dataset(
                name, args.root, dataset, args.download, size, on_progress
            )
    if args.root or args.download:
        from engine.errors import DatasetError

        raise DatasetError("--root and --download go with --add torchvision:NAME")
    from engine.data.hf_images import has_image_column

    if args.image_column or args.label_column or (not args.column and has_image_column(args.add)):
        name = args.name or Path(args.add).name
        with _progress_bar() as on_progress:
            return studio.add_hf_image_dataset(
                args.add, name, args.split, args.image_column, args.label_column, size, on_progress
            )
    return None


def cmd_datasets(studio, args) -> int:
    added = _add_image_source(studio, args) if args.add else None
    if added is not None:
        print(json.dumps(added) if args.json else added["message"])
        return 0
    if args.add:
        from engine.data.user_text import is_text_source

        name = args.name or Path(args.add).stem
        if args.column or args.split or is_text_source(args.add):
            info = studio.add_text_dataset(args.add, name, args.column, args.split)
        else:
            with _progress_bar() as on_progress:
                info = studio.add_image_dataset(args.add, name, args.image_size, on_progress)
        print(json.dumps(info) if args.json else info["message"])
        return 0
    datasets = studio.datasets()
    if args.json:
        print(json.dumps(datasets))
    else:
        width = max([12, *(len(d["name"]) + 2 for d in datasets)])  # long user names too
        for d in datasets:
            state = "available" if d["available"] else f"unavailable: {d['reason']}"
            print(
                f"{d['name']:<{width}}{d['kind']:<7}{d['num_train']:>7} train {d['num_test']:>6} "
                f"test  {state}  - {d['description']}"
            )
    return 0


def cmd_jobs(studio, args) -> int:
    studio.recover()  # a worker that died since shows as interrupted, not running
    jobs = studio.jobs()
    if args.json:
        print(json.dumps(jobs))
    elif not jobs:
        print(
            "no jobs yet; start one with `python -m engine train --method simclr --dataset digits`"
        )
    else:
        for j in jobs:
            j["steps"] = f"{j['step']}/{j['total_steps']}"
            j["loss"] = None if j["last_loss"] is None else f"{j['last_loss']:.4f}"
        print(
            _table(
                jobs,
                [
                    "id",
                    "method",
                    "dataset",
                    "backbone",
                    "status",
                    "steps",
                    "loss",
                    "started_at",
                    "duration_s",
                    "error",
                ],
            )
        )
    return 0


def cmd_train(studio, args) -> int:
    params: dict[str, Any] = _parse_set(args.set)
    for flag, key in (
        ("backbone", "backbone"),
        ("steps", "steps"),
        ("batch_size", "batch_size"),
        ("lr", "lr"),
        ("processes", "processes"),
    ):
        value = getattr(args, flag)
        if value is not None:
            params[key] = value
    spec = {
        "method": args.method,
        "dataset": args.dataset,
        "preset": args.preset,
        "seed": args.seed,
        "params": params,
    }
    if args.eval:
        spec["evals"] = _protocol_list(args.eval)
    if args.eval_dataset:
        spec["eval_dataset"] = args.eval_dataset
    _, config = studio.validate(spec)  # fail before the progress bar appears
    return _run_with_bar(
        studio,
        args,
        config.steps,
        0,
        lambda **kw: studio.run_foreground(spec, wait=not args.now, **kw),
    )


def cmd_resume(studio, args) -> int:
    studio.recover()  # a job whose worker was killed shows as interrupted, at its checkpoint
    job = studio.job(args.job_id)
    return _run_with_bar(
        studio,
        args,
        job["total_steps"],
        job["step"],
        lambda **kw: studio.resume_foreground(args.job_id, wait=not args.now, **kw),
    )


def _run_with_bar(studio, args, total_steps: int, first_step: int, run) -> int:
    """Run a foreground job with a progress bar on stderr; print its summary."""
    from tqdm import tqdm

    from engine.jobs import MAX_JOBS_ENV, max_jobs

    bars: list[tqdm] = []  # made at the first step: none while it waits, or if it is refused

    def on_step(step: int, values: dict[str, float]) -> None:
        if not bars:
            bars.append(
                tqdm(
                    total=total_steps,
                    initial=first_step,
                    file=sys.stderr,
                    unit="step",
                    dynamic_ncols=True,
                )
            )
        bars[0].n = step
        # Not every point is a training step's: the online k-NN logs alone, at step 0 too.
        if "loss" in values:
            bars[0].set_postfix(
                loss=f"{values['loss']:.4f}", img_s=f"{values.get('images_per_second', 0):.0f}"
            )

    def on_wait(job_ids: list[int]) -> None:
        jobs = "; ".join(
            f"job {j['id']} ({j['method']} on {j['dataset']}, step "
            f"{j['step']}/{j['total_steps']}, pid {j['pid']})"
            for j in map(studio.job, job_ids)
        )
        print(
            f"waiting for a free slot ({MAX_JOBS_ENV}={max_jobs()}) behind {jobs}; "
            f"--now starts at once",
            file=sys.stderr,
            flush=True,
        )

    summary = run(on_step=on_step, on_wait=on_wait)
    for bar in bars:
        bar.n = summary["steps"]
        bar.close()
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"job {summary['job_id']} {summary['status']}: {summary['steps']} steps, loss "
            f"{summary['first_loss']} -> {summary['final_loss']}, "
            f"{summary['images_per_second'] or 0:.0f} images/s, run folder "
            f"{summary['run_dir']}"
        )
        if summary["eval"]:
            print(
                "eval: "
                + ", ".join(
                    f"{k} {v:.4f}" for k, v in summary["eval"].items() if not k.endswith("_std")
                )
            )
        if summary["error"]:
            print(f"error: {summary['error']}", file=sys.stderr)
    return 0 if summary["status"] in ("completed", "cancelled") else 1


def _minutes(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def cmd_demo(studio, args) -> int:
    """Queue the showcase runs (or, with --dry-run, only list them) and, unless --no-wait, run
    them here one after the other with this process's job manager."""
    import time

    from engine.contract import TERMINAL_STATUSES

    plan = studio.demo_plan() if args.dry_run else studio.demo_pack()
    if args.json:
        print(json.dumps(plan))
    else:
        rows = [
            {
                "job": job["job_id"] or "-",
                "method": job["method"],
                "dataset": job["dataset"],
                "steps": job["steps"],
                "evaluations": ",".join(job["evals"]) or "-",
                "expected": _minutes(job["expected_s"]),
            }
            for job in plan["jobs"]
        ]
        print(_table(rows, ["job", "method", "dataset", "steps", "evaluations", "expected"]))
        print(f"total {_minutes(plan['expected_s'])}: {plan['note']}")
        print(f"this machine: {plan['hardware']}")
    if args.dry_run:
        return 0
    if args.no_wait:
        if not args.json:
            print("queued: the job manager of `python app.py` on this home runs them")
        return 0
    ids = [job["job_id"] for job in plan["jobs"]]
    studio.start_manager()
    ended: set[int] = set()
    try:
        while len(ended) < len(ids):
            for job_id in ids:
                job = studio.job(job_id)
                if job_id not in ended and job["status"] in TERMINAL_STATUSES:
                    ended.add(job_id)
                    if not args.json:
                        error = f": {job['error']}" if job["error"] else ""
                        print(f"job {job_id} {job['method']}: {job['status']}{error}")
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("stopped waiting: the running job goes on; the queued ones wait for the app")
        return 130
    finally:
        studio.shutdown()
    return 0


def cmd_metrics(studio, args) -> int:
    studio.job(args.job_id)  # a JobError names an unknown id
    points = [p for p in studio.metrics(args.job_id) if args.name is None or p["name"] == args.name]
    if args.json:
        print(json.dumps(points))  # floats round-trip exactly
    else:
        print(_table(points, ["step", "name", "value"]))
    return 0


def _protocol_list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def cmd_eval(studio, args) -> int:
    from tqdm import tqdm

    from engine.errors import SpecError

    chosen = [args.job is not None, args.baseline is not None, args.model is not None]
    if sum(chosen) != 1:
        raise SpecError(
            "eval needs one of --job ID, --baseline pixels|random or --model HUB_ID_OR_FOLDER"
        )
    if args.job is None and not args.dataset:
        what = "--baseline" if args.baseline is not None else "--model"
        raise SpecError(f"{what} needs --dataset (a labelled image dataset, e.g. shapes)")
    protocols = _protocol_list(args.protocol)
    known = [p["name"] for p in studio.protocols()]
    for protocol in protocols or [""]:
        if protocol not in known:  # all checked before the first one runs
            raise SpecError(f"unknown protocol {protocol!r}; choose one of: {', '.join(known)}")
    params = _protocol_params(args.set, protocols)
    rows, figures = [], {}
    for protocol in protocols:
        bar = tqdm(
            total=100,
            file=sys.stderr,
            desc=protocol,
            dynamic_ncols=True,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}",
        )

        def on_progress(fraction: float, text: str, bar=bar) -> None:
            bar.n = round(100 * fraction)
            bar.set_postfix_str(text)

        if args.job is not None:
            row = studio.evaluate(
                args.job, protocol, args.dataset, on_progress=on_progress, params=params
            )
        elif args.model is not None:
            row = studio.evaluate_model(args.model, args.dataset, protocol, on_progress, params)
        else:
            row = studio.evaluate_baseline(
                args.baseline,
                args.dataset,
                args.backbone,
                protocol,
                args.image_size,
                on_progress=on_progress,
                params=params,
            )
        bar.close()
        rows.append(row)
        figures.update(row["figures"])
    if args.job is not None:
        subject = f"job {args.job}"
    elif args.model is not None:
        subject = f"model {args.model}"
    else:
        subject = f"baseline {args.baseline}" + (
            "" if args.baseline == "pixels" else f" ({args.backbone})"
        )
    if args.json:
        print(
            json.dumps(
                {
                    "job_id": args.job,
                    "baseline": args.baseline,
                    "model": args.model,
                    "dataset": rows[0]["dataset"],
                    "eval": figures,
                    "evaluations": rows,
                }
            )
        )
    else:
        print(
            f"{subject} on {rows[0]['dataset']}: "
            + ", ".join(f"{k} {v:.4f}" for k, v in figures.items() if not k.endswith("_std"))
        )
    return 0


def cmd_export(studio, args) -> int:
    result = studio.export(args.job_id, args.out, args.step, make_zip=args.zip)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"job {result['job_id']} step {result['step']} exported to {result['folder']}")
        if result["zip"]:
            print(f"zip: {result['zip']}")
    return 0


def cmd_push(studio, args) -> int:
    result = studio.push(args.job_id, args.repo, private=args.private, step=args.step)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"job {result['job_id']} step {result['step']} pushed to {result['url']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--home", help="home folder (database and runs); default $PRETEXT_HOME, else ./.pretext"
    )
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("methods", parents=[common], help="list the registered methods")
    datasets = sub.add_parser(
        "datasets", parents=[common], help="list the datasets, or add your own data"
    )
    datasets.add_argument(
        "--add",
        metavar="PATH",
        help="add your own data: a folder or .zip "
        "of images (subfolders become labels; a captions.csv or a .txt "
        "beside each image adds captions for CLIP), a UTF-8 text file, or a "
        "Hugging Face dataset (a folder saved with save_to_disk, or a Hub "
        "name when online)",
    )
    datasets.add_argument("--name", help="name of the added dataset (default: the file name)")
    datasets.add_argument(
        "--image-size",
        dest="image_size",
        type=int,
        metavar="S",
        help="image datasets: the side they are stored at, 32-512 px (default: the images' "
        "median shorter side, at most 256; a torchvision set's own size); each image is "
        "resized and centre-cropped to a square",
    )
    datasets.add_argument(
        "--column",
        help="Hugging Face dataset: its text column (default: 'text', else its only text column)",
    )
    datasets.add_argument(
        "--split", help="Hugging Face dataset: the split to read (default: train, else its first)"
    )
    datasets.add_argument(
        "--root",
        metavar="DIR",
        help="torchvision:NAME (CIFAR10, CIFAR100, STL10, MNIST, FashionMNIST, SVHN, "
        "Imagenette): the folder holding its files as torchvision lays them out",
    )
    datasets.add_argument(
        "--download",
        action="store_true",
        help="torchvision:NAME: download it into --root first (needs the network)",
    )
    datasets.add_argument(
        "--image-column",
        dest="image_column",
        help="Hugging Face image dataset: its image column (default: the one Image column)",
    )
    datasets.add_argument(
        "--label-column",
        dest="label_column",
        help="Hugging Face image dataset: its labels (default: its first ClassLabel column)",
    )
    sub.add_parser("jobs", parents=[common], help="the job history")
    train = sub.add_parser("train", parents=[common], help="run one job in the foreground")
    train.add_argument("--method", required=True)
    train.add_argument("--dataset", required=True)
    train.add_argument("--backbone")
    train.add_argument(
        "--preset",
        default="quick",
        help="quick (CPU minutes), paper (the paper's recipe) or tiny (seconds, a smoke test)",
    )
    train.add_argument("--steps", type=int)
    train.add_argument("--batch-size", dest="batch_size", type=int)
    train.add_argument("--lr", type=float)
    train.add_argument(
        "--processes",
        type=int,
        help="train on N processes (--set processes=N): one per GPU, or CPU processes, at "
        "most the GPUs or the cores; --batch-size stays the global batch, split among them",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other setting of the method (see the Train tab)",
    )
    train.add_argument(
        "--eval",
        default="",
        metavar="PROTOCOLS",
        help="evaluations to run when the job completes, comma-separated "
        "(knn,linear,fewshot,finetune,segmentation,reconstruction); the JSON summary "
        "gains `eval`",
    )
    train.add_argument(
        "--eval-dataset",
        dest="eval_dataset",
        default=None,
        help="labelled dataset for --eval (default: the training dataset)",
    )
    now_help = (
        "start at once even when PRETEXT_MAX_JOBS jobs already run in this home "
        "(default: wait for a free slot)"
    )
    train.add_argument("--now", action="store_true", help=now_help)
    resume = sub.add_parser(
        "resume",
        parents=[common],
        help="continue a cancelled, "
        "interrupted or failed job in the foreground from its newest "
        "checkpoint",
    )
    resume.add_argument("job_id", type=int)
    resume.add_argument("--now", action="store_true", help=now_help)
    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="queue the showcase runs (quick SimCLR, DINO, MAE, CLIP, BERT, GPT, T5, with "
        "their evaluations) and run them here; prints the expected total time",
    )
    demo.add_argument(
        "--dry-run", action="store_true", help="only list the runs and the expected time"
    )
    demo.add_argument(
        "--no-wait",
        action="store_true",
        help="queue them and return (a running `python app.py` on this home runs them)",
    )
    metrics = sub.add_parser(
        "metrics", parents=[common], help="every stored metric point of a job: step, name, value"
    )
    metrics.add_argument("job_id", type=int)
    metrics.add_argument("--name", help="only this metric (e.g. loss)")
    evaluate = sub.add_parser(
        "eval", parents=[common], help="evaluate a finished job, a baseline or a Hub model"
    )
    evaluate.add_argument("--job", type=int, help="the job to evaluate (its last checkpoint)")
    evaluate.add_argument(
        "--baseline", choices=["pixels", "random"], help="evaluate a baseline instead of a job"
    )
    evaluate.add_argument(
        "--model",
        help="a transformers image model to evaluate instead: a Hub id (facebook/dinov2-small) "
        "or a model folder; knn, linear, fewshot or segmentation",
    )
    evaluate.add_argument(
        "--protocol",
        default="knn,linear",
        help="knn, linear, fewshot, finetune, segmentation (ViT attention vs object masks) "
        "or reconstruction (MAE PSNR); several comma-separated (default: knn,linear)",
    )
    evaluate.add_argument(
        "--dataset",
        help="labelled dataset (default for a job: its eval dataset, else its training dataset)",
    )
    evaluate.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of the one protocol evaluated, e.g. finetune's steps=240 or "
        "fractions=[0.1], knn's k=10 (values as JSON; unknown keys are refused)",
    )
    evaluate.add_argument(
        "--backbone",
        default="resnet18",
        help="architecture of the random baseline (default resnet18)",
    )
    evaluate.add_argument(
        "--image-size",
        dest="image_size",
        type=int,
        default=32,
        help="image size of a baseline, in pixels (default 32)",
    )
    export = sub.add_parser(
        "export",
        parents=[common],
        help="write a job's checkpoint as a folder that loads without the studio, with a "
        "model card (README.md)",
    )
    export.add_argument("job_id", type=int)
    export.add_argument(
        "--out", required=True, metavar="DIR", help="the folder to create (new or empty)"
    )
    export.add_argument("--step", type=int, help="the checkpoint's step (default: the newest)")
    export.add_argument("--zip", action="store_true", help="also write DIR.zip beside it")
    push = sub.add_parser(
        "push",
        parents=[common],
        help="export a job and upload it to a Hugging Face Hub model repo; the token comes "
        "from HF_TOKEN or `hf auth login`",
    )
    push.add_argument("job_id", type=int)
    push.add_argument("--repo", required=True, metavar="USER/NAME", help="the model repo")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--step", type=int, help="the checkpoint's step (default: the newest)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from engine.api import Studio
    from engine.errors import StudioError

    try:
        studio = Studio(args.home)
        command = {
            "methods": cmd_methods,
            "datasets": cmd_datasets,
            "jobs": cmd_jobs,
            "demo": cmd_demo,
            "train": cmd_train,
            "eval": cmd_eval,
            "resume": cmd_resume,
            "metrics": cmd_metrics,
            "export": cmd_export,
            "push": cmd_push,
        }[args.command]
        return command(studio, args)
    except StudioError as exc:  # the user's to fix; anything else is a bug: its traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
