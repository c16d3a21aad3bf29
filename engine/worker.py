"""`python -m engine.worker JOB_ID [--home DIR]`: run one stored job in this process.

The worker owns its job row while it runs: it marks it running with its pid and host, beats a
heartbeat every second, turns the row's cancel flag or a SIGTERM into a clean stop (checkpoint,
then `cancelled`), writes metric points in small batches, and records how the job ended.

Under `accelerate launch` (a job with `processes` > 1, engine/launch.py) every rank runs this
module: rank 0 does all of the above, naming the launcher as the job's process (Stop's SIGTERM
reaches every rank through it); the other ranks train in step with it through a sink that
writes nothing and a stop flag that never rises (the loop broadcasts rank 0's stop), and leave
when the launcher goes. A rank's error propagates: the launcher's "Root Cause" names it, and
the job manager turns that into the job's error (jobs.record_exit).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable

from engine import checkpoints, sysmetrics, trackers
from engine.data.stored import register_user_datasets
from engine.home import Home
from engine.launch import process_rank, watch_parent
from engine.runs import resolve
from engine.trainer import Diverged, RunResult, run_job
from storage.db import Store, utcnow

HEARTBEAT_S = 1.0
FLUSH_S = 0.5
RATE_STEPS = 100  # logged steps the job's images-per-second is averaged over
log = logging.getLogger(__name__)


class StoreSink:
    """Buffers metric points and writes them to the store at most every FLUSH_S seconds."""

    def __init__(
        self,
        store: Store,
        job_id: int,
        on_step: Callable[[int, dict[str, float]], None] | None = None,
        run_dir: os.PathLike | None = None,
        report_to: str = "none",
        config: dict | None = None,
    ) -> None:
        self.store, self.job_id, self.on_step, self.run_dir = store, job_id, on_step, run_dir
        # The job's experiment tracker (engine/trackers.py): opened when the job starts, on
        # rank 0 only; it gets every point as it is flushed to the store.
        self.report_to, self.config = report_to or "none", config
        self.tracker: trackers.Tracker | None = None
        self._points: list[tuple[int, str, float]] = []
        self._last_flush = 0.0
        self._step, self._loss, self._rate = 0, None, None
        # Seconds per image of the last RATE_STEPS logged steps: the job's rate is their mean.
        # The last step's own rate is not: the step that crosses a flush interval is most
        # often a slow one (one that also evaluates), which made the ETA hours long.
        self._per_image: deque[float] = deque(maxlen=RATE_STEPS)

    def started(self, first_step: int, total_steps: int) -> None:
        # A resumed job re-logs the steps after its checkpoint: drop the old ones, and start
        # from the loss logged at its checkpoint (a flush before the first new step, e.g. a
        # Stop right after Resume, must not write an empty last loss).
        self.store.rewind(self.job_id, first_step)
        self.store.update_job(self.job_id, total_steps=total_steps)
        self._step = first_step
        job = self.store.get_job(self.job_id)
        self._loss = job.last_loss if job is not None else None
        if self.report_to != "none" and self.tracker is None and trackers.is_main_process():
            run_dir = self.run_dir or "."
            self.tracker = trackers.open_tracker(
                self.report_to, self.job_id, run_dir, first_step, self.config
            )

    def metrics(self, step: int, values: dict[str, float]) -> None:
        self._points.extend((step, name, float(value)) for name, value in values.items())
        self._step, self._loss = step, values.get("loss", self._loss)
        if values.get("images_per_second"):
            self._per_image.append(1.0 / values["images_per_second"])
        if self.on_step is not None:
            self.on_step(step, values)
        if time.monotonic() - self._last_flush >= FLUSH_S:
            self.flush()

    def checkpoint(self, step: int, path: str) -> None:
        self._step = max(self._step, step)  # the row's step is the checkpoint's at least
        self.flush()
        # The rows of the folders the trainer removes next go first (and rows of folders gone
        # before this was done, and an older row of the same step): the store never lists a
        # checkpoint that is not on disk.
        retiring = {str(p) for p in checkpoints.retiring(self.run_dir)} if self.run_dir else set()
        stale = [
            c.path
            for c in self.store.checkpoints(self.job_id)
            if c.path in retiring or c.path == path or not os.path.isdir(c.path)
        ]
        self.store.add_checkpoint(self.job_id, step, path, replacing=stale)

    def discard_from(self, step: int) -> None:
        """Forget the unflushed points of `step` and later (a diverged step's)."""
        self._points = [p for p in self._points if p[0] < step]
        self._step = min(self._step, step - 1)

    def flush(self) -> None:
        points, self._points = self._points, []
        if self._per_image:
            self._rate = len(self._per_image) / sum(self._per_image)
        self.store.add_metrics(self.job_id, points)
        if self.tracker is not None:
            self.tracker.log(points)
        self.store.update_job(
            self.job_id, step=self._step, last_loss=self._loss, images_per_second=self._rate
        )
        self._last_flush = time.monotonic()

    def close(self) -> None:
        """Close the tracker (its last events written); the store needs no closing."""
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None


class NullSink:
    """The sink of ranks other than 0: only rank 0 writes points and checkpoints."""

    def metrics(self, step: int, values: dict[str, float]) -> None:
        pass

    def checkpoint(self, step: int, path: str) -> None:
        pass

    def flush(self) -> None:
        pass

    def started(self, first_step: int, total_steps: int) -> None:
        pass


class Heartbeat(threading.Thread):
    """Beats the job's heartbeat and turns its cancel flag into `stop`."""

    def __init__(self, store: Store, job_id: int, stop: threading.Event) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{job_id}")
        self.store, self.job_id, self.stop, self.done = store, job_id, stop, threading.Event()

    def run(self) -> None:
        while not self.done.wait(HEARTBEAT_S):
            try:
                self.store.update_job(self.job_id, heartbeat_at=utcnow())
                job = self.store.get_job(self.job_id)
                if job is None or job.cancel_requested:
                    self.stop.set()
            except Exception:  # a busy database must not kill the job; try again next beat
                log.exception("heartbeat failed")


def run_worker(
    home: Home, job_id: int, on_step: Callable[[int, dict[str, float]], None] | None = None
) -> dict:
    """Run stored job `job_id` to its end here; returns the final job fields as a dict."""
    rank, world = process_rank()
    if world > 1:
        watch_parent()  # a rank whose launcher was killed must not train on alone
        if rank != 0:
            return _run_rank(home, job_id)
    store = Store.open(home.db_path)
    register_user_datasets(store)
    job = store.get_job(job_id)
    if job is None:
        raise SystemExit(f"no job {job_id} in {home.db_path}")
    # The job's clock started when its slot was claimed (the row is then already running):
    # starting it again here made the elapsed time jump back to 0 s once the worker came up.
    claimed = job.status == "running" and job.started_at is not None
    started = job.started_at if claimed else utcnow()
    store.update_job(
        job_id,
        status="running",
        # Several ranks: the launcher, whose signals reach them all and whose end ends them.
        pid=os.getpid() if world == 1 else os.getppid(),
        host=socket.gethostname(),
        started_at=started,
        heartbeat_at=started,
        finished_at=None,
        error=None,
    )
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    heartbeat = Heartbeat(store, job_id, stop)
    heartbeat.start()
    stored = job.config or {}  # the resolved config as submitted
    sink = StoreSink(
        store, job_id, on_step, home.run_dir(job_id), stored.get("report_to", "none"), stored
    )
    fields: dict = {}
    diverged = False
    try:
        spec, config = resolve(job.spec)  # as Studio.validate stored it
        result: RunResult = run_job(
            spec,
            config,
            home.run_dir(job_id),
            sysmetrics.SystemSink(sink),  # CPU, memory (and GPU) curves: rank 0's process
            stop.is_set,
            data_cache_dir=home.cache_dir,
        )
        _leave_group()  # the evaluations below run in this process alone
        sink.flush()
        fields = dict(
            status=result.status, step=result.step, images_per_second=result.images_per_second
        )
        if result.final_loss is not None:
            fields["last_loss"] = result.final_loss
        if result.status == "completed" and spec.evals:
            # Still `running` (heartbeat on) while the chosen evaluations run and are stored.
            from engine.evaluation.runner import run_end_of_job

            fields.update(
                run_end_of_job(home, store, job_id, spec.evals, spec.eval_dataset, stop.is_set)
            )
    except Diverged as exc:
        sink.discard_from(exc.step)  # keep nothing logged at or after the bad step
        sink.flush()
        fields = dict(status="failed", error=str(exc))
        diverged = True
    except Exception as exc:  # noqa: BLE001 - any crash is recorded as the job's error
        traceback.print_exc()
        try:
            sink.flush()
        except Exception:
            log.exception("could not flush the last points")
        fields = dict(status="failed", error=f"{type(exc).__name__}: {exc}")
    finally:
        sink.close()
        heartbeat.done.set()
        heartbeat.join()
    if world > 1 and not (diverged or _ends_here(store, job_id, fields)):
        # A crash here, or a stop without Stop (the launcher tearing the ranks down after
        # another rank failed): the launcher's report says which rank failed first, and
        # jobs.record_exit records the end from it once every rank has gone.
        fields.pop("status", None)
        store.update_job(job_id, **fields)
        return fields
    finished = utcnow()
    fields.update(
        finished_at=finished,
        elapsed_before=job.elapsed_before + (finished - started).total_seconds(),
    )
    store.update_job(job_id, **fields)
    return fields


def _ends_here(store: Store, job_id: int, fields: dict) -> bool:
    """Whether rank 0 of a multi-process job records this end itself: completed, or
    cancelled by a Stop (a divergence it names by step, too: see run_worker)."""
    if fields.get("status") == "cancelled":
        job = store.get_job(job_id)
        return job is not None and job.cancel_requested
    return fields.get("status") == "completed"


def _run_rank(home: Home, job_id: int) -> dict:
    """A rank other than 0: train in step with rank 0, write nothing. Its errors propagate
    (the launcher reports them, naming this rank); a SIGTERM is left to rank 0, whose stop
    the loop broadcasts (the launcher kills a rank that does not end)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    store = Store.open(home.db_path)
    register_user_datasets(store)
    job = store.get_job(job_id)
    if job is None:
        raise SystemExit(f"no job {job_id} in {home.db_path}")
    spec, config = resolve(job.spec)
    result = run_job(
        spec,
        config,
        home.run_dir(job_id),
        NullSink(),
        lambda: False,
        data_cache_dir=home.cache_dir,
    )
    _leave_group()
    return dict(status=result.status, step=result.step)


def _leave_group() -> None:
    """Close this rank's process group, if one is open, before the process ends: a gloo
    group left to the interpreter's exit can abort the process after correct results."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.worker", description=__doc__)
    parser.add_argument("job_id", type=int)
    parser.add_argument("--home", default=None, help="home folder (default $PRETEXT_HOME)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    fields = run_worker(Home.resolve(args.home), args.job_id)
    return 0 if fields.get("status") in ("completed", "cancelled") else 1


if __name__ == "__main__":
    from torch.distributed.elastic.multiprocessing.errors import record

    # Under the launcher, a rank's uncaught error goes to the file it reads for its report.
    sys.exit(record(main)())
