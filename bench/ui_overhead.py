"""What watching a job in the browser costs its training speed, on the machine that trains.

    python bench/ui_overhead.py [--method simclr] [--dataset shapes] [--steps 300]

Starts `python app.py` on a fresh home folder, as the README does, and trains the same job
twice: once submitted through the engine API with no page open (the app idle), once started
from the Train tab in headless Chromium at 1366x768, which follows it until it completes (the
stakeholder demo). Prints each job's images/s (the worker's own figure), their ratio, and the
CPU seconds that the worker, the app's server process and Chromium used during the watched
run, with the load average. On a machine of two cores whatever the server and the browser use
comes out of training; on a Space the browser runs on the visitor's machine, so there the
server's share is what counts.

Needs Debian's `chromium` and PyPI's `playwright` (never downloads a browser).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.api import Studio  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def chromium_processes() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if "chrom" in (p.info["name"] or "")]


def wait_done(studio: Studio, job_id: int, timeout: float = 1800) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = studio.job(job_id)
        if job["status"] in ("completed", "failed", "cancelled"):
            return job
        time.sleep(1)
    raise TimeoutError(f"job {job_id} did not finish in {timeout} s")


def watched_run(url: str, steps: int, server: psutil.Process) -> tuple[float, float, float]:
    """Start the job from the Train tab and follow it; (seconds, server CPU s, Chromium CPU s)
    from Start to completion."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=shutil.which("chromium"),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(url, wait_until="load")
            page.get_by_role("button", name="Start").wait_for()
            page.get_by_label("steps", exact=True).fill(str(steps))
            for protocol in ("k-NN", "linear probe"):
                page.locator("#train-evals").get_by_label(protocol, exact=True).uncheck()
            page.wait_for_timeout(1000)
            browsers = chromium_processes()
            server_0, chromium_0 = cpu_seconds([server]), cpu_seconds(browsers)
            start = time.monotonic()
            page.get_by_role("button", name="Start").click()
            page.wait_for_function(
                "el => el.innerText.includes('completed') || el.innerText.includes('failed')",
                arg=page.locator("#train-status").element_handle(),
                timeout=1_800_000,
                polling=1000,
            )
            seconds = time.monotonic() - start
            return (
                seconds,
                cpu_seconds([server]) - server_0,
                cpu_seconds(browsers) - chromium_0,
            )
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="simclr")
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    if shutil.which("chromium") is None:
        sys.exit("needs Debian's chromium: apt-get install chromium")
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    with tempfile.TemporaryDirectory() as home:
        port = free_port()
        app = subprocess.Popen(
            [sys.executable, "app.py", "--home", home, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}/"
            for _ in range(120):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(1)
            server = psutil.Process(app.pid)
            studio = Studio(home)
            spec = {
                "method": args.method,
                "dataset": args.dataset,
                "preset": "quick",
                "params": {"steps": args.steps},
                "evals": [],
            }
            # The dataset's cache and the first worker's imports warm up in a first short job.
            wait_done(studio, studio.submit(dict(spec, params={"steps": 2})))
            idle = wait_done(studio, studio.submit(spec))
            load_idle = os.getloadavg()[0]
            seconds, server_cpu, chromium_cpu = watched_run(url, args.steps, server)
            load_watched = os.getloadavg()[0]
            watched = max(studio.jobs(), key=lambda j: j["id"])
            watched = studio.job(watched["id"])
        finally:
            app.terminate()
            app.wait(30)
    rate_idle, rate_watched = idle["images_per_second"], watched["images_per_second"]
    print(
        f"{args.method} on {args.dataset}, quick preset, {args.steps} steps ({os.cpu_count()} CPUs)"
    )
    print(f"  not watched: {rate_idle:.0f} img/s (load {load_idle:.2f})")
    print(
        f"  watched in the Train tab: {rate_watched:.0f} img/s (load {load_watched:.2f}), "
        f"{rate_watched / rate_idle:.2f} of it; {seconds:.0f} s from Start to completed"
    )
    print(
        f"  CPU during the watched run: app server {server_cpu:.1f} s "
        f"({server_cpu / seconds:.2f} of a core), Chromium {chromium_cpu:.1f} s "
        f"({chromium_cpu / seconds:.2f} of a core)"
    )


if __name__ == "__main__":
    main()
