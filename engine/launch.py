"""How a job's worker process(es) start, and what a multi-process job's launcher left behind.

One process: `python -m engine.worker ID --home H`. N processes: the same module under
`accelerate launch --multi_gpu --num_processes N` (torch.distributed.run underneath: it starts
N ranks, sets RANK / LOCAL_RANK / WORLD_SIZE, and tears the whole group down when one rank
fails). On CPU the ranks talk gloo: `ACCELERATE_USE_CPU=1` with `--multi_gpu` (accelerate 1.15
has no `--multi_cpu`, and `--cpu --num_processes 2` starts one process). On CUDA each rank
gets one GPU (NCCL); a job is given its GPUs through CUDA_VISIBLE_DEVICES.

The launcher is the process a job's row names (its pid): SIGTERM to it reaches every rank
(torch.distributed.run forwards it), and each rank leaves when the launcher goes
(`watch_parent`: the ranks run in sessions of their own, so a SIGKILL of the launcher would
otherwise leave them behind). When a rank fails, the launcher prints a "Root Cause" block to
the job's worker.log; `rank_failure` turns it into the job's error.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import psutil

KILLED_EXIT = 137  # 128 + SIGKILL: how a shell reports kill -9
# Written to worker.log before each start: a resumed job's log holds every attempt, and only
# the last one's report may name the rank that failed.
ATTEMPT_MARK = "---- pretext: worker started ----"


def process_rank() -> tuple[int, int]:
    """(rank, world size) of this process: RANK and WORLD_SIZE as torch.distributed.run
    sets them for each rank; (0, 1) for a process started on its own."""
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 0, 1


def free_port() -> int:
    """A TCP port nothing listens on now, for the ranks' rendezvous on this machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_command(job_id: int, home: Path, processes: int, port: int | None = None) -> list[str]:
    """The command that runs job `job_id` of `home` on `processes` processes."""
    worker = ["-m", "engine.worker", str(job_id), "--home", str(home)]
    if processes <= 1:
        return [sys.executable, *worker]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",  # the loop's own bf16 autocast decides (TrainConfig.precision)
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(port or free_port()),
        *worker,
    ]


def worker_env(
    processes: int, devices: list[int] | None, base: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of a job's worker: `devices` (CUDA indices; None on CPU) become
    CUDA_VISIBLE_DEVICES; on CPU N ranks (gloo) share this process's cores."""
    env = dict(os.environ if base is None else base, PYTHONUNBUFFERED="1")
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in devices)
    elif processes > 1:
        env["ACCELERATE_USE_CPU"] = "1"
        # torch.distributed.run sets 1 thread per rank when unset; give each its share.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        env.setdefault("OMP_NUM_THREADS", str(max(1, cores // processes)))
    return env


def start(
    job_id: int,
    home: Path,
    processes: int,
    log_path: Path,
    devices: list[int] | None,
    cwd: Path,
) -> subprocess.Popen:
    """Start job `job_id`'s worker(s), output appended to `log_path`, in a session of their
    own (a Ctrl-C or the web process's end does not reach them; Stop does, by the row)."""
    with open(log_path, "ab") as log_file:
        log_file.write(f"{ATTEMPT_MARK}\n".encode())
        log_file.flush()
        return subprocess.Popen(
            worker_command(job_id, home, processes),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=worker_env(processes, devices),
            cwd=str(cwd),
            start_new_session=True,
        )


def held_devices(pid: int | None, processes: int) -> set[int]:
    """The CUDA devices a running job holds: its process's CUDA_VISIBLE_DEVICES (this
    module set it), else the first `processes` (a job started without one sees them all)."""
    try:
        visible = psutil.Process(pid).environ().get("CUDA_VISIBLE_DEVICES") if pid else None
    except psutil.Error:
        visible = None
    if visible is not None:
        return {int(d) for d in visible.split(",") if d.strip().isdigit()}
    return set(range(processes))


def pick_devices(busy: set[int], processes: int, count: int) -> list[int] | None:
    """The first `processes` of `count` CUDA devices not in `busy`; None if too few are free."""
    free = [d for d in range(count) if d not in busy]
    return free[:processes] if len(free) >= processes else None


def watch_parent(exit_code: int = KILLED_EXIT, every_s: float = 1.0) -> threading.Thread:
    """Leave (os._exit) once this process's parent has gone: a rank whose launcher was
    killed must not go on training alone, holding its device."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            threading.Event().wait(every_s)
            if os.getppid() != parent:
                os._exit(exit_code)

    thread = threading.Thread(target=watch, daemon=True, name="watch-launcher")
    thread.start()
    return thread


_FIELD = re.compile(r"^\s*(rank|exitcode|traceback)\s*:\s?(.*)$")
_SIGNAL = re.compile(r"Signal \d+ \((SIG[A-Z0-9]+)\) received")


def last_attempt(log_text: str) -> str:
    """The part of a worker.log the latest start wrote."""
    return log_text.rpartition(ATTEMPT_MARK)[2]


def rank_failure(log_text: str, processes: int) -> tuple[int, str] | None:
    """The rank torch.distributed.run blamed ("Root Cause (first observed failure)" in the
    launcher's output) and the job's error for it, e.g. (1, 'rank 1 of 2 failed:
    RuntimeError: boom') or (1, 'rank 1 of 2 was killed (SIGKILL); ...'); None when the log
    holds no such block."""
    _, found, block = log_text.rpartition("Root Cause (first observed failure)")
    if not found:
        return None
    rank, exitcode, trace = None, "", []
    in_trace = False
    for line in block.splitlines()[1:]:
        if line.startswith("====="):
            break
        match = _FIELD.match(line)
        if match and not in_trace:
            key, value = match.groups()
            if key == "rank":
                rank = value.split()[0]
            elif key == "exitcode":
                exitcode = value.split()[0]
            else:
                in_trace, trace = True, [value]
        elif in_trace:
            trace.append(line)
    if rank is None or not rank.isdigit():
        return None
    lines = [t.strip() for t in trace if t.strip()]
    killed = _SIGNAL.search(" ".join(lines))
    who = f"rank {rank} of {processes}"
    if killed:
        return int(rank), f"{who} was killed ({killed.group(1)}); the other ranks were stopped"
    if lines and lines[-1] != "<N/A>":
        return int(rank), f"{who} failed: {lines[-1]}"
    return int(rank), f"{who} exited with code {exitcode}; see worker.log in the run folder"


def check_processes(
    processes: int, batch_size: int, method: type, max_processes: int, machine: str
) -> None:
    """Refuse a `processes` this machine (`max_processes`, described by `machine`) or the job
    cannot use: more processes than GPUs (CUDA) or cores, a batch_size they do not divide,
    a method whose class sets `multi_process = False`. SpecError names the numbers."""
    from engine.errors import SpecError

    if processes <= 1:
        return
    if processes > max_processes:
        raise SpecError(
            f"processes {processes} is more than this machine runs at once ({machine}: at "
            f"most {max_processes}); set processes to {max_processes} or fewer"
        )
    if batch_size % processes:
        lower = batch_size - batch_size % processes
        options = f"{lower} or {lower + processes}" if lower else f"{processes}"
        raise SpecError(
            f"batch_size {batch_size} does not divide among {processes} processes (it is the "
            f"global batch, {batch_size / processes:g} rows each); use a multiple of "
            f"{processes} such as {options}"
        )
    if not getattr(method, "multi_process", True):
        name = getattr(method, "name", "") or method.__name__
        raise SpecError(
            f"{name} cannot train on several processes yet; set processes to 1 (asked for "
            f"{processes})"
        )
