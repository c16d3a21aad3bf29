"""JobManager: starts queued jobs in worker processes and watches them.

One job per device at a time by default; the rest wait `queued`. Workers are separate
processes (`python -m engine.worker ID`, a fresh interpreter: nothing forked from the web
process). Cancel is a flag in the job row that the worker checks every step; if the worker has
not stopped after `grace_s` it gets SIGTERM (which it also turns into a clean stop), and after
twice that SIGKILL. A job marked running whose process is gone becomes `interrupted`.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import psutil

from engine.home import Home
from storage.db import Store, utcnow
from storage.models import Job

log = logging.getLogger(__name__)
STALE_HEARTBEAT = timedelta(seconds=60)


def _process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def recover_interrupted(store: Store) -> list[int]:
    """Mark running jobs whose process is gone as `interrupted`; returns their ids."""
    host, now, lost = socket.gethostname(), utcnow(), []
    for job in store.list_jobs(("running",)):
        if job.host == host or job.host is None:
            gone = not _process_alive(job.pid)
        else:  # another machine's worker: only its heartbeat can tell
            gone = job.heartbeat_at is None or now - job.heartbeat_at > STALE_HEARTBEAT
        if gone and store.transition(
                job.id, ("running",), status="interrupted", finished_at=now,
                elapsed_before=_elapsed(job),
                error="the worker process ended without finishing (killed, or the machine "
                      "restarted); Resume continues from the last checkpoint"):
            lost.append(job.id)
    return lost


class JobManager:
    """Runs queued jobs, at most `max_running` at once, in worker processes."""

    def __init__(self, home: Home, max_running: int = 1, grace_s: float = 10.0,
                 poll_s: float = 0.5) -> None:
        self.home, self.store = home, Store.open(home.db_path)
        self.max_running, self.grace_s, self.poll_s = max_running, grace_s, poll_s
        self._procs: dict[int, subprocess.Popen] = {}
        self._cancel_seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ticks = 0

    def start(self) -> "JobManager":
        recover_interrupted(self.store)
        self._thread = threading.Thread(target=self._loop, daemon=True, name="job-manager")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.tick()
            except Exception:
                log.exception("job manager tick failed")

    def tick(self) -> None:
        """One round: reap ended workers, escalate cancels, start queued jobs."""
        self._reap()
        self._ticks += 1
        if self._ticks % 20 == 0:  # workers started elsewhere (the CLI) that died
            recover_interrupted(self.store)
        self._escalate_cancels()
        running = [j for j in self.store.list_jobs(("running",)) if _process_alive(j.pid)]
        free = self.max_running - len(running)
        for job in sorted(self.store.list_jobs(("queued",)), key=lambda j: j.id)[:max(free, 0)]:
            self._spawn(job)

    def _spawn(self, job: Job) -> None:
        run_dir = self.home.run_dir(job.id)
        run_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(run_dir / "worker.log", "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.worker", str(job.id), "--home", str(self.home.root)],
            stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=str(_repo_root()),
            start_new_session=True)
        log_file.close()
        # Claim the row at once so the next tick does not start it twice.
        if self.store.transition(job.id, ("queued",), status="running", pid=proc.pid,
                                 host=socket.gethostname(), started_at=utcnow(),
                                 heartbeat_at=utcnow()):
            self._procs[job.id] = proc
        else:  # cancelled between the read and the spawn
            proc.kill()

    def _reap(self) -> None:
        for job_id, proc in list(self._procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del self._procs[job_id]
            self._cancel_seen.pop(job_id, None)
            job = self.store.get_job(job_id)
            if job is None or job.status != "running":
                continue  # the worker recorded its own ending
            if job.cancel_requested:
                status, error = "cancelled", None
            elif code < 0:
                status = "interrupted"
                error = (f"the worker was killed by signal {-code}; Resume continues from the "
                         f"last checkpoint")
            else:
                status = "failed"
                error = f"the worker exited with code {code}: {_log_tail(self.home, job_id)}"
            self.store.transition(job_id, ("running",), status=status, error=error,
                                  finished_at=utcnow(), elapsed_before=_elapsed(job))

    def _escalate_cancels(self) -> None:
        now = time.monotonic()
        for job in self.store.list_jobs(("running",)):
            if not job.cancel_requested or not _process_alive(job.pid):
                continue
            first = self._cancel_seen.setdefault(job.id, now)
            waited = now - first
            try:
                if waited > 2 * self.grace_s:
                    os.kill(job.pid, signal.SIGKILL)
                elif waited > self.grace_s:
                    os.kill(job.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def _elapsed(job: Job) -> float:
    """Seconds run in total, counting a dead attempt up to its last heartbeat."""
    if job.started_at is None:
        return job.elapsed_before
    end = job.heartbeat_at or job.started_at
    return job.elapsed_before + max(0.0, (end - job.started_at).total_seconds())


def _log_tail(home: Home, job_id: int, lines: int = 5) -> str:
    try:
        text = (home.run_dir(job_id) / "worker.log").read_text(errors="replace")
    except OSError:
        return "no worker log"
    return " | ".join(text.strip().splitlines()[-lines:])


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
