"""Store-backed datasets in the catalog, and streaming: a stored split over PRETEXT_IN_MEMORY_MB
is read from disk a batch at a time, and trains, evaluates and embeds exactly as in memory."""

import numpy as np
import pytest
import torch

from engine import checkpoints, trainer
from engine.config import TrainSpec, build_config
from engine.data import datasets
from engine.data.catalog import unregister_dataset
from engine.data.datasets import dataset_info, is_streamed, load_dataset
from engine.data.image_store import SplitWriter
from engine.data.presets import resolve_augmentation
from engine.data.stored_images import register_stored_dataset
from engine.errors import DatasetError
from engine.evaluation import features as feature_cache
from engine.evaluation.features import Subject
from engine.evaluation.runner import resolve_params, run_protocol
from engine.inference.embeddings import Encoder, build_embeddings
from engine.registry import get_method
from tests.conftest import TINY

NAME, TRAIN_ONLY = "stream-test", "stream-train-only"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_store(folder, counts, size=32, labelled=True, captions=False):
    rng = np.random.default_rng(0)
    for split, count in counts.items():
        with SplitWriter(folder, split, count=count, size=size) as out:
            for start in range(0, count, 64):
                n = min(64, count - start)
                out[start : start + n] = rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8)
            labels = rng.integers(0, 3, count) if labelled else np.full(count, -1)
            words = [
                f"a {['red', 'blue', 'green'][i % 3]} thing number {i % 7}" for i in range(count)
            ]
            out.finish(
                labels, ["a", "b", "c"] if labelled else [], captions=words if captions else None
            )


@pytest.fixture
def stored(tmp_path):
    write_store(tmp_path / "store", {"train": 240, "test": 60})
    register_stored_dataset(NAME, tmp_path / "store", {"store": 1})
    yield NAME
    unregister_dataset(NAME)
    datasets.clear_memory_cache()
    feature_cache.clear_memory_cache()


def streamed(monkeypatch, on: bool):
    if on:
        monkeypatch.setenv("PRETEXT_IN_MEMORY_MB", "0")
    else:
        monkeypatch.delenv("PRETEXT_IN_MEMORY_MB", raising=False)
    feature_cache.clear_memory_cache()


class Killed(Exception):
    pass


class Sink:
    def __init__(self, kill_at=None):
        self.points, self.kill_at = {}, kill_at

    def started(self, first_step, total_steps):
        self.points = {s: v for s, v in self.points.items() if s <= first_step}

    def metrics(self, step, values):
        self.points[step] = {k: v for k, v in values.items() if k != "images_per_second"}
        if step == self.kill_at:
            raise Killed

    def checkpoint(self, step, path):
        pass

    def flush(self):
        pass


def train(dataset, run_dir, kill_at=None, method="simclr", **params):
    spec = TrainSpec(method, dataset, seed=5, params=dict(TINY, **params))
    config = build_config(get_method(method).Config, "tiny", spec.params)
    config = resolve_augmentation(config, dataset)
    sink = Sink(kill_at)
    result = trainer.run_job(spec, config, run_dir, sink, should_stop=lambda: False)
    return result, sink.points, config


def test_registered_with_its_facts(stored):
    info = dataset_info(stored)
    assert (info["num_train"], info["num_test"], info["num_classes"]) == (240, 60, 3)
    assert info["labelled"] and info["stored"] and info["stored_size"] == 32
    assert info["stored_bytes"] == 300 * 3 * 32 * 32 and not info["builtin"]
    assert info["modalities"] == ["image"]


def test_streamed_batches_equal_in_memory_ones(stored, monkeypatch):
    held = load_dataset(stored, "train", 16)
    assert not is_streamed(held.images)
    monkeypatch.setenv("PRETEXT_IN_MEMORY_MB", "0")
    lazy = load_dataset(stored, "train", 16)
    assert is_streamed(lazy.images) and lazy.images.shape == held.images.shape
    index = torch.tensor([200, 3, 3, 57, 0, 239])
    assert torch.equal(lazy.images[index], held.images[index])
    assert torch.equal(lazy.images[10:40], held.images[10:40])
    assert torch.equal(lazy.labels, held.labels)


def test_training_streamed_equals_in_memory_bitwise(stored, monkeypatch, tmp_path):
    streamed(monkeypatch, False)
    held, held_points, _ = train(stored, tmp_path / "held", steps=8, log_every=1, knn_every=4)
    streamed(monkeypatch, True)
    lazy, lazy_points, _ = train(stored, tmp_path / "lazy", steps=8, log_every=1, knn_every=4)
    assert held.step == lazy.step == 8
    assert sorted(lazy_points) == list(range(0, 9))  # step 0: the online k-NN of the random net
    for step in range(0, 9):  # two epochs of 240 // 32 batches: the order wraps once
        assert lazy_points[step] == held_points[step], step
    assert [s for s in range(9) if "online_knn_top1" in lazy_points[s]] == [0, 4, 8]


def test_streamed_training_killed_and_resumed_equals_uninterrupted(stored, monkeypatch, tmp_path):
    streamed(monkeypatch, True)
    _, whole, _ = train(stored, tmp_path / "whole", steps=10, log_every=1)
    with pytest.raises(Killed):  # dies after step 7; the checkpoint at step 5 is kept
        train(stored, tmp_path / "cut", steps=10, log_every=1, kill_at=7)
    _, rest, _ = train(stored, tmp_path / "cut", steps=10, log_every=1)
    assert sorted(rest) == list(range(6, 11))
    for step in range(6, 11):
        assert rest[step] == whole[step], step


def test_knn_and_explorer_on_a_streamed_store(stored, monkeypatch, tmp_path):
    streamed(monkeypatch, False)
    _, _, config = train(stored, tmp_path / "run", steps=3)
    cls = get_method("simclr")

    def make():
        method = cls(config, {"num_classes": 3, "image_size": config.image_size})
        checkpoints.load(checkpoints.latest(tmp_path / "run"), method)
        return method

    results = {}
    for on in (False, True):
        streamed(monkeypatch, on)
        subject = Subject(f"run streamed={on}", config.image_size, None, make)
        results[on] = run_protocol("knn", subject, stored, resolve_params("knn", {}), None)
    assert results[True] == results[False]

    method = make().eval()
    encoder = Encoder(("run",), "run", {}, config.image_size, method.embed)
    sets = {}
    for on in (False, True):
        streamed(monkeypatch, on)
        sets[on] = build_embeddings(encoder, stored, "test", 50, "none", None)
    assert torch.equal(sets[True].features, sets[False].features)
    assert sets[True].indices == sets[False].indices and sets[True].knn_top1 is not None


def test_a_train_only_store_trains_and_evaluation_says_why_not(tmp_path, monkeypatch):
    write_store(tmp_path / "only", {"train": 100}, labelled=False)
    register_stored_dataset(TRAIN_ONLY, tmp_path / "only", {"store": 1})
    try:
        info = dataset_info(TRAIN_ONLY)
        assert (info["num_train"], info["num_test"], info["labelled"]) == (100, 0, False)
        streamed(monkeypatch, True)
        result, points, config = train(TRAIN_ONLY, tmp_path / "run", steps=3)
        assert result.status == "completed" and len(points)
        subject = Subject("pixels", 16, None, None)
        with pytest.raises(DatasetError, match="only a train split.*labelled test split"):
            run_protocol("knn", subject, TRAIN_ONLY, resolve_params("knn", {}), None)
        with pytest.raises(DatasetError, match="no test split"):
            load_dataset(TRAIN_ONLY, "test", 16)
    finally:
        unregister_dataset(TRAIN_ONLY)
        datasets.clear_memory_cache()


def test_a_store_registered_again_replaces_the_first(stored, tmp_path):
    assert len(load_dataset(stored, "train", 16)) == 240
    write_store(tmp_path / "other", {"train": 70, "test": 10})
    register_stored_dataset(NAME, tmp_path / "other", {"store": 1})
    assert dataset_info(NAME)["num_train"] == 70
    assert len(load_dataset(NAME, "train", 16)) == 70


def test_a_missing_store_registers_as_unavailable(tmp_path):
    register_stored_dataset("stream-gone", tmp_path / "nowhere", {"store": 1, "num_train": 9})
    try:
        info = dataset_info("stream-gone")
        assert not info["available"] and "add the dataset again" in info["reason"]
        with pytest.raises(DatasetError, match="not available"):
            load_dataset("stream-gone", "train", 16)
    finally:
        unregister_dataset("stream-gone")


@pytest.mark.parametrize("method", ["moco", "clip"])
def test_other_methods_stream_bitwise_too(method, tmp_path, monkeypatch):
    """MoCo fills its queue from the whole set at the start; CLIP keeps some rows (captions)."""
    write_store(tmp_path / "capt", {"train": 120, "test": 30}, captions=True)
    register_stored_dataset("stream-capt", tmp_path / "capt", {"store": 1})
    try:
        assert dataset_info("stream-capt")["modalities"] == ["image", "image-text"]
        points = {}
        for on in (False, True):
            streamed(monkeypatch, on)
            params = {"queue_size": 64, "bn_splits": 2} if method == "moco" else {}
            _, points[on], _ = train(
                "stream-capt", tmp_path / f"run{on}", method=method, steps=4, log_every=1, **params
            )
        assert points[True] == points[False] and len(points[True]) == 4
    finally:
        unregister_dataset("stream-capt")
        datasets.clear_memory_cache()


def test_a_store_row_registers_through_the_store_path(tmp_path):
    from engine.data.stored import register_user_datasets
    from storage.db import Store

    write_store(tmp_path / "rowed", {"train": 40, "test": 10})
    store = Store(tmp_path / "db.sqlite")
    store.save_user_dataset("stream-row", "image", str(tmp_path / "rowed"), "x", {"store": 1})
    try:
        register_user_datasets(store)
        info = dataset_info("stream-row")
        assert info["stored"] and (info["num_train"], info["num_test"]) == (40, 10)
    finally:
        unregister_dataset("stream-row")
