#!/usr/bin/env bash
# The GPU check of issue #16: on a machine with CUDA, run the CUDA-marked tests and print
# images/s and peak GPU memory for SimCLR ResNet-18 (32 px, batch 512), MAE ViT-B/16 (224 px,
# batch 128) and DINO ViT-S/16 (224 px, multi-crop), each without and with torch.compile
# (bench/gpu_bench.py). Without CUDA it says so in one line and exits 0.
#
#   bash bench/gpu_check.sh            # from the repository root, venv active
set -u
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device on this machine; nothing to check"
    exit 0
fi
export HF_HUB_OFFLINE=1
"$PYTHON" -c "import torch; print('#', torch.cuda.get_device_name(), 'x', torch.cuda.device_count())"
status=0
"$PYTHON" -m pytest -q -m cuda tests || status=$?
"$PYTHON" bench/gpu_bench.py "$@" || status=$?
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>/dev/null || true
exit $status
