"""k-NN at scale: a 50,000-row bank and 10,000 queries on this CPU, memory-chunked.

    python bench/eval_knn.py [--bank 50000] [--queries 10000] [--dim 512]

Prints the wall time and the peak resident memory of the process: the full similarity matrix
would be bank x queries x 4 bytes (2 GB at the defaults); the chunked scan holds one
(1024, 20 + 8192) block at a time.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from engine.evaluation.knn import knn_evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bank", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(args.classes, args.dim, generator=g)
    bank_y = torch.randint(0, args.classes, (args.bank,), generator=g)
    query_y = torch.randint(0, args.classes, (args.queries,), generator=g)
    bank = centres[bank_y] + 2.0 * torch.randn(args.bank, args.dim, generator=g)
    queries = centres[query_y] + 2.0 * torch.randn(args.queries, args.dim, generator=g)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tick = time.perf_counter()
    result = knn_evaluate(bank, bank_y, queries, query_y, args.classes)
    seconds = time.perf_counter() - tick
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    full = args.bank * args.queries * 4 / 2**20
    print(
        f"k-NN {args.queries} queries x {args.bank} bank x {args.dim} dims: {seconds:.1f} s, "
        f"top-1 {result['top1']:.3f}; peak RSS {peak:.0f} MB ({peak - before:+.0f} MB over "
        f"the data); the full similarity matrix alone would be {full:.0f} MB"
    )


if __name__ == "__main__":
    main()
