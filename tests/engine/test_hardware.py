"""hardware.detect(): what the studio reports about this machine."""

import os

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
        "max_processes": 1,
    }
    assert hardware.describe(info) == (
        "16 CPU cores, 128 GiB memory, 1 CUDA device: NVIDIA H100 (79.6 GiB)"
    )
    cpu = dict(info, cuda_devices=[], device="cpu", max_processes=16)
    assert hardware.describe(cpu).endswith("no GPU")


def test_studio_hardware_is_detect(tmp_path):
    studio = Studio(tmp_path)
    assert studio.hardware()["cpu_cores"] == hardware.cpu_cores()
