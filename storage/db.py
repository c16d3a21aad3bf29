"""The job store: SQLite in WAL mode behind SQLAlchemy 2.

Two paths, never mixed:
- writes go through `Store.write()`, a short transaction opened with `BEGIN IMMEDIATE`, so two
  processes writing at once queue on the busy timeout instead of failing with "database is
  locked" at commit (a deferred transaction that reads first and then writes can deadlock);
- reads go through `Store.read()` on a connection in autocommit mode: every SELECT is its own
  implicit transaction, so a reader never holds a lock across handlers and never blocks a writer.

One `Store` per (process, database file): `Store.open(path)` reuses it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, delete, event, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from storage.models import Base, Checkpoint, Evaluation, Job, MetricPoint, UserDataset

BUSY_TIMEOUT_S = 30.0


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _make_engine(path: Path, begin: str | None) -> Engine:
    engine = create_engine(
        f"sqlite:///{path}", connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module, then set the pragmas.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    if begin is not None:

        @event.listens_for(engine, "begin")
        def on_begin(connection: Any) -> None:
            connection.exec_driver_sql(begin)

    return engine


def _processes(config: Any) -> int:
    """The processes a job's stored config asks for (1 for jobs from before the field)."""
    value = config.get("processes", 1) if isinstance(config, dict) else 1
    return value if isinstance(value, int) and value > 0 else 1


class Store:
    """Jobs, metric points, checkpoints and evaluations in one SQLite file."""

    _instances: dict[tuple[int, str], Store] = {}
    _lock = threading.Lock()

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = _make_engine(self.path, "BEGIN IMMEDIATE")
        self._reader = _make_engine(self.path, None)
        Base.metadata.create_all(self._writer)
        self._write_sessions = sessionmaker(self._writer, expire_on_commit=False)
        self._read_sessions = sessionmaker(self._reader, expire_on_commit=False)

    @classmethod
    def open(cls, path: str | os.PathLike) -> Store:
        """The process's store for `path` (one engine per process and file)."""
        key = (os.getpid(), str(Path(path).resolve()))
        with cls._lock:
            if key not in cls._instances:
                cls._instances[key] = cls(path)
            return cls._instances[key]

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A short write transaction (BEGIN IMMEDIATE ... COMMIT)."""
        with self._write_sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session in autocommit mode; it takes no write lock."""
        with self._read_sessions() as session:
            yield session

    # ---- jobs ---------------------------------------------------------------------------
    def create_job(self, **fields: Any) -> int:
        with self.write() as s:
            job = Job(created_at=utcnow(), **fields)
            s.add(job)
            s.flush()
            return job.id

    def get_job(self, job_id: int) -> Job | None:
        with self.read() as s:
            return s.get(Job, job_id)

    def list_jobs(self, statuses: tuple[str, ...] | None = None) -> list[Job]:
        query = select(Job).order_by(Job.id.desc())
        if statuses:
            query = query.where(Job.status.in_(statuses))
        with self.read() as s:
            return list(s.scalars(query))

    def update_job(self, job_id: int, **fields: Any) -> None:
        with self.write() as s:
            s.execute(update(Job).where(Job.id == job_id).values(**fields))

    def transition(self, job_id: int, from_statuses: tuple[str, ...], **fields: Any) -> bool:
        """Update the job only if its status is one of `from_statuses`; True if it was."""
        with self.write() as s:
            result = s.execute(
                update(Job).where(Job.id == job_id, Job.status.in_(from_statuses)).values(**fields)
            )
            return result.rowcount == 1

    def claim_slot(
        self, job_id: int, max_running: int | None, capacity: int | None = None, **fields: Any
    ) -> tuple[bool, list[int]]:
        """Turn queued job `job_id` running (with `fields`) if fewer than `max_running` jobs
        run (None: no limit) and, with a `capacity` (the machine's GPUs or cores), the
        processes of the running jobs and this one (each config's `processes`, default 1)
        fit in it; a job that runs alone always fits. The count and the claim are one write
        transaction (BEGIN IMMEDIATE), so two processes can never both take the last free
        slot. Returns whether it was claimed and the ids of the jobs running before (the
        ones it waits for)."""
        with self.write() as s:
            rows = s.execute(
                select(Job.id, Job.config).where(Job.status == "running").order_by(Job.id)
            ).all()
            running = [row.id for row in rows]
            if max_running is not None and len(running) >= max_running:
                return False, running
            if capacity is not None and running:
                mine = s.scalar(select(Job.config).where(Job.id == job_id))
                used = sum(_processes(row.config) for row in rows)
                if used + _processes(mine) > capacity:
                    return False, running
            result = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "queued")
                .values(status="running", **fields)
            )
            return result.rowcount == 1, running

    def rewind(self, job_id: int, step: int) -> None:
        """Bring a job's row and curves back to `step` (its newest checkpoint, after its worker
        was killed): points past it are dropped, `last_loss` is the loss logged at or before it."""
        with self.write() as s:
            s.execute(
                delete(MetricPoint).where(MetricPoint.job_id == job_id, MetricPoint.step > step)
            )
            last_loss = s.scalar(
                select(MetricPoint.value)
                .where(MetricPoint.job_id == job_id, MetricPoint.name == "loss")
                .order_by(MetricPoint.step.desc())
                .limit(1)
            )
            s.execute(update(Job).where(Job.id == job_id).values(step=step, last_loss=last_loss))

    # ---- metrics ------------------------------------------------------------------------
    def add_metrics(self, job_id: int, points: list[tuple[int, str, float]]) -> None:
        if not points:
            return
        with self.write() as s:
            s.add_all(
                MetricPoint(job_id=job_id, step=step, name=name, value=value)
                for step, name, value in points
            )

    def metrics(self, job_id: int, since_step: int = -1) -> list[tuple[int, str, float]]:
        """Points with step > since_step, ordered by step."""
        query = (
            select(MetricPoint.step, MetricPoint.name, MetricPoint.value)
            .where(MetricPoint.job_id == job_id, MetricPoint.step > since_step)
            .order_by(MetricPoint.step, MetricPoint.id)
        )
        with self.read() as s:
            return [tuple(row) for row in s.execute(query)]

    def first_metric(self, job_id: int, name: str) -> float | None:
        query = (
            select(MetricPoint.value)
            .where(MetricPoint.job_id == job_id, MetricPoint.name == name)
            .order_by(MetricPoint.step)
            .limit(1)
        )
        with self.read() as s:
            return s.scalar(query)

    def delete_metrics_after(self, job_id: int, step: int) -> None:
        """Drop points past `step` (a resumed job re-logs them from its checkpoint)."""
        with self.write() as s:
            s.execute(
                delete(MetricPoint).where(MetricPoint.job_id == job_id, MetricPoint.step > step)
            )

    # ---- checkpoints and evaluations ----------------------------------------------------
    def add_checkpoint(
        self, job_id: int, step: int, path: str, replacing: Sequence[str] = ()
    ) -> None:
        """Record checkpoint `path`; the job's rows for the `replacing` paths (folders about to
        be removed) go in the same transaction."""
        with self.write() as s:
            if replacing:
                s.execute(
                    delete(Checkpoint).where(
                        Checkpoint.job_id == job_id, Checkpoint.path.in_(list(replacing))
                    )
                )
            s.add(Checkpoint(job_id=job_id, step=step, path=path, created_at=utcnow()))

    def checkpoints(self, job_id: int) -> list[Checkpoint]:
        query = select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step)
        with self.read() as s:
            return list(s.scalars(query))

    def add_evaluation(
        self,
        job_id: int | None,
        protocol: str,
        dataset: str,
        params: dict[str, Any],
        results: dict[str, Any],
    ) -> int:
        with self.write() as s:
            row = Evaluation(
                job_id=job_id,
                protocol=protocol,
                dataset=dataset,
                params=params,
                results=results,
                created_at=utcnow(),
            )
            s.add(row)
            s.flush()
            return row.id

    def evaluations(self, job_id: int | None = None) -> list[Evaluation]:
        query = select(Evaluation).order_by(Evaluation.id)
        if job_id is not None:
            query = query.where(Evaluation.job_id == job_id)
        with self.read() as s:
            return list(s.scalars(query))

    def count_jobs(self) -> int:
        with self.read() as s:
            return s.scalar(select(func.count(Job.id))) or 0

    # ---- user datasets ------------------------------------------------------------------
    def save_user_dataset(
        self, name: str, kind: str, path: str, source: str, meta: dict[str, Any]
    ) -> None:
        with self.write() as s:
            s.merge(
                UserDataset(
                    name=name, kind=kind, path=path, source=source, meta=meta, created_at=utcnow()
                )
            )

    def user_datasets(self) -> list[UserDataset]:
        with self.read() as s:
            return list(s.scalars(select(UserDataset).order_by(UserDataset.name)))
