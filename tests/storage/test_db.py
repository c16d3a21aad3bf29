"""The store against a real SQLite file, written from several processes at once."""

import multiprocessing as mp
import sqlite3

from storage.db import Store


def _job_fields(i: int = 0) -> dict:
    return dict(
        method="simclr",
        dataset="digits",
        backbone="resnet18",
        spec={"i": i},
        config={},
        status="queued",
        total_steps=10,
    )


def test_pragmas_and_roundtrip(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    job_id = store.create_job(**_job_fields())
    store.add_metrics(job_id, [(1, "loss", 2.0), (2, "loss", 1.5), (2, "lr", 0.1)])
    assert store.metrics(job_id, since_step=1) == [(2, "loss", 1.5), (2, "lr", 0.1)]
    assert store.first_metric(job_id, "loss") == 2.0
    store.delete_metrics_after(job_id, 1)
    assert store.metrics(job_id) == [(1, "loss", 2.0)]
    con = sqlite3.connect(tmp_path / "db.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with store.read() as s:
        assert s.connection().exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_transition_is_conditional(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    job_id = store.create_job(**_job_fields())
    assert store.transition(job_id, ("queued",), status="running")
    assert not store.transition(job_id, ("queued",), status="running")
    assert store.get_job(job_id).status == "running"


def _writer(path: str, job_id: int, offset: int, count: int) -> None:
    store = Store(path)
    for i in range(count):
        store.add_metrics(job_id, [(offset + i, "loss", float(i))])
        store.update_job(job_id, step=offset + i)


def test_concurrent_writers_never_see_locked(tmp_path):
    path = str(tmp_path / "db.sqlite")
    store = Store(path)
    job_id = store.create_job(**_job_fields())
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, job_id, k * 1000, 150)) for k in range(3)]
    for p in procs:
        p.start()
    # A reader that keeps reading while they write must not stall them.
    for _ in range(50):
        store.metrics(job_id)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(store.metrics(job_id)) == 450


def test_open_read_session_does_not_block_writes(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    job_id = store.create_job(**_job_fields())
    with store.read() as s:
        s.get(type(store.get_job(job_id)), job_id)  # a read in an open session
        other = Store(tmp_path / "db.sqlite")  # a second engine, as another process has
        other.update_job(job_id, step=5)  # would time out if the read held a lock
    assert store.get_job(job_id).step == 5
