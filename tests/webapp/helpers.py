"""Shared by the web app tests: free ports, waiting, and never leaving a worker behind."""

from __future__ import annotations

import os
import signal
import socket
import time


def wait_for(predicate, timeout: float = 120.0, every: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kill_workers(studio) -> None:
    studio.shutdown()
    for job in studio.jobs():
        if job["status"] == "running" and job["pid"]:
            try:
                os.kill(job["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
