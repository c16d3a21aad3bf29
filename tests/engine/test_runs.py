"""engine/runs.py: a stored spec resolved once (worker, validate, evaluation), and a run reopened
from the constructor inputs its checkpoint recorded: the very method that trained, without
loading the dataset; checkpoints older than that record still open through their job."""

import dataclasses
import shutil
from types import SimpleNamespace

import pytest
import torch

from engine import checkpoints, runs, trainer, worker
from engine.api import Studio
from engine.config import TrainSpec
from engine.errors import JobError
from engine.methods.clip import CLIP
from engine.registry import get_method, list_methods
from tests.conftest import TINY


class Sink:
    def started(self, first_step, total_steps):
        pass

    def metrics(self, step, values):
        pass

    def checkpoint(self, step, path):
        pass

    def flush(self):
        pass


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny runs on a shared 2-core machine
    yield
    torch.set_num_threads(threads)


def train(tmp_path_factory, method, dataset, **params):
    """A tiny run; returns (run folder, spec, the trained method as the trainer left it)."""
    built = []
    build = trainer.build_method

    def keep(*args):
        built.append(build(*args))
        return built[-1]

    run_dir = tmp_path_factory.mktemp(method)
    spec, config = runs.resolve(
        TrainSpec(method, dataset, seed=1, params=dict(TINY, steps=6, **params))
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "build_method", keep)
        result = trainer.run_job(spec, config, run_dir, Sink(), lambda: False)
    assert result.status == "completed"
    return run_dir, spec, built[0].eval()


@pytest.fixture(scope="module")
def simclr_run(tmp_path_factory):
    return train(tmp_path_factory, "simclr", "digits", small_stem=True)


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    return train(
        tmp_path_factory,
        "clip",
        "shapes",
        backbone="tiny",
        patch_size=4,
        train_pairs=200,
        zero_shot_every=3,
    )


def images(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=generator)


def same_embeddings(trained, reopened):
    if reopened.channels_last:  # the trainer converted its method; conv kernels follow
        reopened.to(memory_format=torch.channels_last)
    return torch.equal(trained.embed(images()), reopened.embed(images()))


def test_an_image_run_reopens_as_the_method_that_trained(simclr_run):
    run_dir, spec, trained = simclr_run
    rng = torch.get_rng_state()
    method, info = runs.open_run(run_dir)
    assert torch.equal(rng, torch.get_rng_state())  # the init is drawn from a forked RNG
    assert (info.method, info.step, info.rebuilt_from) == ("simclr", 6, "checkpoint")
    assert info.config == runs.resolve(spec)[1] and not method.training
    assert same_embeddings(trained, method)
    earlier, info = runs.open_run(run_dir, step=5)
    assert info.step == 5 and not same_embeddings(trained, earlier)
    with pytest.raises(JobError, match="no checkpoint of step 4"):
        runs.open_run(run_dir, step=4)


def test_clip_reopens_without_loading_its_dataset(clip_run, monkeypatch):
    run_dir, _, trained = clip_run

    def refuse(*args, **kwargs):
        raise AssertionError("reopening a CLIP run loaded its dataset")

    monkeypatch.setattr(CLIP, "load_data", classmethod(refuse))
    method, info = runs.open_run(run_dir)
    assert info.rebuilt_from == "checkpoint"
    assert same_embeddings(trained, method)
    assert method.data_info["vocab_size"] == trained.data_info["vocab_size"]
    assert (
        method.tokenizer("a red star")["input_ids"] == trained.tokenizer("a red star")["input_ids"]
    )
    assert torch.equal(
        method.class_embeddings(["star", "heart"]), trained.class_embeddings(["star", "heart"])
    )
    # What only training uses comes back too: the held-out images of the zero-shot log.
    assert torch.equal(method.zero_shot_images, trained.zero_shot_images)


@pytest.mark.parametrize("name", list_methods())
def test_every_method_reopens_from_its_checkpoint_alone(name, tmp_path, monkeypatch):
    """The constructor record round-trips each method's data_info (tokenizers, tensors such
    as BEiT's codebook, lists such as colorization's prior): same weights and buffers, same
    features, and no dataset loaded."""
    cls = get_method(name)
    params = dict(TINY, train_pairs=200) if name == "clip" else dict(TINY)
    spec, config = runs.resolve(TrainSpec(name, cls.default_dataset, params=params))
    torch.manual_seed(0)
    data = cls.load_data(spec.dataset, config, tmp_path)
    method = cls(config, data.info).eval()
    optimizer = torch.optim.SGD(method.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    checkpoints.save(
        tmp_path,
        1,
        method,
        optimizer,
        scheduler,
        torch.Generator(),
        torch.empty(0, dtype=torch.long),
    )
    monkeypatch.setattr(cls, "load_data", classmethod(lambda *a, **k: pytest.fail("loaded")))
    reopened, info = runs.open_run(tmp_path)
    assert (info.method, info.step, info.config) == (name, 1, config)
    assert set(reopened.data_info) == set(method.data_info)
    tensors = dict([*reopened.named_parameters(), *reopened.named_buffers()])
    for key, value in [*method.named_parameters(), *method.named_buffers()]:
        assert torch.equal(value, tensors[key]), key  # non-persistent buffers too
    probe = data.tensors["input_ids" if cls.modality == "text" else "images"][:4]
    assert torch.equal(reopened.embed(probe), method.embed(probe))


def test_a_checkpoint_without_its_constructor_record_opens_through_its_job(simclr_run, tmp_path):
    run_dir, spec, trained = simclr_run
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    for checkpoint in (old / "checkpoints").glob("step_*"):
        (checkpoint / checkpoints.CONSTRUCTOR_FILE).unlink()  # as saved before the record
    job = SimpleNamespace(id=7, run_dir=str(old), spec=spec.to_dict())
    method, info = runs.open_run(job)
    assert (info.rebuilt_from, info.job_id, info.step) == ("dataset", 7, 6)
    assert same_embeddings(trained, method)
    with pytest.raises(JobError, match="through its job"):
        runs.open_run(old)


def test_the_worker_and_evaluation_go_through_engine_runs(tmp_path, monkeypatch):
    resolved, opened = [], []
    resolve, open_run = runs.resolve, runs.open_run
    monkeypatch.setattr(worker, "resolve", lambda spec: resolved.append(spec) or resolve(spec))
    monkeypatch.setattr(
        runs, "open_run", lambda run, *a, **k: opened.append(run.id) or open_run(run, *a, **k)
    )
    studio = Studio(tmp_path)
    job_id = studio.run_foreground(
        {
            "method": "simclr",
            "dataset": "digits",
            "params": dict(TINY, steps=3, small_stem=True, augmentation="auto"),
        }
    )["job_id"]
    job = studio.store.get_job(job_id)
    assert resolved == [job.spec]
    config = resolve(job.spec)[1]
    assert config.augmentation == "natural"  # "auto" resolved, as validate stored it
    assert job.config == dataclasses.asdict(config)
    studio.evaluate(job_id, "knn")
    assert opened == [job_id]
