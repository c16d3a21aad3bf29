"""2-D maps of embeddings (PCA, UMAP, t-SNE), their k-NN accuracy, and their CSV export.

PCA is a truncated SVD of the centred features: exact, deterministic and instant at any size
the explorer allows. UMAP (McInnes, Healy, Melville 2018, arXiv:1802.03426) comes from
umap-learn, whose import and first fit compile numba code for tens of seconds: `UMAP_WARMUP`
does both once in a background thread (started by the app, never at import), and a UMAP
request waits for it. t-SNE (van der Maaten and Hinton 2008) is scikit-learn's Barnes-Hut one.
All three are seeded, so one request gives one map. Each gives two or three components
(`DIMS`): the explorer's 3-D view is the same projection with a third axis, as TensorBoard's
projector draws it.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from engine import checks
from engine.errors import SpecError

log = logging.getLogger(__name__)

PROJECTIONS = ("pca", "umap", "tsne")
DIMS = (2, 3)  # components of a map: the 2-D maps, or the 3-D view
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "pca": {},
    # umap-learn's defaults; n_neighbors trades local detail (small) for global layout (large).
    "umap": {"n_neighbors": 15, "min_dist": 0.1},
    # 30 is scikit-learn's default; it must stay below the number of points.
    "tsne": {"perplexity": 30.0},
}
WARMUP_ENV = "PRETEXT_UMAP_WARMUP"  # "0" turns the background warm-up off (the tests do)
# Threads for t-SNE and UMAP (OpenMP, BLAS, numba). The web process shares its cores with the
# training workers, and spinning OpenMP threads on busy cores made a 60-point t-SNE take 117 s
# instead of 1.4 s here: one thread by default; raise it on a machine of its own.
THREADS_ENV = "PRETEXT_PROJECTION_THREADS"
SEED = 0


def check_projection(projection: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The projection's defaults updated with `params`; SpecError for unknown names/values."""
    if not isinstance(projection, str) or projection not in PROJECTIONS:
        raise SpecError(
            f"unknown projection {checks.shown(projection)}; choose one of: "
            f"{', '.join(PROJECTIONS)}"
        )
    defaults = DEFAULT_PARAMS[projection]
    checks.mapping(params or {}, "params")
    unknown = sorted(set(params or {}) - set(defaults))
    if unknown:
        raise SpecError(
            f"unknown {projection} setting(s) {', '.join(unknown)}; it knows: "
            f"{', '.join(defaults) or 'none'}"
        )
    out = {**defaults, **{k: v for k, v in (params or {}).items() if v is not None}}
    if projection == "umap":
        out["n_neighbors"] = checks.whole_number(out["n_neighbors"], "n_neighbors")
        out["min_dist"] = checks.number(out["min_dist"], "min_dist")
        if out["n_neighbors"] < 2:
            raise SpecError(f"n_neighbors must be at least 2, got {out['n_neighbors']}")
        if not 0.0 <= out["min_dist"] <= 1.0:
            raise SpecError(f"min_dist must be from 0 to 1, got {out['min_dist']}")
    if projection == "tsne":
        out["perplexity"] = checks.number(out["perplexity"], "perplexity")
        if out["perplexity"] <= 0:
            raise SpecError(f"perplexity must be positive, got {out['perplexity']}")
    return out


# ---- projections ---------------------------------------------------------------------------
@contextmanager
def projection_threads() -> Iterator[int]:
    """Cap the OpenMP/BLAS threads (and numba's, in this thread) while a projection runs."""
    from threadpoolctl import threadpool_limits

    wanted = max(1, int(os.environ.get(THREADS_ENV, "1") or 1))
    with threadpool_limits(wanted):
        yield wanted


def pca(features: Tensor | np.ndarray, dims: int = 2) -> np.ndarray:
    """(N, D) -> (N, dims): the centred features on their top principal directions. The sign of
    each direction is fixed (its largest loading positive), so the map does not flip."""
    x = torch.as_tensor(features, dtype=torch.float32)
    x = x - x.mean(dim=0, keepdim=True)
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], dims), dtype=np.float32)
    rank = min(x.shape)
    if rank <= 4 * dims:
        _, _, vh = torch.linalg.svd(x, full_matrices=False)  # vh: (rank, D)
        directions = vh[:dims]
    else:
        # Randomised SVD (Halko et al. 2011) with power iterations: the top directions to
        # float precision for a decaying spectrum, far faster than a full SVD at 10,000 x 3,072.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            _, _, v = torch.svd_lowrank(x, q=min(rank, dims + 8), niter=3)  # v: (D, q)
        directions = v[:, :dims].T  # (dims, D)
    signs = torch.sign(directions.gather(1, directions.abs().argmax(dim=1, keepdim=True)))
    directions = directions * torch.where(signs == 0, 1.0, signs)
    coords = x @ directions.T  # (N, dims)
    if coords.shape[1] < dims:  # fewer directions than asked (D or N below dims)
        coords = F.pad(coords, (0, dims - coords.shape[1]))
    return coords.float().numpy()


def check_dims(dims: Any) -> int:
    """2 or 3 components; SpecError otherwise."""
    if isinstance(dims, bool) or dims not in DIMS:
        raise SpecError(
            f"dims must be 2 or 3 (a 2-D map or the 3-D view), got {checks.shown(dims)}"
        )
    return int(dims)


def tsne(features: Tensor | np.ndarray, perplexity: float = 30.0, dims: int = 2) -> np.ndarray:
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float32)
    if x.shape[0] < 3:
        return pca(x, dims)
    # t-SNE needs perplexity < N; small samples get the largest that works.
    perplexity = min(float(perplexity), (x.shape[0] - 1) / 3.0)
    with projection_threads():
        return (
            TSNE(  # Barnes-Hut works up to three components
                n_components=dims,
                perplexity=perplexity,
                init="pca",
                random_state=SEED,
                learning_rate="auto",
            )
            .fit_transform(x)
            .astype(np.float32)
        )


def umap(
    features: Tensor | np.ndarray,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    wait_s: float | None = None,
    dims: int = 2,
) -> np.ndarray:
    """UMAP to `dims` components; waits for the warm-up (imports and compiles) when one is
    running."""
    UMAP_WARMUP.wait(wait_s)
    import umap as umap_learn

    x = np.asarray(features, dtype=np.float32)
    if x.shape[0] < dims + 2:  # UMAP's spectral start needs more points than components
        return pca(x, dims)
    n_neighbors = min(int(n_neighbors), x.shape[0] - 1)
    with projection_threads() as threads, warnings.catch_warnings():
        _numba_threads(threads)
        # "n_jobs overridden by setting random_state": intended, the map is seeded.
        warnings.simplefilter("ignore", UserWarning)
        reducer = umap_learn.UMAP(
            n_components=dims, n_neighbors=n_neighbors, min_dist=float(min_dist), random_state=SEED
        )
        return reducer.fit_transform(x).astype(np.float32)


def _numba_threads(wanted: int) -> None:
    """numba's thread count for the calling thread (it is thread-local), within its maximum."""
    import numba

    numba.set_num_threads(max(1, min(wanted, numba.config.NUMBA_NUM_THREADS)))


def project(
    features: Tensor | np.ndarray,
    projection: str = "pca",
    params: dict[str, Any] | None = None,
    dims: int = 2,
) -> np.ndarray:
    """(N, D) -> (N, dims) float32 with `projection` ("pca", "umap", "tsne"); dims 2 or 3."""
    settings = check_projection(projection, params)
    dims = check_dims(dims)
    if projection == "pca":
        return pca(features, dims)
    if projection == "umap":
        return umap(features, settings["n_neighbors"], settings["min_dist"], dims=dims)
    return tsne(features, settings["perplexity"], dims)


# ---- UMAP warm-up --------------------------------------------------------------------------
class UmapWarmup:
    """Import umap-learn and run one tiny fit in a background thread, once per process.

    `state` is "cold" (not started), "warming", "ready" or "failed: <why>"."""

    def __init__(self) -> None:
        self.state = "cold"
        self.seconds: float | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()

    def enabled(self) -> bool:
        return os.environ.get(WARMUP_ENV, "1").strip().lower() not in ("0", "false", "no", "off")

    def start(self) -> bool:
        """Start the warm-up unless it ran, runs, or is turned off; True when it started."""
        with self._lock:
            if self.state != "cold" or not self.enabled():
                return False
            self.state = "warming"
        threading.Thread(target=self._run, name="umap-warmup", daemon=True).start()
        return True

    def _run(self) -> None:
        tick = time.perf_counter()
        try:
            import umap as umap_learn

            sample = np.random.default_rng(SEED).normal(size=(64, 8)).astype(np.float32)
            with projection_threads() as threads, warnings.catch_warnings():
                _numba_threads(threads)
                warnings.simplefilter("ignore")
                umap_learn.UMAP(n_neighbors=5, random_state=SEED).fit_transform(sample)
            self.state = "ready"
        except Exception as error:  # a broken install must not take the app down
            log.exception("UMAP warm-up failed")
            self.state = f"failed: {error}"
        self.seconds = time.perf_counter() - tick
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a running warm-up ends (True when it did or none runs)."""
        if self.state != "warming":
            return True
        return self._done.wait(timeout)

    def status(self) -> str:
        if self.state == "warming":
            return "UMAP is warming up (importing umap-learn and compiling, 10-60 s once)"
        if self.state == "ready":
            return f"UMAP is ready (warmed up in {self.seconds:.0f} s)"
        if self.state.startswith("failed"):
            return f"UMAP warm-up {self.state}"
        return "UMAP is cold: the first map compiles it (10-60 s once)"


UMAP_WARMUP = UmapWarmup()


# ---- k-NN on the map's own points ----------------------------------------------------------
@torch.no_grad()
def leave_one_out_knn(
    features: Tensor, labels: Tensor, k: int = 20, temperature: float = 0.07, chunk: int = 1024
) -> float:
    """Top-1 accuracy of the weighted cosine k-NN vote (k 20, T 0.07, as engine.evaluation.knn)
    where each point is classified by the other points of the same sample."""
    n = features.shape[0]
    if n < 2:
        return float("nan")
    x = F.normalize(features.float(), dim=1)
    labels = labels.long()
    num_classes = int(labels.max()) + 1
    k = min(k, n - 1)
    hits = 0
    for start in range(0, n, chunk):
        sim = x[start : start + chunk] @ x.T  # (c, N)
        rows = torch.arange(sim.shape[0])
        sim[rows, rows + start] = float("-inf")  # a point does not vote for itself
        top_sim, top_idx = sim.topk(k, dim=1)  # (c, k)
        votes = torch.zeros(sim.shape[0], num_classes)
        votes.scatter_add_(1, labels[top_idx], (top_sim / temperature).exp())
        hits += int((votes.argmax(dim=1) == labels[start : start + chunk]).sum())
    return hits / n


# ---- CSV -----------------------------------------------------------------------------------
CSV_COLUMNS = ("model", "index", "x", "y", "label", "kind", "text")
CSV_COLUMNS_3D = ("model", "index", "x", "y", "z", "label", "kind", "text")


def to_csv(rows: dict[str, list]) -> str:
    """A map as CSV text: one line per point with CSV_COLUMNS (CSV_COLUMNS_3D when `rows` has
    a "z"; absent columns left empty)."""
    names = CSV_COLUMNS_3D if rows.get("z") else CSV_COLUMNS
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    count = len(rows["x"])
    columns = [rows.get(name) or [""] * count for name in names]
    for values in zip(*columns):
        writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in values])
    return out.getvalue()


def maps_csv(views: list[dict[str, Any]]) -> str:
    """Maps made by `Explorer.map` as one CSV; the `model` column tells them apart."""
    three = all("z" in view["points"] for view in views) and bool(views)
    names = CSV_COLUMNS_3D if three else CSV_COLUMNS
    rows: dict[str, list] = {name: [] for name in names}
    for view in views:
        points = view["points"]
        rows["model"] += [view["model"]["name"]] * len(points["x"])
        for name in names[1:]:
            rows[name] += list(points[name])
    return to_csv(rows)


def read_csv(text: str) -> dict[str, list]:
    """The inverse of `to_csv`: index as int, x, y (and z) as float, the rest as text."""
    reader = csv.DictReader(io.StringIO(text))
    three = "z" in (reader.fieldnames or [])
    rows: dict[str, list] = {name: [] for name in (CSV_COLUMNS_3D if three else CSV_COLUMNS)}
    for line in reader:
        rows["index"].append(int(line["index"]))
        for axis in ("x", "y", "z") if three else ("x", "y"):
            rows[axis].append(float(line[axis]))
        for name in ("model", "label", "kind", "text"):
            rows[name].append(line[name])
    return rows
