"""hardware.detect(): what the studio reports about this machine."""

import os

import torch

from engine import hardware
from engine.api import Studio


def test_detect_reports_cores_memory_and_process_limit():
    info = hardware.detect()
    assert info["cpu_cores"] == len(os.sched_getaffinity(0))
    assert info["memory_gb"] >= info["memory_available_gb"] > 0
    if info["cuda_devices"]:
        assert info["device"] == "cuda"
        assert info["max_processes"] == len(info["cuda_devices"])
    else:
        assert info["device"] == "cpu"
        assert info["max_processes"] == info["cpu_cores"]


def test_describe_names_cores_memory_and_gpus():
    info = {
        "cpu_cores": 16,
        "memory_gb": 128.0,
        "memory_available_gb": 100.0,
        "cuda_devices": [{"index": 0, "name": "NVIDIA H100", "memory_gb": 79.6}],
        "device": "cuda",
        "fast_bf16": True,
        "max_processes": 1,
    }
    assert hardware.describe(info) == (
        "16 CPU cores, 128 GiB memory, 1 CUDA device: NVIDIA H100 (79.6 GiB), native bf16"
    )
    cpu = dict(info, cuda_devices=[], device="cpu", fast_bf16=False, max_processes=16)
    assert hardware.describe(cpu).endswith("no GPU, bf16 emulated (auto precision runs fp32)")


def test_studio_hardware_is_detect(tmp_path):
    studio = Studio(tmp_path)
    assert studio.hardware()["cpu_cores"] == hardware.cpu_cores()


def test_auto_precision_autocasts_only_where_bf16_is_native(monkeypatch):
    assert not hardware.use_bf16("fp32", "cpu") and hardware.use_bf16("bf16", "cpu")
    for native in (True, False):
        monkeypatch.setattr(hardware, "fast_bf16", lambda device_type, n=native: n)
        assert hardware.use_bf16("auto", "cpu") is native
        assert hardware.use_bf16("bf16", "cpu")  # asked for, it is kept


def test_fast_bf16_follows_onednn_on_the_cpu(monkeypatch):
    hardware.fast_bf16.cache_clear()
    try:
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
        assert hardware.fast_bf16("cpu") is False
        hardware.fast_bf16.cache_clear()
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
        assert hardware.fast_bf16("cpu") is True
    finally:
        hardware.fast_bf16.cache_clear()


def test_the_trainer_runs_auto_precision_in_fp32_where_bf16_is_emulated(tmp_path, monkeypatch):
    """A job with precision "auto" on a CPU that emulates bf16 never enters bf16 autocast."""
    from engine.config import TrainSpec, build_config
    from engine.methods.simclr import SimCLR
    from engine.trainer import run_job

    seen: list[bool] = []
    real_step = SimCLR.training_step

    def step(self, batch):
        seen.append(torch.is_autocast_enabled("cpu"))
        return real_step(self, batch)

    class Sink:
        def metrics(self, step, values): ...
        def checkpoint(self, step, path): ...
        def flush(self): ...
        def started(self, first_step, total_steps): ...

    monkeypatch.setattr(SimCLR, "training_step", step)
    for native in (False, True):
        monkeypatch.setattr(hardware, "fast_bf16", lambda device_type, n=native: n)
        spec = TrainSpec(method="simclr", dataset="digits", preset="tiny", params={})
        config = build_config(SimCLR.Config, "tiny", {"steps": 2, "precision": "auto"})
        run_job(spec, config, tmp_path / f"run{native}", Sink(), lambda: False)
        assert seen and set(seen) == {native}
        seen.clear()


def test_a_bf16_run_embeds_in_fp32_where_bf16_is_emulated(monkeypatch):
    """Evaluation and the lenses embed a stored bf16 run under autocast only where bf16 is
    native; a run that asked for fp32 never autocasts."""
    from types import SimpleNamespace

    from engine.evaluation.features import embed_images

    class Probe(torch.nn.Module):
        def __init__(self, precision: str) -> None:
            super().__init__()
            self.config = SimpleNamespace(precision=precision)
            self.seen: list[bool] = []

        def embed(self, images):
            self.seen.append(torch.is_autocast_enabled("cpu"))
            return images.flatten(1).float()

    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    for native in (False, True):
        monkeypatch.setattr(hardware, "fast_bf16", lambda device_type, n=native: n)
        for precision, expected in (("bf16", native), ("auto", native), ("fp32", False)):
            probe = Probe(precision)
            assert embed_images(probe, images, batch_size=2).shape == (4, 12)
            assert probe.seen == [expected, expected], (native, precision)
