"""JobManager: starts queued jobs in worker processes and watches them.

At most PRETEXT_MAX_JOBS jobs (default 1: one per device) run at a time per home, counting
the CLI's foreground jobs; the rest wait `queued`. A slot is taken with `Store.claim_slot`
(count and claim in one write transaction), so the manager and any number of CLI processes
never oversubscribe. A queued job with a pid belongs to the foreground command that created it
and waits to run it itself (`wait_and_claim`); the manager leaves it alone. Workers are
separate processes (`python -m engine.worker ID`, a fresh interpreter: nothing forked from the
web process). Cancel is a flag in the job row that the worker checks every step; if the worker
has not stopped after `grace_s` it gets SIGTERM (which it also turns into a clean stop: the
checkpoint at the step it stopped at), and after twice that SIGKILL, but only once its
heartbeat has gone quiet: a worker busy saving under load still beats and is not killed. A job
whose worker ended without recording its end (killed) becomes `interrupted`, its row and curves
brought back to its newest checkpoint, where Resume continues.
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
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psutil

from engine import checkpoints
from engine.errors import SpecError
from engine.home import Home
from storage.db import Store, utcnow
from storage.models import Job

log = logging.getLogger(__name__)
STALE_HEARTBEAT = timedelta(seconds=60)
MAX_JOBS_ENV = "PRETEXT_MAX_JOBS"
KILLED_EXIT = 137  # 128 + SIGKILL: how a shell reports kill -9 (and PRETEXT_FAULT=exit@N)


def max_jobs() -> int:
    """Jobs that may run at once in one home: $PRETEXT_MAX_JOBS, default 1 (one per device;
    two trainings on one device only slow each other down)."""
    text = os.environ.get(MAX_JOBS_ENV, "").strip() or "1"
    if not text.isdigit() or int(text) < 1:
        raise SpecError(f"{MAX_JOBS_ENV} must be a whole number of at least 1, got {text!r}")
    return int(text)


def _process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def recover_interrupted(store: Store) -> list[int]:
    """Mark running jobs whose process is gone as `interrupted`, each brought back to its
    newest checkpoint, and queued jobs whose foreground command died while waiting for a slot;
    returns their ids."""
    host, now, lost = socket.gethostname(), utcnow(), []
    for job in store.list_jobs(("running",)):
        if job.host == host or job.host is None:
            gone = not _process_alive(job.pid)
        else:  # another machine's worker: only its heartbeat can tell
            gone = job.heartbeat_at is None or now - job.heartbeat_at > STALE_HEARTBEAT
        if gone and store.transition(
            job.id,
            ("running",),
            status="interrupted",
            finished_at=now,
            elapsed_before=_elapsed(job),
            error="the worker process ended without finishing (killed, or the machine "
            "restarted); Resume continues from the last checkpoint",
        ):
            rewind_to_checkpoint(store, job)
            lost.append(job.id)
    for job in store.list_jobs(("queued",)):
        if (
            job.pid is not None
            and job.host == host
            and not _process_alive(job.pid)
            and store.transition(
                job.id,
                ("queued",),
                status="interrupted",
                finished_at=now,
                error="the command that was waiting to run it ended first; Resume queues it",
            )
        ):
            lost.append(job.id)
    return lost


def rewind_to_checkpoint(store: Store, job: Job) -> int:
    """After a worker died without recording its end, bring the job's step, last loss and
    curves back to its newest checkpoint (where a resume continues); returns that step."""
    latest = checkpoints.latest(Path(job.run_dir)) if job.run_dir else None
    step = checkpoints.step_of(latest) if latest is not None else 0
    store.rewind(job.id, step)
    return step


def wait_and_claim(
    store: Store,
    job_id: int,
    max_running: int | None,
    on_wait: Callable[[list[int]], None] | None = None,
    poll_s: float = 1.0,
) -> bool:
    """Run queued job `job_id` in this process once a slot is free: claim it (running, with
    this pid) when fewer than `max_running` jobs run (None: at once). `on_wait(ids)` hears
    which jobs it waits for, again when they change. The job must carry this process's pid
    while it waits, so the manager does not start it too. False if it left the queue
    meanwhile (cancelled)."""
    waiting_for: list[int] | None = None
    while True:
        now = utcnow()
        claimed, running = store.claim_slot(
            job_id,
            max_running,
            pid=os.getpid(),
            host=socket.gethostname(),
            started_at=now,
            heartbeat_at=now,
        )
        if claimed:
            return True
        if max_running is None or len(running) < max_running:
            return False  # a free slot, yet not claimed: no longer queued
        if running != waiting_for and on_wait is not None:
            on_wait(running)
        waiting_for = running
        time.sleep(poll_s)
        recover_interrupted(store)  # a worker that died frees its slot


class JobManager:
    """Runs queued jobs in worker processes while fewer than `max_running` jobs (default
    `max_jobs()`) run in the home, its own and foreground ones."""

    def __init__(
        self, home: Home, max_running: int | None = None, grace_s: float = 10.0, poll_s: float = 0.5
    ) -> None:
        self.home, self.store = home, Store.open(home.db_path)
        self.max_running = max_jobs() if max_running is None else max_running
        self.grace_s, self.poll_s = grace_s, poll_s
        self._procs: dict[int, subprocess.Popen] = {}
        self._cancel_seen: dict[int, float] = {}
        self._termed: set[int] = set()  # jobs sent SIGTERM once already
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ticks = 0

    def start(self) -> JobManager:
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
        for job in sorted(self.store.list_jobs(("queued",)), key=lambda j: j.id):
            if job.pid is not None:  # a foreground command (the CLI) waits to run it itself
                continue
            # The row is claimed (with this process's pid until the worker's is known) before
            # the worker starts, in the same transaction that counts the running jobs.
            now = utcnow()
            claimed, running = self.store.claim_slot(
                job.id,
                self.max_running,
                pid=os.getpid(),
                host=socket.gethostname(),
                started_at=now,
                heartbeat_at=now,
            )
            if claimed:
                self._spawn(job)
            elif len(running) >= self.max_running:
                break  # no free slot; a job that merely left the queue is skipped

    def _spawn(self, job: Job) -> None:
        run_dir = self.home.run_dir(job.id)
        run_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        try:
            with open(run_dir / "worker.log", "ab") as log_file:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "engine.worker",
                        str(job.id),
                        "--home",
                        str(self.home.root),
                    ],
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=str(_repo_root()),
                    start_new_session=True,
                )
        except OSError as exc:
            self.store.transition(
                job.id,
                ("running",),
                status="failed",
                finished_at=utcnow(),
                error=f"could not start the worker: {exc}",
            )
            return
        self.store.update_job(job.id, pid=proc.pid)
        self._procs[job.id] = proc

    def _reap(self) -> None:
        for job_id, proc in list(self._procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del self._procs[job_id]
            self._cancel_seen.pop(job_id, None)
            self._termed.discard(job_id)
            job = self.store.get_job(job_id)
            if job is None or job.status != "running":
                continue  # the worker recorded its own ending
            if job.cancel_requested:
                status, error = "cancelled", None
            elif code < 0 or code == KILLED_EXIT:
                status = "interrupted"
                error = (
                    f"the worker was killed (signal {-code if code < 0 else 9}); Resume "
                    f"continues from the last checkpoint"
                )
            else:
                status = "failed"
                error = f"the worker exited with code {code}: {_log_tail(self.home, job_id)}"
            if self.store.transition(
                job_id,
                ("running",),
                status=status,
                error=error,
                finished_at=utcnow(),
                elapsed_before=_elapsed(job),
            ):
                rewind_to_checkpoint(self.store, job)  # what it did after it is lost

    def _escalate_cancels(self) -> None:
        now = time.monotonic()
        quiet_since = utcnow() - timedelta(seconds=self.grace_s)
        stopping = [
            j
            for j in self.store.list_jobs(("running",))
            if j.cancel_requested and _process_alive(j.pid)
        ]
        ids = {j.id for j in stopping}  # forget jobs that stopped (a later cancel starts anew)
        self._cancel_seen = {i: t for i, t in self._cancel_seen.items() if i in ids}
        self._termed &= ids
        for job in stopping:
            first = self._cancel_seen.setdefault(job.id, now)
            waited = now - first
            # A worker still beating is alive and busy (a slow step, or the checkpoint it
            # writes at the step it stopped at): killing it would lose that checkpoint.
            silent = job.heartbeat_at is None or job.heartbeat_at < quiet_since
            try:
                if waited > 2 * self.grace_s and silent:
                    os.kill(job.pid, signal.SIGKILL)
                elif waited > self.grace_s and job.id not in self._termed:
                    os.kill(job.pid, signal.SIGTERM)
                    self._termed.add(job.id)
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
