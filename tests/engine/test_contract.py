"""engine/contract.py against the engine: the protocols name the engine's own signatures, the
engine's answers have the typed dicts' keys, and the module stays torch-free."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from typing import get_type_hints

import pytest

from engine import contract
from engine.api import Studio
from engine.api_lenses import Lenses

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC = {
    "method": "simclr",
    "dataset": "digits",
    "params": {"steps": 3, "batch_size": 16, "image_size": 16},
}


def members(protocol: type) -> list[str]:
    return [name for name in vars(protocol) if not name.startswith("_")]


def shape(fn) -> list[tuple[str, object, object]]:
    """A signature without its annotations: (name, kind, default) per parameter."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("protocol, engine", [(contract.Studio, Studio), (contract.Lenses, Lenses)])
def test_each_protocol_member_is_the_engines_own(protocol, engine):
    """A method the web app calls has the engine's parameters, names and defaults included,
    so a change on either side shows here, not in the browser."""
    for name in members(protocol):
        ours = getattr(protocol, name)
        if isinstance(ours, property):
            continue  # an attribute the engine sets in __init__ (checked below)
        assert shape(ours) == shape(getattr(engine, name)), name
        assert get_type_hints(ours)  # resolvable without torch


def test_the_engine_satisfies_the_protocols(tmp_path):
    studio = Studio(tmp_path / "home")
    assert isinstance(studio, contract.Studio)
    assert isinstance(studio.lenses, contract.Lenses) and studio.lenses.studio is studio
    assert isinstance(studio.paths, contract.PathPolicy)
    assert not hasattr(studio, "attention")  # the lenses live behind studio.lenses


def test_job_status_values_are_the_stored_strings():
    assert [s.value for s in contract.JobStatus] == [
        "queued",
        "running",
        "completed",
        "cancelled",
        "failed",
        "interrupted",
    ]
    assert contract.JobStatus("running") == "running"
    assert f"{contract.JobStatus.FAILED}" == "failed"  # what a message or a label shows
    assert {*contract.ACTIVE_STATUSES, *contract.TERMINAL_STATUSES} == set(contract.JobStatus)
    assert not set(contract.ACTIVE_STATUSES) & set(contract.TERMINAL_STATUSES)
    assert set(contract.RESUMABLE_STATUSES) < set(contract.TERMINAL_STATUSES)
    assert contract.JobStatus.QUEUED.active and contract.JobStatus.INTERRUPTED.resumable
    assert not contract.JobStatus.COMPLETED.resumable and contract.JobStatus.COMPLETED.terminal
    assert "running" in contract.ACTIVE_STATUSES  # plain strings (API clients') compare equal


def test_the_engines_answers_have_the_typed_keys(tmp_path):
    studio = Studio(tmp_path / "home")
    job_id = studio.submit(SPEC)
    [summary] = studio.jobs()
    assert set(summary) == set(contract.JobSummary.__annotations__)
    assert summary["status"] is contract.JobStatus.QUEUED
    detail = studio.job(job_id)
    assert set(detail) == set(contract.JobDetail.__annotations__)
    studio.store.add_metrics(job_id, [(1, "loss", 2.0)])
    assert studio.metrics(job_id) == [{"step": 1, "name": "loss", "value": 2.0}]
    studio.store.add_evaluation(
        job_id, "knn", "digits", {"image_size": 16}, {"top1": 0.5, "top5": 0.9}
    )
    [record] = studio.evaluations(job_id)
    assert set(record) == set(contract.EvaluationRecord.__annotations__)
    [row] = studio.leaderboard()
    assert contract.LeaderboardRow.__required_keys__ <= set(row)
    method = next(m for m in studio.methods() if m["name"] == "simclr")
    assert set(method) == set(contract.MethodInfo.__annotations__)
    assert all(
        set(f) == set(contract.FormField.__annotations__) for f in studio.method_form("simclr")
    )
    assert all(contract.DatasetInfo.__required_keys__ <= set(d) for d in studio.datasets())
    assert all(set(p) == set(contract.ProtocolInfo.__annotations__) for p in studio.protocols())
    assert studio.cancel(job_id) == "cancelled"
    assert studio.job(job_id)["status"] in contract.RESUMABLE_STATUSES


def test_the_contract_imports_nothing_of_the_engine():
    code = (
        "import sys, engine.contract; "
        "bad = [m for m in sys.modules if m.startswith(('torch', 'numpy', 'sqlalchemy', "
        "'gradio')) or m.startswith('engine') and m not in ('engine', 'engine.contract')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
