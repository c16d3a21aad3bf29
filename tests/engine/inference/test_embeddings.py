"""The embedding explorer's engine: projections (PCA recovers a known direction, t-SNE, UMAP),
the leave-one-out k-NN, the embeddings cache (counted calls), the point cap, the CSV round trip,
thumbnails, and a tiny trained job loaded from its checkpoint next to its random init."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engine import checkpoints
from engine.api import Studio
from engine.data.datasets import load_dataset
from engine.errors import JobError, SpecError
from engine.inference import embeddings as emb_module
from engine.inference import projections
from engine.inference.embeddings import Encoder, Explorer, parse_source, sample_rows
from engine.inference.runs import LRU, RunLoader
from engine.runs import new_method, resolve

TINY = {
    "steps": 2,
    "batch_size": 16,
    "image_size": 16,
    "warmup_steps": 1,
    "checkpoint_every": 1,
    "precision": "fp32",
    "health_every": 0,
}


# ---- projections ---------------------------------------------------------------------------
@pytest.mark.parametrize("dim", [3, 40])  # exact SVD below 9 dims, randomised SVD above
def test_pca_recovers_a_known_dominant_direction(dim):
    generator = torch.Generator().manual_seed(0)
    direction = torch.nn.functional.normalize(torch.randn(dim, generator=generator), dim=0)
    along = torch.randn(400, generator=generator) * 5.0  # the dominant factor
    x = along[:, None] * direction + 0.1 * torch.randn(400, dim, generator=generator) + 3.0
    coords = projections.pca(x)
    assert coords.shape == (400, 2) and coords.dtype == np.float32
    first = torch.from_numpy(coords[:, 0]).double()
    corr = torch.corrcoef(torch.stack([first, along.double()]))[0, 1]
    assert abs(corr) > 0.999
    assert coords[:, 0].var() > 100 * coords[:, 1].var()
    # Centred, and the same map twice (seeded, sign fixed).
    assert abs(coords.mean(axis=0)).max() < 1e-3
    np.testing.assert_array_equal(coords, projections.pca(x))


def test_pca_of_a_tiny_sample_pads_missing_directions():
    assert projections.pca(torch.ones(1, 5)).shape == (1, 2)
    coords = projections.pca(torch.tensor([[0.0], [1.0], [2.0]]))  # one feature
    assert coords.shape == (3, 2) and np.all(coords[:, 1] == 0)


def test_tsne_separates_two_blobs():
    x = torch.cat([torch.randn(30, 8), torch.randn(30, 8) + 20.0])
    coords = projections.project(x, "tsne", {"perplexity": 10})
    assert coords.shape == (60, 2) and np.isfinite(coords).all()
    a, b = coords[:30].mean(axis=0), coords[30:].mean(axis=0)
    spread = max(coords[:30].std(axis=0).max(), coords[30:].std(axis=0).max())
    assert np.linalg.norm(a - b) > 2 * spread


def test_umap_maps_and_the_warmup_is_off_in_tests():
    pytest.importorskip("umap")
    assert not projections.UMAP_WARMUP.enabled() and not projections.UMAP_WARMUP.start()
    assert "cold" in projections.UMAP_WARMUP.status()
    x = torch.cat([torch.randn(40, 6), torch.randn(40, 6) + 15.0])
    coords = projections.project(x, "umap", {"n_neighbors": 8, "min_dist": 0.2})
    assert coords.shape == (80, 2) and np.isfinite(coords).all()
    assert np.linalg.norm(coords[:40].mean(0) - coords[40:].mean(0)) > 1.0
    cube = projections.project(x, "umap", {"n_neighbors": 8}, dims=3)
    assert cube.shape == (80, 3) and np.linalg.norm(cube[:40].mean(0) - cube[40:].mean(0)) > 1.0


@pytest.mark.parametrize(
    "projection, params, words",
    [
        ("isomap", None, "unknown projection"),
        ("pca", {"perplexity": 3}, "unknown pca setting"),
        ("umap", {"n_neighbors": 1}, "at least 2"),
        ("umap", {"min_dist": 2}, "from 0 to 1"),
        ("tsne", {"perplexity": 0}, "positive"),
    ],
)
def test_bad_projection_settings_are_refused(projection, params, words):
    with pytest.raises(SpecError, match=words):
        projections.check_projection(projection, params)


def test_leave_one_out_knn():
    blobs = torch.cat(
        [
            torch.randn(50, 4) + torch.tensor([9.0, 0, 0, 0]),
            torch.randn(50, 4) + torch.tensor([0, 9.0, 0, 0]),
        ]
    )
    labels = torch.cat([torch.zeros(50), torch.ones(50)]).long()
    assert projections.leave_one_out_knn(blobs, labels, chunk=16) == 1.0
    # One point of each class alone: its only neighbour has the other label.
    pair = torch.tensor([[1.0, 0.0], [0.9, 0.1]])
    assert projections.leave_one_out_knn(pair, torch.tensor([0, 1])) == 0.0


def test_csv_round_trips():
    view = {
        "model": {"name": "job 1 @ step 2"},
        "points": {
            "index": [4, 7, 0],
            "x": [0.5, -1.25, 3e-4],
            "y": [2.0, 0.0, -7.5],
            "label": ["3", 'a, quoted "label"', "8"],
            "kind": ["image", "image", "text"],
            "text": ["a handwritten digit 3", "", "line one\nline two"],
        },
    }
    text = projections.maps_csv([view, dict(view, model={"name": "raw pixels"})])
    rows = projections.read_csv(text)
    assert rows["model"] == ["job 1 @ step 2"] * 3 + ["raw pixels"] * 3
    for name in ("index", "label", "kind", "text"):
        assert rows[name] == view["points"][name] * 2
    np.testing.assert_allclose(rows["x"], view["points"]["x"] * 2, rtol=1e-5)
    np.testing.assert_allclose(rows["y"], view["points"]["y"] * 2, rtol=1e-5)
    assert projections.maps_csv([{"model": {"name": "m"}, "points": rows}]).count("\n") > 3


# ---- the explorer with a counting encoder --------------------------------------------------
@pytest.fixture
def studio(tmp_path):
    return Studio(tmp_path / "home")


def counting_explorer(studio: Studio) -> tuple[Explorer, list[int]]:
    """An explorer whose every model is a fixed random projection of 16 px pixels, counting
    the images it embeds."""
    calls: list[int] = []
    weight = torch.randn(3 * 16 * 16, 8, generator=torch.Generator().manual_seed(0))

    def embed(images: torch.Tensor) -> torch.Tensor:
        calls.append(len(images))
        return (images.reshape(len(images), -1).float() / 255.0) @ weight

    explorer = studio.explorer
    encoder = Encoder(("fake",), "fake model", {"kind": "fake"}, 16, embed)
    explorer.resolve_source = lambda source: encoder
    explorer.source_key = lambda source: ("fake", source)
    return explorer, calls


def test_the_cache_returns_identical_embeddings_without_recomputing(studio):
    explorer, calls = counting_explorer(studio)
    first = studio.embeddings("m", "digits", samples=300)
    assert sum(calls) == 300 and first["features"].shape == (300, 8)
    again = studio.embeddings("m", "digits", samples=300)
    assert sum(calls) == 300  # nothing embedded again
    np.testing.assert_array_equal(first["features"], again["features"])
    assert first["indices"] == again["indices"] and first["labels"] == again["labels"]
    # Another projection reuses the embeddings too; another sample size does not.
    pca = studio.project("m", "digits", 300, "pca")
    tsne = studio.project("m", "digits", 300, "tsne", {"perplexity": 20})
    assert sum(calls) == 300 and explorer.embed_calls == 1
    assert pca["timing"]["embeddings_cached"] and tsne["timing"]["embeddings_cached"]
    assert pca["points"]["index"] == tsne["points"]["index"] == first["indices"]
    studio.project("m", "digits", 200, "pca")
    assert sum(calls) == 500 and explorer.embed_calls == 2


def test_a_map_has_the_same_rows_for_every_model_and_says_what_it_is(studio):
    explorer, _ = counting_explorer(studio)
    view = studio.project("m", "digits", 250, "pca", split="test")
    assert view["num_points"] == 250 and view["feature_dim"] == 8
    assert view["points"]["index"] == sample_rows(360, 250).tolist()
    assert set(view["points"]["label"]) <= set(view["class_names"])
    assert view["points"]["text"][0].startswith("a handwritten digit")
    assert 0.0 <= view["knn_top1"] <= 1.0
    # digits' test split holds 360 images: asking for more shows them all and says so.
    whole = studio.project("m", "digits", 1000, "pca", split="test")
    assert whole["num_points"] == 360 and not whole["capped"]
    assert "holds 360 images: all are shown" in whole["message"]


@pytest.mark.parametrize("projection, params", [("pca", None), ("tsne", {"perplexity": 10})])
def test_the_3d_view_is_the_same_projection_with_a_third_axis(studio, projection, params):
    explorer, calls = counting_explorer(studio)
    flat = studio.project("m", "digits", 120, projection, params)
    view = studio.project("m", "digits", 120, projection, params, dims=3)
    assert sum(calls) == 120  # the 3-D view reuses the embeddings
    assert view["dims"] == 3 and flat["dims"] == 2 and "z" not in flat["points"]
    assert len(view["points"]["z"]) == 120 and np.isfinite(view["points"]["z"]).all()
    assert view["points"]["index"] == flat["points"]["index"]
    if projection == "pca":  # the first two principal axes are the 2-D map's
        np.testing.assert_allclose(view["points"]["x"], flat["points"]["x"], rtol=1e-4, atol=1e-4)
        assert np.std(view["points"]["z"]) <= np.std(view["points"]["y"]) + 1e-6
    rows = projections.read_csv(studio.maps_csv([view]))
    np.testing.assert_allclose(rows["z"], view["points"]["z"], rtol=1e-5, atol=1e-6)
    with pytest.raises(SpecError, match="dims must be 2 or 3"):
        studio.project("m", "digits", 120, projection, params, dims=4)


def test_points_are_capped_with_a_message(studio, monkeypatch):
    counting_explorer(studio)
    monkeypatch.setitem(emb_module.MAX_POINTS, "tsne", 40)
    view = studio.project("m", "digits", 100, "tsne", {"perplexity": 5})
    assert view["num_points"] == 40 and "capped at 40" in view["message"] and view["capped"]
    with pytest.raises(SpecError, match="at most"):
        studio.embeddings("m", "digits", samples=10**6)


def test_thumbnails_are_small_and_only_for_the_rows_asked(studio):
    pictures = studio.embedding_thumbnails("shapes", "test", [0, 5, 99999])
    assert len(pictures) == 2 and pictures[0].shape == (64, 64, 3)
    assert pictures[0].dtype == np.uint8
    assert studio.embedding_thumbnails("digits", "train", [3])[0].shape == (32, 32, 3)


def test_model_names_are_parsed_and_unknown_ones_refused(studio):
    assert parse_source(" #3 ") == ("run", "3")
    assert parse_source("random:12") == ("random", "12")
    assert parse_source("pixels:16") == ("pixels", "16")
    assert parse_source("org/model") == ("hub", "org/model")
    with pytest.raises(SpecError):
        parse_source("  ")
    with pytest.raises(JobError, match="no job 7"):
        studio.embeddings("7", "digits", 10)
    with pytest.raises(SpecError, match="unknown method"):
        studio.embeddings("random:nonsense", "digits", 10)
    pixels = studio.project("pixels", "digits", 50, "pca")
    assert pixels["feature_dim"] == 3 * 32 * 32 and pixels["model"]["kind"] == "pixels"


def test_an_image_model_refuses_a_text_corpus(studio):
    counting_explorer(studio)
    with pytest.raises(SpecError, match="text corpus"):
        studio.embeddings("m", "captions", 10)


def test_lru_bounds_count_and_bytes():
    cache = LRU(max_items=2, max_bytes=100, size=len)
    cache.put("a", "x" * 10)
    cache.put("b", "x" * 10)
    cache.get("a")  # a is now the most recent
    cache.put("c", "x" * 10)
    assert cache.keys() == ["a", "c"]
    cache.put("d", "x" * 95)  # bytes: only the newest fits
    assert cache.keys() == ["d"]


# ---- a real (tiny) job ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    studio = Studio(tmp_path_factory.mktemp("home"))
    summary = studio.run_foreground(
        {"method": "simclr", "dataset": "digits", "params": dict(TINY, small_stem=True)}
    )
    assert summary["status"] == "completed"
    return studio, summary["job_id"]


def test_a_job_is_rebuilt_from_its_checkpoint_beside_its_random_init(trained):
    studio, job_id = trained
    values = [m["value"] for m in studio.embedding_models()]
    assert values == [str(job_id), f"random:{job_id}", "pixels"]
    job = studio.store.get_job(job_id)
    loaded = studio.explorer.loader.job(job)
    assert loaded.step == 2 and not loaded.method.training
    # The same weights as the checkpoint, built independently (from the dataset).
    spec, config = resolve(job.spec)
    reference = new_method(spec.method, config, spec.dataset)
    checkpoints.load(checkpoints.latest(Path(job.run_dir)), reference)
    reference.eval()
    trained_map = studio.project(str(job_id), "digits", 64, "pca")
    random_map = studio.project(f"random:{job_id}", "digits", 64, "pca")
    features = studio.embeddings(str(job_id), "digits", 64)["features"]
    images = load_dataset("digits", "train", 16).images[sample_rows(1437, 64)]
    with torch.no_grad():
        np.testing.assert_allclose(features, reference.embed(images).numpy(), atol=1e-4)
    assert trained_map["points"]["index"] == random_map["points"]["index"]
    assert trained_map["model"]["step"] == 2 and random_map["model"]["kind"] == "random"
    assert not np.allclose(
        features, studio.embeddings(f"random:{job_id}", "digits", 64)["features"]
    )
    # The loader caches the model; the key follows the checkpoint.
    assert studio.explorer.source_key(str(job_id)) == ("job", job_id, 2)
    assert studio.explorer.loader.job(job) is loaded


def test_a_running_job_is_not_explored(trained, tmp_path):
    studio, job_id = trained
    studio.store.update_job(job_id, status="running")
    try:
        with pytest.raises(JobError, match="running"):
            RunLoader().job(studio.store.get_job(job_id))
    finally:
        studio.store.update_job(job_id, status="completed")


# ---- text and image-text models ------------------------------------------------------------
@pytest.fixture(scope="module")
def language(tmp_path_factory):
    """A tiny CLIP job on shapes and a tiny BERT job on the captions corpus."""
    studio = Studio(tmp_path_factory.mktemp("home"))
    tiny = dict(TINY, backbone="tiny")
    clip = studio.run_foreground(
        {"method": "clip", "dataset": "shapes", "params": dict(tiny, patch_size=4, train_pairs=0)}
    )
    bert = studio.run_foreground(
        {"method": "bert", "dataset": "captions", "params": dict(tiny, context_length=32)}
    )
    assert clip["status"] == bert["status"] == "completed"
    return studio, clip["job_id"], bert["job_id"]


def test_clip_puts_images_and_their_texts_in_one_map(language):
    studio, clip, _ = language
    prompts = studio.project(str(clip), "shapes", 40, "pca", texts="prompts", split="test")
    kinds = prompts["points"]["kind"]
    assert kinds.count("image") == 40 and kinds.count("text") == 10  # one per class
    text_rows = [i for i, kind in enumerate(kinds) if kind == "text"]
    assert [prompts["points"]["label"][i] for i in text_rows] == prompts["class_names"]
    assert prompts["knn_top1"] is not None  # over the images only
    captions = studio.embeddings(str(clip), "shapes", 40, split="test", texts="captions")
    assert captions["kinds"].count("text") == 40
    assert captions["texts"][40:] == captions["texts"][:40]  # each image's own caption
    assert captions["labels"][40:] == captions["labels"][:40]
    with_captions = studio.project(str(clip), "shapes", 40, "pca", split="test", texts="captions")
    colours = with_captions["points"]["factors"]["color"]
    assert len(colours) == 80 and colours[40:] == colours[:40]
    assert prompts["points"]["factors"]["color"][40:] == [""] * 10
    assert set(prompts["factor_knn"]) >= {"color", "size", "background"}
    assert np.allclose(np.linalg.norm(captions["features"], axis=1), 1.0, atol=1e-4)


def test_a_language_model_embeds_sentences(language):
    studio, _, bert = language
    corpus = studio.project(str(bert), "captions", 30, "pca")
    assert corpus["num_points"] == 30 and set(corpus["points"]["kind"]) == {"text"}
    assert corpus["knn_top1"] is None  # a corpus has no labels
    # On an image dataset with captions, the captions are embedded, labelled by their image.
    captions = studio.project(str(bert), "shapes", 30, "pca", split="test")
    assert set(captions["points"]["kind"]) == {"text"} and captions["knn_top1"] is not None
    assert captions["points"]["text"][0].startswith("a ")
    with pytest.raises(SpecError, match="embeds images"):
        studio.project("pixels", "captions", 10)
