"""SQLAlchemy 2 tables: jobs, their metric points, checkpoints and evaluations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from engine.contract import ACTIVE_STATUSES, JOB_STATUSES, RESUMABLE_STATUSES, JobStatus

__all__ = [
    "ACTIVE_STATUSES",
    "JOB_STATUSES",
    "RESUMABLE_STATUSES",
    "Base",
    "Checkpoint",
    "Evaluation",
    "Job",
    "JobStatus",
    "MetricPoint",
    "UserDataset",
]


class Base(DeclarativeBase):
    pass


class StatusText(TypeDecorator[JobStatus]):
    """A `JobStatus` (engine/contract.py) stored as its plain value in a String(16) column, as
    databases written before the enum hold it: a row reads back as a JobStatus, and writing a
    value that is no status raises ValueError instead of storing it."""

    impl = String(16)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else JobStatus(value).value

    def process_result_value(self, value: str | None, dialect: Any) -> JobStatus | None:
        return None if value is None else JobStatus(value)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    method: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(256))
    backbone: Mapped[str] = mapped_column(String(64), default="")
    preset: Mapped[str] = mapped_column(String(32), default="quick")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # the TrainSpec as asked
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # the resolved method config
    status: Mapped[JobStatus] = mapped_column(StatusText, default=JobStatus.QUEUED, index=True)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    step: Mapped[int] = mapped_column(Integer, default=0)
    last_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    images_per_second: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    host: Mapped[str | None] = mapped_column(String(256), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    run_dir: Mapped[str] = mapped_column(String(1024), default="")
    created_at: Mapped[datetime] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # Seconds spent running in earlier attempts, so a resumed job's duration adds up.
    elapsed_before: Mapped[float] = mapped_column(Float, default=0.0)


class MetricPoint(Base):
    __tablename__ = "metric_points"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_metric_job_step", "job_id", "step"),)


class Checkpoint(Base):
    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column()


class Evaluation(Base):
    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), nullable=True, index=True
    )
    protocol: Mapped[str] = mapped_column(String(32))
    dataset: Mapped[str] = mapped_column(String(256))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    results: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column()


class UserDataset(Base):
    """A dataset the user added (image folder or zip); its files live in `path`."""

    __tablename__ = "user_datasets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="image")
    path: Mapped[str] = mapped_column(String(1024))
    source: Mapped[str] = mapped_column(String(1024), default="")
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # counts, labels, version
    created_at: Mapped[datetime] = mapped_column()
