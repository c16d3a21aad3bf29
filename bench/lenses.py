"""Seconds per lens answer, p50 and p95, with no job running and while one trains.

    python bench/lenses.py [--home DIR] [--repeats 20] [--train-steps 30] [--no-client]

Uses the finished MAE and DINO runs of `--home` (the newest of each); without them it trains an
MAE with the quick preset for `--train-steps` steps into a temporary home (the architecture, not
the training, sets the lens's cost). The CLIP and language lenses (zero-shot, retrieval,
fill-mask, generate, text-to-text) are timed on the newest finished CLIP, BERT, GPT and T5 runs
of `--home` when it has them (README: train them with the quick preset); retrieval is timed
after its first call, which embeds the dataset once. Each lens is timed through the engine API (what the web
process runs) and, unless --no-client, through gradio_client against the launched app (plus
the upload, Gradio's queue, PNG encoding and HTTP, up to the answer's file URLs, which a browser
then fetches in parallel; `/jobs`, a JSON endpoint with no lens behind it, gives the floor). Then a SimCLR quick job is started by the
job manager and, once it has logged a few steps, everything is timed again; the job is
cancelled at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.api import Studio

SHAPE_LABELS = "circle, square, triangle, star, hexagon, cross, heart, diamond, ellipse, ring"
SHAPE_TEMPLATES = "a {}\na small {}\na large {}"
CAPTION = "a small red [MASK] on a blue background"
SENTINELS = "a small red <extra_id_0> on a blue <extra_id_1>"


def percentiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()  # warm: load the model, build the method, cache the dataset
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return percentiles(times)


def newest_run(studio: Studio, method: str) -> str | None:
    runs = [j for j in studio.jobs() if j["method"] == method and j["status"] == "completed"]
    return str(runs[-1]["id"]) if runs else None


def cases(studio: Studio, client, image: str) -> dict[str, Callable[[], object]]:
    out: dict[str, Callable[[], object]] = {}
    mae, dino = newest_run(studio, "mae"), newest_run(studio, "dino")
    for name, run in (("mae", mae), ("dino", dino)):
        if run:
            out[f"attention  {name} run {run}"] = lambda r=run: studio.lenses.attention(image, r)
    if mae:
        out[f"reconstruct mae run {mae}"] = lambda: studio.lenses.reconstruct(image, mae, 0.75, 0)
    views = studio.lenses.preview_views
    for method in ("simclr", "mae", "dino"):
        out[f"views      {method}"] = lambda m=method: views(m, "shapes", 0, 4)
    clip, bert, gpt, t5 = (newest_run(studio, m) for m in ("clip", "bert", "gpt", "t5"))
    if clip:
        out[f"zero_shot  clip run {clip}"] = lambda: studio.lenses.zero_shot(
            image, clip, SHAPE_LABELS, SHAPE_TEMPLATES
        )
        out[f"retrieve   clip run {clip}"] = lambda: studio.lenses.retrieve(
            "a red star", clip, "shapes", 8
        )
    if bert:
        out[f"fill_mask  bert run {bert}"] = lambda: studio.lenses.fill_mask(CAPTION, bert, 5)
    if gpt:
        out[f"generate   gpt run {gpt} (40 tokens)"] = lambda: studio.lenses.generate(
            "a small red", gpt, 40, 0.8, 50, 0
        )
    if t5:
        out[f"text2text  t5 run {t5} (4 beams)"] = lambda: studio.lenses.text2text(
            SENTINELS, t5, 4, 40
        )
    if client is not None:
        from gradio_client import handle_file

        if mae:
            out[f"/attention  (client) mae run {mae}"] = lambda: client.predict(
                handle_file(image), mae, 0, 0.6, api_name="/attention"
            )
            out[f"/reconstruct (client) mae run {mae}"] = lambda: client.predict(
                handle_file(image), mae, 0.75, 0, api_name="/reconstruct"
            )
        out["/views      (client) simclr"] = lambda: client.predict(
            "simclr", "shapes", 0, 4, api_name="/views"
        )
        if clip:
            out[f"/zero_shot (client) clip run {clip}"] = lambda: client.predict(
                handle_file(image), clip, SHAPE_LABELS, SHAPE_TEMPLATES, api_name="/zero_shot"
            )
            out[f"/retrieve  (client) clip run {clip}"] = lambda: client.predict(
                "a red star", clip, "shapes", 8, "test", 1000, api_name="/retrieve"
            )
        if bert:
            out[f"/fill_mask (client) bert run {bert}"] = lambda: client.predict(
                CAPTION, bert, 5, api_name="/fill_mask"
            )
        if gpt:
            out[f"/generate  (client) gpt run {gpt}"] = lambda: client.predict(
                "a small red", gpt, 40, 0.8, 50, 0, api_name="/generate"
            )
        if t5:
            out[f"/text2text (client) t5 run {t5}"] = lambda: client.predict(
                SENTINELS, t5, 4, 40, api_name="/text2text"
            )
        # The floor: a JSON endpoint with no lens behind it (queue, HTTP, client).
        out["/jobs       (client) no lens: the floor"] = lambda: client.predict(api_name="/jobs")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", default=None)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--no-client", action="store_true")
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory()
    studio = Studio(args.home or scratch.name)
    if newest_run(studio, "mae") is None:
        print(f"training an MAE (quick preset, {args.train_steps} steps) ...", flush=True)
        studio.run_foreground(
            {"method": "mae", "dataset": "shapes", "params": {"steps": args.train_steps}}
        )
    image = next(e["path"] for e in studio.lenses.lens_examples() if e["name"] == "cat")
    client = demo = None
    if not args.no_client:
        from gradio_client import Client

        from tests.webapp.helpers import free_port
        from webapp.app import build_app, launch_options

        demo = build_app(studio)
        port = free_port()
        demo.launch(
            server_name="127.0.0.1",
            server_port=port,
            prevent_thread_lock=True,
            quiet=True,
            **launch_options(),
        )
        # Pictures are not downloaded: a browser fetches them in parallel once the answer is
        # in, while the client would fetch them one by one (about 0.1-0.2 s each here).
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=False)
    results: dict[str, dict[str, tuple[float, float]]] = {}
    try:
        for phase in ("idle", "training"):
            job_id = None
            if phase == "training":
                studio.start_manager()
                job_id = studio.submit(
                    {"method": "simclr", "dataset": "shapes", "params": {"steps": 10_000}}
                )
                while studio.job(job_id)["step"] < 3:
                    time.sleep(0.5)
            for name, fn in cases(studio, client, image).items():
                try:
                    results.setdefault(name, {})[phase] = timed(fn, args.repeats)
                except ValueError as error:  # e.g. a method without a views preview yet
                    print(f"{phase:9s}{name:44s} skipped: {error}", flush=True)
                    results.pop(name, None)
                    continue
                print(
                    f"{phase:9s}{name:44s} p50 {results[name][phase][0]:.3f} s  "
                    f"p95 {results[name][phase][1]:.3f} s",
                    flush=True,
                )
            if job_id is not None:
                studio.cancel(job_id)
                while studio.job(job_id)["status"] == "running":
                    time.sleep(0.2)
    finally:
        if demo is not None:
            demo.close()
        studio.shutdown()
    print(
        f"\n{'lens':44s} {'idle p50':>9s} {'idle p95':>9s} {'train p50':>10s} "
        f"{'train p95':>10s}   (seconds, {args.repeats} calls each)"
    )
    for name, by_phase in results.items():
        idle, busy = (
            by_phase.get("idle", (float("nan"),) * 2),
            by_phase.get("training", (float("nan"),) * 2),
        )
        print(f"{name:44s} {idle[0]:9.3f} {idle[1]:9.3f} {busy[0]:10.3f} {busy[1]:10.3f}")
    scratch.cleanup()


if __name__ == "__main__":
    main()
