"""Training throughput per method, bf16 autocast against fp32, on this machine.

    python bench/train_step.py [--methods simclr,mae] [--steps 12] [--preset quick]

Prints ms per step and images per second for each method and precision, and the bf16/fp32
ratio: the measurement behind each method's `precision` default.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from engine.config import build_config
from engine.optim import build_optimizer
from engine.registry import get_method, list_methods


def measure(name: str, preset: str, precision: str, steps: int, warmup: int = 3) -> float:
    """Seconds per optimizer step (median of `steps` after `warmup`)."""
    torch.manual_seed(0)
    config = build_config(get_method(name).Config, preset, {"precision": precision})
    cls = get_method(name)
    data = cls.load_data(cls.default_dataset, config)
    method = get_method(name)(config, data.info)
    if method.channels_last:
        method = method.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(method, config)
    times = []
    for i in range(warmup + steps):
        index = torch.randint(0, len(data), (config.batch_size,))
        batch = {key: tensor[index] for key, tensor in data.tensors.items()}
        tick = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss, _ = method(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - tick)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--methods", default=",".join(list_methods()))
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, preset {args.preset}")
    print(
        f"{'method':<10}{'batch':>6}{'px':>5}{'fp32 ms':>10}{'bf16 ms':>10}"
        f"{'fp32 img/s':>12}{'bf16 img/s':>12}{'bf16 speedup':>14}"
    )
    for name in args.methods.split(","):
        config = build_config(get_method(name).Config, args.preset, {})
        fp32 = measure(name, args.preset, "fp32", args.steps)
        bf16 = measure(name, args.preset, "bf16", args.steps)
        b = config.batch_size
        print(
            f"{name:<10}{b:>6}{config.image_size:>5}{fp32 * 1e3:>10.0f}{bf16 * 1e3:>10.0f}"
            f"{b / fp32:>12.0f}{b / bf16:>12.0f}{fp32 / bf16:>13.2f}x"
        )


if __name__ == "__main__":
    main()
