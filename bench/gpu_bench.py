"""Images/s and GPU memory of three training steps on CUDA, with and without torch.compile.

    python bench/gpu_bench.py            # all three, eager then compiled
    python bench/gpu_bench.py simclr     # one of them

SimCLR ResNet-18 at 32 px (batch 512), MAE ViT-B/16 at 224 px (batch 128) and DINO ViT-S/16 at
224 px with multi-crop (2 x 224 + 8 x 96, batch 64). Each runs the loop's own pieces (the
method's step with its views on the GPU, bf16 autocast, TF32, fused AdamW, gradient clipping,
`after_step`) on random uint8 images already on the device, so the figure is the step, not a
dataset. Prints one line per run; exits 0 with one line on a machine without CUDA.
`bench/gpu_check.sh` calls it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.config import build_config
from engine.optim import build_optimizer, clip_gradients
from engine.registry import get_method
from engine.trainer import compile_networks

CASES = {
    "simclr": ("simclr", 32, 512, dict(backbone="resnet18", small_stem=True)),
    "mae": ("mae", 224, 128, dict(backbone="vit-base", patch_size=16)),
    "dino": (
        "dino",
        224,
        64,
        dict(
            backbone="vit-small",
            patch_size=16,
            num_local_crops=8,
            local_crop_size=96,
            out_dim=65536,
        ),
    ),
}
WARMUP, TIMED = 5, 20


def bench(case: str, compiled: bool) -> str:
    name, size, batch, params = CASES[case]
    cls = get_method(name)
    config = build_config(
        cls.Config,
        "paper",
        dict(params, image_size=size, batch_size=batch, precision="bf16", compile=compiled),
    )
    torch.manual_seed(0)
    method = cls(config, {"num_classes": 10, "image_size": size}).cuda()
    if method.channels_last:
        method = method.to(memory_format=torch.channels_last)
    if compiled:
        compile_networks(method)
    optimizer = build_optimizer(method, config)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device="cuda")
    torch.cuda.reset_peak_memory_stats()
    method.train()
    started = time.perf_counter()

    def step(number: int) -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _ = method({"images": images})
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(method, config)
        optimizer.step()
        method.after_step(number, WARMUP + TIMED)

    for number in range(1, WARMUP + 1):
        step(number)
    torch.cuda.synchronize()
    warm = time.perf_counter() - started
    tick = time.perf_counter()
    for number in range(WARMUP + 1, WARMUP + TIMED + 1):
        step(number)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - tick
    memory = torch.cuda.max_memory_allocated() / 2**30
    return (
        f"{case:7s} {size:3d} px batch {batch:4d} compile {'on ' if compiled else 'off'}: "
        f"{batch * TIMED / seconds:9.0f} images/s, {1000 * seconds / TIMED:7.1f} ms/step, "
        f"peak {memory:5.1f} GiB, first {WARMUP} steps {warm:5.1f} s"
    )


def main(argv: list[str]) -> int:
    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA device here; nothing to measure")
        return 0
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    for case in argv or list(CASES):
        for compiled in (False, True):
            try:
                print(bench(case, compiled), flush=True)
            except Exception as exc:  # noqa: BLE001 - one failing case must not hide the rest
                print(f"{case} compile {compiled}: FAILED {type(exc).__name__}: {exc}", flush=True)
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
