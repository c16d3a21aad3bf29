"""JobManager: starts queued jobs in worker processes and watches them.

At most PRETEXT_MAX_JOBS jobs (default one per device: 1 on a CPU, G with G GPUs) run at a
time per home, counting the CLI's foreground jobs; the rest wait `queued`. A job also needs room
for its `processes`: together the running jobs' processes stay within the GPUs (CUDA; each job
gets its own through CUDA_VISIBLE_DEVICES) or the cores (CPU; or PRETEXT_MAX_JOBS if larger).
A slot is taken with `Store.claim_slot` (count and claim in one write transaction), so the
manager and any number of CLI processes never oversubscribe. A queued job with a pid belongs to the foreground command that created it
and waits to run it itself (`wait_and_claim`); the manager leaves it alone. Workers are
separate processes (`python -m engine.worker ID`, a fresh interpreter: nothing forked from the
web process; a multi-process job runs it under `accelerate launch`, engine/launch.py, and the
row names the launcher, which takes every rank down with it). Cancel is a flag in the job row that the worker checks every step; if the worker
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
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import psutil

from engine import checkpoints, launch
from engine.errors import SpecError
from engine.home import Home
from storage.db import Store, utcnow
from storage.models import Job

log = logging.getLogger(__name__)
STALE_HEARTBEAT = timedelta(seconds=60)
MAX_JOBS_ENV = "PRETEXT_MAX_JOBS"
KILLED_EXIT = 137  # 128 + SIGKILL: how a shell reports kill -9 (and PRETEXT_FAULT=exit@N)


def max_jobs() -> int:
    """Jobs that may run at once in one home: $PRETEXT_MAX_JOBS, default one per device (1
    on a CPU, the GPU count with CUDA; two trainings on one device only slow each other)."""
    text = os.environ.get(MAX_JOBS_ENV, "").strip() or str(max(1, len(_gpus())))
    if not text.isdigit() or int(text) < 1:
        raise SpecError(f"{MAX_JOBS_ENV} must be a whole number of at least 1, got {text!r}")
    return int(text)


def _gpus() -> list[dict]:
    from engine import hardware

    return hardware.detect()["cuda_devices"]


def capacity(max_running: int | None) -> int:
    """How many processes the running jobs may hold together: the GPUs with CUDA, else the
    cores (or `max_running`, when PRETEXT_MAX_JOBS asks for more jobs than cores)."""
    from engine import hardware

    info = hardware.detect()
    if info["cuda_devices"]:
        return len(info["cuda_devices"])
    return max(info["cpu_cores"], max_running or 1)


def processes_of(job: Job) -> int:
    """The processes a job trains on (its config's `processes`; 1 for older jobs)."""
    value = (job.config or {}).get("processes", 1)
    return value if isinstance(value, int) and value > 0 else 1


def job_devices(store: Store, job: Job) -> list[int] | None:
    """The CUDA devices to give `job` (None on a CPU, or when too few are free now): the
    first of those no other running job of this machine holds."""
    gpus = _gpus()
    if not gpus:
        return None
    host, busy = socket.gethostname(), set()
    for other in store.list_jobs(("running",)):
        if other.id != job.id and other.host == host:
            busy |= launch.held_devices(other.pid, processes_of(other))
    return launch.pick_devices(busy, processes_of(job), len(gpus))


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
        # A multi-process job whose launcher ended unwatched (the web process restarted
        # meanwhile) failed if the launcher's report names a rank.
        blamed = None
        if gone and processes_of(job) > 1 and job.run_dir:
            blamed = launch.rank_failure(_log_text(Path(job.run_dir), job.id), processes_of(job))
        if gone and store.transition(
            job.id,
            ("running",),
            status="interrupted" if blamed is None else "failed",
            finished_at=now,
            elapsed_before=_elapsed(job),
            error="the worker process ended without finishing (killed, or the machine "
            "restarted); Resume continues from the last checkpoint"
            if blamed is None
            else blamed[1],
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
    if latest is not None:
        # Killed after the checkpoint's folder was written and before its row: the folder is
        # the truth (a resume starts from it), so the job lists it too.
        rows = store.checkpoints(job.id)
        if str(latest) not in {c.path for c in rows}:
            gone = [c.path for c in rows if not os.path.isdir(c.path)]
            store.add_checkpoint(job.id, step, str(latest), replacing=gone)
    store.rewind(job.id, step)
    return step


def wait_and_claim(
    store: Store,
    job_id: int,
    max_running: int | None,
    on_wait: Callable[[list[int]], None] | None = None,
    poll_s: float = 1.0,
    room: int | None = None,
) -> bool:
    """Run queued job `job_id` in this process once a slot is free: claim it (running, with
    this pid) when fewer than `max_running` jobs run (None: at once). `on_wait(ids)` hears
    which jobs it waits for, again when they change; with `room` (`capacity()`) it also waits
    until its processes fit beside the running jobs'. The job must carry this process's pid
    while it waits, so the manager does not start it too. False if it left the queue
    meanwhile (cancelled)."""
    waiting_for: list[int] | None = None
    while True:
        now = utcnow()
        claimed, running = store.claim_slot(
            job_id,
            max_running,
            room,
            pid=os.getpid(),
            host=socket.gethostname(),
            started_at=now,
            heartbeat_at=now,
        )
        if claimed:
            return True
        if not _still_queued(store, job_id):
            return False  # cancelled while it waited
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
        self.capacity = capacity(self.max_running)
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
                self.capacity,
                pid=os.getpid(),
                host=socket.gethostname(),
                started_at=now,
                heartbeat_at=now,
            )
            if claimed:
                self._spawn(job)
            elif _still_queued(self.store, job.id):
                break  # no free slot, or no room for its processes: the first in line waits

    def _spawn(self, job: Job) -> None:
        run_dir = self.home.run_dir(job.id)
        run_dir.mkdir(parents=True, exist_ok=True)
        devices, gpus = job_devices(self.store, job), len(_gpus())
        if devices is None and gpus and processes_of(job) > gpus:  # never here: fail it now
            self.store.transition(
                job.id,
                ("running",),
                status="failed",
                finished_at=utcnow(),
                error=f"it asks for {processes_of(job)} processes, more than the {gpus} GPUs "
                "here; submit it again with fewer",
            )
            return
        if devices is None and gpus:  # its GPUs are held by a job started elsewhere
            self.store.transition(job.id, ("running",), status="queued", pid=None, host=None)
            return
        try:
            proc = launch.start(
                job.id,
                self.home.root,
                processes_of(job),
                run_dir / "worker.log",
                devices,
                _repo_root(),
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
            record_exit(self.store, self.home, job_id, code)

    def _escalate_cancels(self) -> None:
        now = time.monotonic()
        quiet_since = utcnow() - timedelta(seconds=self.grace_s)
        host = socket.gethostname()  # another machine's pid means nothing here
        stopping = [
            j
            for j in self.store.list_jobs(("running",))
            if j.cancel_requested and j.host in (host, None) and _process_alive(j.pid)
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
                    kill_tree(job.pid)
                elif waited > self.grace_s and job.id not in self._termed:
                    # A launcher passes it on to every rank (each turns it into a stop).
                    os.kill(job.pid, signal.SIGTERM)
                    self._termed.add(job.id)
            except ProcessLookupError:
                pass


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and every process under it (a launcher's ranks run in sessions of
    their own: killing its group would miss them)."""
    try:
        proc = psutil.Process(pid)
        family = [*proc.children(recursive=True), proc]
    except psutil.Error:
        family = []
    for member in family:
        try:
            member.kill()
        except psutil.Error:
            pass


def record_exit(store: Store, home: Home, job_id: int, code: int) -> None:
    """Record how job `job_id` ended once its worker (or launcher) exited with `code`, where
    the worker did not: cancelled, interrupted (killed), or failed with the log's last lines.
    For a multi-process job rank 0 records only a completion, a Stop or a divergence and
    leaves a failure to this (with its own error in the row): the launcher's verdict names
    the rank that failed first and replaces rank 0's error (often only "connection closed by
    peer") unless rank 0 was the one that failed."""
    job = store.get_job(job_id)
    if job is None:
        return
    if job.status != "running":
        return  # the worker recorded its own ending
    blamed = None
    if processes_of(job) > 1 and code != 0:
        blamed = launch.rank_failure(_log_text(home, job_id), processes_of(job))
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
        if blamed is not None and (blamed[0] != 0 or not job.error):
            error = blamed[1]
        else:  # rank 0's own error (it wrote it and left the end to this), or the log's tail
            error = job.error or f"the worker exited with code {code}: {_log_tail(home, job_id)}"
    if store.transition(
        job_id,
        ("running",),
        status=status,
        error=error,
        finished_at=utcnow(),
        elapsed_before=_elapsed(job),
    ):
        rewind_to_checkpoint(store, job)  # what it did after it is lost


def run_launched(
    store: Store,
    home: Home,
    job_id: int,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    poll_s: float = 0.5,
) -> None:
    """Run claimed job `job_id` under its launcher (a multi-process job) and wait for it in
    this process (the CLI), passing each new logged step's values to `on_step`. A Ctrl-C
    asks the job to stop (checkpoint, then cancelled); a second one kills it."""
    job = store.get_job(job_id)
    assert job is not None
    run_dir = home.run_dir(job_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    proc = launch.start(
        job_id,
        home.root,
        processes_of(job),
        run_dir / "worker.log",
        job_devices(store, job),
        _repo_root(),
    )
    store.update_job(job_id, pid=proc.pid)
    seen = job.step

    def report() -> int:
        by_step: dict[int, dict[str, float]] = {}
        for step, name, value in store.metrics(job_id, seen):
            by_step.setdefault(step, {})[name] = value
        for step, values in sorted(by_step.items()):
            if on_step is not None and {"loss", "images_per_second"} <= set(values):
                on_step(step, values)
        return max(by_step, default=seen)

    interrupts = []

    def on_interrupt(*_: object) -> None:  # 1st: stop with a checkpoint; 2nd: kill
        interrupts.append(1)
        if len(interrupts) == 1:
            store.transition(job_id, ("running",), cancel_requested=True)
        else:
            kill_tree(proc.pid)

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_interrupt) if main else None
    try:
        while (code := proc.poll()) is None:
            time.sleep(poll_s)
            seen = report()
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
        if proc.poll() is None:  # an error here: no rank may outlive this command
            kill_tree(proc.pid)
            proc.wait()
    report()
    record_exit(store, home, job_id, code)


def _still_queued(store: Store, job_id: int) -> bool:
    job = store.get_job(job_id)
    return job is not None and job.status == "queued"


def _elapsed(job: Job) -> float:
    """Seconds run in total, counting a dead attempt up to its last heartbeat."""
    if job.started_at is None:
        return job.elapsed_before
    end = job.heartbeat_at or job.started_at
    return job.elapsed_before + max(0.0, (end - job.started_at).total_seconds())


def _log_text(home: Home | Path, job_id: int, limit: int = 256 * 1024) -> str:
    """The end of what the job's latest worker start wrote to its worker.log ("" when there
    is none); `home` may be the run folder itself."""
    run_dir = home.run_dir(job_id) if isinstance(home, Home) else Path(home)
    try:
        with open(run_dir / "worker.log", "rb") as log_file:
            log_file.seek(0, os.SEEK_END)
            log_file.seek(max(0, log_file.tell() - limit))
            return launch.last_attempt(log_file.read().decode(errors="replace"))
    except OSError:
        return ""


def _log_tail(home: Home, job_id: int, lines: int = 5) -> str:
    text = _log_text(home, job_id)
    if not text:
        return "no worker log"
    return " | ".join(text.strip().splitlines()[-lines:])


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
