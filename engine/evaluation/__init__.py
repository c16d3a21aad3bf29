"""Evaluation of what a job learned: protocols on frozen features, fine-tuning, baselines, and
the collapse/health metrics the training loop logs.

    knn.py       weighted k-NN on cosine similarity (memory-chunked)
    linear.py    linear probe on standardised features, weight decay picked on a validation split
    fewshot.py   n labelled examples per class, repeated draws (nearest class mean)
    finetune.py  encoder + linear head end to end on a small share of the labels, vs scratch
    segmentation.py  a ViT's [CLS] attention mask against object masks (Jaccard; DINO table 7)
    reconstruction.py  an MAE's PSNR on hidden patches against two fills without a network
    health.py    embedding std, effective rank (RankMe), alignment and uniformity
    features.py  a job's checkpoint or a baseline -> features of a dataset split, cached
    runner.py    what `Studio.evaluate*` and `Studio.leaderboard` call; stores every result

This module imports nothing heavy: the names below are what the API validates against.
"""

from __future__ import annotations

# protocol -> one line for the UI and the CLI
PROTOCOLS: dict[str, str] = {
    "knn": "k-NN: cosine similarity, weighted vote of the 20 nearest (T 0.07); top-1 and top-5",
    "linear": "Linear probe on standardised frozen features (L-BFGS, weight decay chosen on a "
    "validation split)",
    "fewshot": "Few-shot: 1, 5 and 10 labelled images per class, nearest class mean, "
    "mean and std over 5 draws",
    "finetune": "Fine-tune encoder + linear head on 1% and 10% of the labels, against the same "
    "network trained from scratch (slow on a CPU: minutes)",
    "segmentation": "Segmentation by attention (ViTs, sets with object masks such as shapes): "
    "the mask keeping 60% of the last layer's [CLS] attention, Jaccard with the object; best "
    "head and mean over heads (DINO, table 7)",
    "reconstruction": "Reconstruction (MAE): PSNR on the hidden patches of the test split, "
    "against filling them with the image's mean colour or the nearest visible patch",
}
# Protocols that score a network's maps or pixels, not its features: no raw-pixels baseline.
DENSE_PROTOCOLS: tuple[str, ...] = ("segmentation", "reconstruction")
DEFAULT_EVALS: tuple[str, ...] = ("knn", "linear")
BASELINES: dict[str, str] = {
    "pixels": "the raw pixels of the images, flattened",
    "random": "the same architecture at random initialisation",
}
