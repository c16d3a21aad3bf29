"""A job's status column: JobStatus in Python, the same plain strings in SQLite as before."""

import sqlite3

import pytest
from sqlalchemy.exc import StatementError

from engine.contract import JobStatus
from storage.db import Store


def test_status_reads_back_as_the_enum_and_is_stored_as_text(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    job_id = store.create_job(
        method="simclr",
        dataset="digits",
        backbone="resnet18",
        spec={},
        config={},
        status="queued",
        total_steps=10,
    )
    assert store.get_job(job_id).status is JobStatus.QUEUED
    assert store.transition(job_id, (JobStatus.QUEUED,), status=JobStatus.RUNNING)
    assert [j.id for j in store.list_jobs(("running",))] == [job_id]
    con = sqlite3.connect(tmp_path / "db.sqlite")
    assert con.execute("SELECT status FROM jobs").fetchall() == [("running",)]
    # A row written as plain text (an older database) reads the same.
    con.execute("UPDATE jobs SET status = 'interrupted'")
    con.commit()
    assert store.get_job(job_id).status is JobStatus.INTERRUPTED
    with pytest.raises(StatementError, match="is not a valid JobStatus"):
        store.update_job(job_id, status="paused")
    assert store.get_job(job_id).status is JobStatus.INTERRUPTED
