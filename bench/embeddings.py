"""The embedding explorer's costs at 2,000 and 10,000 points: embedding, PCA, UMAP cold and
warm, t-SNE, and the leave-one-out k-NN beside the map.

    python bench/embeddings.py [--sizes 2000,10000] [--image-size 32] [--threads 1]

Images are procedural `shapes` (any count), embedded by SimCLR's ResNet-18 (small stem) at
random initialisation, as the explorer embeds a run of the quick preset. "UMAP cold" is the
first UMAP of a process (umap-learn's import plus numba's compilation, what the app's
background warm-up pays once); "warm" is the same call again. Projections use
PRETEXT_PROJECTION_THREADS threads (--threads), as in the app. The wall times depend on what
else runs on the machine: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch


def timed(fn, *args, **kwargs):
    tick = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - tick


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="2000,10000")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for t-SNE and UMAP (PRETEXT_PROJECTION_THREADS)",
    )
    parser.add_argument(
        "--no-tsne-above",
        type=int,
        default=0,
        help="skip t-SNE above this many points (0: never skip)",
    )
    args = parser.parse_args()
    os.environ["PRETEXT_PROJECTION_THREADS"] = str(args.threads)
    os.environ["PRETEXT_UMAP_WARMUP"] = "0"

    from engine.data.datasets import resize_images
    from engine.data.shapes import generate_shapes
    from engine.inference import projections
    from engine.inference.embeddings import embed_in_batches
    from engine.inference.runs import RunLoader

    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"torch threads {torch.get_num_threads()}, projection threads {args.threads}, "
        f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    method = RunLoader().random_method("simclr", args.image_size).method
    umap_cold = True
    for n in sizes:
        batch = generate_shapes(n, seed=123)
        images = resize_images(batch.images, args.image_size)
        labels = batch.labels
        features, embed_s = timed(embed_in_batches, method.embed, images, n, None, "")
        _, pca_s = timed(projections.pca, features)
        _, knn_s = timed(projections.leave_one_out_knn, features, labels)
        rows = [
            (f"embedding (ResNet-18, {args.image_size} px)", embed_s),
            ("PCA", pca_s),
            ("k-NN leave-one-out", knn_s),
        ]
        if umap_cold:
            _, cold_s = timed(projections.umap, features)
            rows.append(("UMAP cold (import + compile + fit)", cold_s))
            umap_cold = False
        _, warm_s = timed(projections.umap, features)
        rows.append(("UMAP warm", warm_s))
        if not args.no_tsne_above or n <= args.no_tsne_above:
            _, tsne_s = timed(projections.tsne, features)
            rows.append(("t-SNE (Barnes-Hut, perplexity 30)", tsne_s))
        print(
            f"\n{n:,} points, {features.shape[1]}-d features "
            f"(load average {os.getloadavg()[0]:.1f})"
        )
        for name, seconds in rows:
            print(f"  {name:<38} {seconds:8.2f} s")


if __name__ == "__main__":
    main()
