"""Malformed payloads through `engine.api.Studio`: each is a StudioError whose message names the
field (never an OverflowError from SQLite, a TypeError from a dict used as a key, an OSError
from a 10,000-character path), and a refused spec writes no job row."""

from __future__ import annotations

import pytest

from engine import checks
from engine.api import Studio
from engine.config import TrainSpec, _coerce
from engine.errors import DatasetError, JobError, SpecError, StudioError
from engine.inference.models import LensError

GOOD = {"method": "simclr", "dataset": "digits", "params": {"steps": 3, "batch_size": 16}}
LONG = "x" * 10_000


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    return Studio(tmp_path_factory.mktemp("home"))


def test_errors_share_one_base_and_keep_their_old_ones():
    from engine.hub import HubError

    for cls in (SpecError, DatasetError, JobError, LensError, HubError):
        assert issubclass(cls, StudioError)
    assert issubclass(SpecError, ValueError) and issubclass(LensError, ValueError)
    assert issubclass(JobError, RuntimeError) and not issubclass(StudioError, ValueError)


@pytest.mark.parametrize(
    "spec, words",
    [
        (dict(GOOD, seed=2**80), "seed must be from 0 to 4294967295"),
        (dict(GOOD, seed=-1), "seed must be from 0"),
        (dict(GOOD, seed=True), "seed must be a whole number, got True"),
        (dict(GOOD, seed="7"), "seed must be a whole number"),
        (dict(GOOD, params={"steps": True}), "steps must be a whole number, got True"),
        (dict(GOOD, params={"steps": 1e15}), "steps must be at most 10000000"),
        (dict(GOOD, params={"steps": 0}), "steps must be at least 1"),
        (dict(GOOD, params={"steps": 10**400}), "steps must be at most"),
        (dict(GOOD, params={"steps": "1e400"}), "steps must be a whole number"),
        (dict(GOOD, params={"lr": False}), "lr must be a number, got False"),
        (dict(GOOD, params={"backbone": {"a": 1}}), "backbone must be text"),
        (dict(GOOD, preset={"a": 1}), "preset must be text"),
        (dict(GOOD, method=["simclr"]), "method must be text"),
        (dict(GOOD, dataset=LONG), "dataset is too long: 10,000 characters"),
        (dict(GOOD, evals=[{"a": 1}]), "each of evals must be text"),
        (dict(GOOD, evals="knn"), "evals must be a list"),
        (dict(GOOD, eval_dataset=5), "eval_dataset must be text"),
        (dict(GOOD, params=[1, 2]), "params must be a JSON object"),
        ({"method": "simclr"}, "the spec needs dataset"),
        (None, "the spec must be a JSON object"),
        ([GOOD], "the spec must be a JSON object"),
        ("simclr", "the spec must be a JSON object"),
    ],
)
def test_a_malformed_spec_names_its_field_and_creates_no_job(studio, spec, words):
    with pytest.raises(SpecError, match=words):
        studio.submit(spec)
    assert studio.jobs() == []


def test_a_spec_object_is_checked_as_strictly_as_json(studio):
    with pytest.raises(SpecError, match="seed must be from 0"):
        studio.validate(TrainSpec("simclr", "digits", seed=2**80))
    spec, _ = studio.validate(dict(GOOD, seed=4.0, preset=None))  # a number box's 4.0
    assert spec.seed == 4 and spec.preset == "quick"


@pytest.mark.parametrize(
    "value, words",
    [
        (True, "must be a number, got True"),
        ({"a": 1}, "must be a number"),
        (float("nan"), "must be a finite number"),
        (10**400, "must be a finite number"),
    ],
)
def test_coerce_refuses_booleans_and_non_numbers_for_numbers(value, words):
    with pytest.raises(SpecError, match=f"lr {words}"):
        _coerce("lr", value, float)
    assert _coerce("steps", "7", int) == 7 and _coerce("steps", 7.0, int) == 7


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda s: s.job(-5), JobError, "job id must be a positive whole number, got -5"),
        (lambda s: s.job(True), JobError, "job id must be a whole number, got True"),
        (lambda s: s.job(10**30), JobError, "job id must be a positive whole number"),
        (lambda s: s.job("abc"), JobError, "job id must be a whole number, got 'abc'"),
        (lambda s: s.cancel(None), JobError, "job id must be a whole number, got None"),
        (lambda s: s.resume(10**30), JobError, "job id must be a positive"),
        (lambda s: s.evaluations(True), JobError, "job id must be a whole number"),
        (lambda s: s.metrics(1, since_step=10**30), SpecError, "since_step must be from -1"),
        (lambda s: s.metrics(1, since_step="abc"), SpecError, "since_step must be a whole number"),
        (lambda s: s.metrics(1, since_step=True), SpecError, "since_step must be a whole number"),
        (lambda s: s.metrics(10**30), JobError, "job id must be a positive"),
        (lambda s: s.method_form({"a": 1}), SpecError, "unknown method {'a': 1}"),
        (lambda s: s.method_form("simclr", {"a": 1}), SpecError, "unknown preset {'a': 1}"),
        (lambda s: s.evaluate(1, {"a": 1}), SpecError, "unknown protocol"),
        (
            lambda s: s.evaluate_baseline("pixels", "digits", image_size=True),
            SpecError,
            "image_size must be a whole number, got True",
        ),
        (lambda s: s.evaluate_baseline("pixels", LONG), DatasetError, "unknown dataset 'xxx"),
        (
            lambda s: s.evaluate_baseline("pixels", "digits", params={"k": 2**80}),
            SpecError,
            "knn setting k must be from 0 to 10000000",
        ),
        (lambda s: s.project(LONG, "digits"), SpecError, "model is too long: 10,000"),
        (lambda s: s.project("pixels", LONG), DatasetError, r"unknown dataset .*10,002 characters"),
        (
            lambda s: s.project("pixels", "digits", samples=True),
            SpecError,
            "samples must be a whole number, got True",
        ),
        (lambda s: s.project("pixels", "digits", 100, {"a": 1}), SpecError, "unknown projection"),
        (
            lambda s: s.project("pixels", "digits", 100, "pca", [1]),
            SpecError,
            "params must be a JSON object",
        ),
        (
            lambda s: s.project("pixels", "digits", 100, "umap", {"n_neighbors": True}),
            SpecError,
            "n_neighbors must be a whole number",
        ),
        (lambda s: s.lenses.fill_mask("a [MASK]", LONG), StudioError, "model is too long: 10,000"),
        (
            lambda s: s.lenses.fill_mask("a [MASK]", "x" * 300),
            StudioError,
            "is not a run id, a folder",
        ),
        (lambda s: s.lenses.fill_mask("a [MASK]", "9" * 40), JobError, "job id must be a positive"),
        (
            lambda s: s.lenses.preview_views("simclr", "digits", seed=2**80),
            LensError,
            "seed must be from 0 to 4294967295",
        ),
        (
            lambda s: s.lenses.preview_views("simclr", "digits", num_images=True),
            LensError,
            "number of images must be a whole number, got True",
        ),
        (lambda s: s.lenses.preview_views({"a": 1}, "digits"), SpecError, "unknown method"),
    ],
)
def test_each_malformed_argument_names_its_field(studio, call, error, words):
    with pytest.raises(error, match=words):
        call(studio)


def test_checks_cut_long_values_in_messages():
    assert len(checks.shown(LONG)) < 100 and "10,002 characters" in checks.shown(LONG)
    with pytest.raises(SpecError, match="k must be from 1 to 5, got 7"):
        checks.whole_number(7, "k", 1, 5)
    assert checks.whole_number(3.0, "k") == 3 and checks.number(2, "x") == 2.0
