"""The CLIP and language lenses through the engine API on tiny runs the tests train
(tests/language_runs.py): zero-shot (the template ensemble against a hand computation),
retrieval (sorted scores, the embeddings cache reused), fill-mask (k distinct words, a text
without a mask refused), generation (repeatable for a seed), text-to-text (sentinel spans put
back), and every lens refusing a model of the wrong family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.api import Studio
from engine.inference.models import LensError
from engine.inference.text2text import split_spans, with_sentinels
from engine.inference.zero_shot import parse_ignored, parse_labels, parse_templates
from engine.prompts import attribute_prompts, project_out
from tests.language_runs import language_runs

RNG = np.random.default_rng(1)
PHOTO = RNG.integers(0, 256, (40, 56, 3), dtype=np.uint8)
CAPTION = "a small red [MASK] on a blue background"


@pytest.fixture(scope="module")
def runs():
    home, ids = language_runs()
    return Studio(home), ids


# ---- zero-shot ---------------------------------------------------------------------------
def test_zero_shot_probabilities_and_the_template_ensemble_by_hand(runs):
    from transformers import CLIPModel, CLIPProcessor

    from engine.inference.images import center_square, model_input

    studio, ids = runs
    labels, templates = ["star", "ring", "heart"], ["a {}", "a small {} on a background"]
    out = studio.lenses.zero_shot(PHOTO, ids["clip"], ", ".join(labels), "\n".join(templates))
    assert out["labels"] == labels and out["templates"] == templates
    probabilities = np.array(out["probabilities"])
    assert probabilities.shape == (3,) and (probabilities > 0).all()
    assert abs(probabilities.sum() - 1) < 1e-6
    assert out["ranking"] == list(np.argsort(-probabilities, kind="stable"))

    folder = studio.lenses.lens_model("zero_shot", ids["clip"]).folder
    model = CLIPModel.from_pretrained(folder, use_safetensors=True).eval()
    tokenizer = CLIPProcessor.from_pretrained(folder).tokenizer
    with torch.no_grad():
        per_template = []
        for template in templates:  # one template at a time, as a single-template pipeline
            tokens = tokenizer(
                [template.format(x) for x in labels], padding=True, return_tensors="pt"
            )
            text = model.get_text_features(**tokens).pooler_output
            per_template.append(text / text.norm(dim=-1, keepdim=True))
        ensemble = torch.stack(per_template).mean(dim=0)  # (C, D)
        ensemble = ensemble / ensemble.norm(dim=-1, keepdim=True)
        _, pixels = model_input(
            center_square(PHOTO),
            16,
            *studio.lenses.lens_model("zero_shot", ids["clip"]).image_stats,
        )
        image = model.get_image_features(pixel_values=pixels).pooler_output[0]
        image = image / image.norm()
        cosine = ensemble @ image
        expected = torch.softmax(model.logit_scale.exp() * cosine, dim=0)
    np.testing.assert_allclose(out["similarities"], cosine.numpy(), atol=1e-5)
    np.testing.assert_allclose(probabilities, expected.numpy(), atol=1e-5)


def test_project_out_removes_only_the_attribute_span_by_hand():
    classes = torch.tensor([[0.6, 0.8, 0.0], [0.6, 0.0, 0.8]])
    # Three values of an attribute that differ along x only (rank 1 once centred): x goes,
    # and no other direction with it.
    attributes = torch.tensor([[1.0, 0.2, 0.0], [0.5, 0.2, 0.0], [-1.0, 0.2, 0.0]])
    out = project_out(classes, attributes)
    torch.testing.assert_close(out, torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    # Two directions (x and z differ): what is left of a class is its y part, normalised.
    attributes = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(
        project_out(torch.tensor([[0.6, 0.48, 0.64]]), attributes), torch.tensor([[0.0, 1.0, 0.0]])
    )
    assert attribute_prompts(["star", "ring"], ["a {}", "a small {}"], ["red", "blue"]) == [
        "a red star",
        "a small red star",
        "a red ring",
        "a small red ring",
        "a blue star",
        "a small blue star",
        "a blue ring",
        "a small blue ring",
    ]


def test_zero_shot_ignoring_an_attribute_by_hand(runs):
    from transformers import CLIPModel, CLIPProcessor

    from engine.inference.images import center_square, model_input

    studio, ids = runs
    labels, templates, colours = (
        ["star", "ring", "heart"],
        ["a {}", "a small {}"],
        ["red", "blue", "green"],
    )
    plain = studio.lenses.zero_shot(PHOTO, ids["clip"], labels, templates)
    out = studio.lenses.zero_shot(PHOTO, ids["clip"], labels, templates, " red, blue,green ,red")
    assert out["ignored"] == colours and plain["ignored"] == []
    assert not np.allclose(out["similarities"], plain["similarities"])
    folder = studio.lenses.lens_model("zero_shot", ids["clip"]).folder
    model = CLIPModel.from_pretrained(folder, use_safetensors=True).eval()
    tokenizer = CLIPProcessor.from_pretrained(folder).tokenizer

    def ensemble(prompts, groups):
        tokens = tokenizer(prompts, padding=True, return_tensors="pt")
        text = model.get_text_features(**tokens).pooler_output
        text = (text / text.norm(dim=-1, keepdim=True)).view(groups, -1, text.shape[-1])
        mean = text.mean(dim=1)
        return mean / mean.norm(dim=-1, keepdim=True)

    with torch.no_grad():
        classes = ensemble([t.format(x) for x in labels for t in templates], 3)
        directions = ensemble(
            [t.format(f"{c} {x}") for c in colours for x in labels for t in templates], 3
        )
        centred = directions - directions.mean(dim=0)
        basis = torch.linalg.svd(centred.T.double(), full_matrices=False)[0][:, :2].float()
        classes = classes - classes @ basis @ basis.T  # the colours' plane, rank 2
        classes = classes / classes.norm(dim=-1, keepdim=True)
        assert (classes @ centred.T).abs().max() < 1e-5  # blind to the colours
        _, pixels = model_input(
            center_square(PHOTO),
            16,
            *studio.lenses.lens_model("zero_shot", ids["clip"]).image_stats,
        )
        image = model.get_image_features(pixel_values=pixels).pooler_output[0]
        cosine = classes @ (image / image.norm())
    np.testing.assert_allclose(out["similarities"], cosine.numpy(), atol=1e-5)
    with pytest.raises(LensError, match="at least two values"):
        studio.lenses.zero_shot(PHOTO, ids["clip"], labels, templates, "red")
    with pytest.raises(LensError, match="more than 2000"):
        studio.lenses.zero_shot(
            PHOTO,
            ids["clip"],
            [f"w{i}" for i in range(100)],
            [f"{{}} {i}" for i in range(10)],
            "red, blue, green",
        )
    assert parse_ignored("") == [] and parse_ignored(None) == []


def test_zero_shot_input_checks(runs):
    studio, ids = runs
    assert parse_labels(" cat, dog,, cat ") == ["cat", "dog"]
    assert parse_templates("") == ["a photo of a {}."]
    with pytest.raises(LensError, match="at least two"):
        studio.lenses.zero_shot(PHOTO, ids["clip"], "cat")
    with pytest.raises(LensError, match="exactly one"):
        studio.lenses.zero_shot(PHOTO, ids["clip"], "cat, dog", "a photo")
    with pytest.raises(LensError, match="no image"):
        studio.lenses.zero_shot(None, ids["clip"], "cat, dog")


# ---- retrieval ---------------------------------------------------------------------------
def test_retrieval_scores_sorted_and_dataset_embedded_once(runs):
    studio, ids = runs
    first = studio.lenses.retrieve(
        "a red star", ids["clip"], "shapes", k=5, split="test", samples=200
    )
    calls = studio.explorer.embed_calls
    second = studio.lenses.retrieve(
        "a blue ring", ids["clip"], "shapes", k=5, split="test", samples=200
    )
    assert studio.explorer.embed_calls == calls  # no recompute on the second query
    assert second["embeddings_cached"] and first["searched"] == second["searched"] == 200
    for out in (first, second):
        scores = out["scores"]
        assert len(scores) == 5 and scores == sorted(scores, reverse=True)
        assert all(-1 - 1e-6 <= s <= 1 + 1e-6 for s in scores)
        assert len(set(out["indices"])) == 5 and all(0 <= i < 1000 for i in out["indices"])
        assert all(p.dtype == np.uint8 and p.ndim == 3 and p.shape[0] >= 64 for p in out["images"])
        assert all(label in caption for label, caption in zip(out["labels"], out["captions"]))
    # The top score is the query's cosine with that image, recomputed without the lens.
    emb = studio.explorer.embeddings(ids["clip"], "shapes", 200, "test")
    from engine.inference.zero_shot import text_embeddings

    query = text_embeddings(studio.lenses.lens_model("retrieve", ids["clip"]), ["a blue ring"])[0]
    row = emb.indices.index(second["indices"][0])
    cosine = torch.nn.functional.normalize(emb.features[row], dim=0) @ query
    assert abs(float(cosine) - second["scores"][0]) < 1e-5


def test_retrieval_refuses_text_corpora_and_empty_queries(runs):
    studio, ids = runs
    with pytest.raises(LensError, match="text corpus"):
        studio.lenses.retrieve("a red star", ids["clip"], "captions")
    with pytest.raises(LensError, match="type a query"):
        studio.lenses.retrieve("  ", ids["clip"], "shapes")


# ---- fill-mask ---------------------------------------------------------------------------
def test_fill_mask_returns_k_distinct_words(runs):
    studio, ids = runs
    out = studio.lenses.fill_mask(CAPTION, ids["bert"], k=7)
    words = [p["token"] for p in out["predictions"]]
    assert len(words) == 7 == len(set(words))
    scores = [p["score"] for p in out["predictions"]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
    assert all("[" not in w for w in words)  # no special token offered
    for prediction in out["predictions"]:
        assert prediction["sequence"].startswith("a small red")
        assert "[MASK]" not in prediction["sequence"]
    same = studio.lenses.fill_mask(CAPTION.replace("[MASK]", "<mask>"), ids["bert"], k=7)
    assert same["predictions"] == out["predictions"]  # either spelling of the blank


def test_fill_mask_refuses_text_without_one_mask(runs):
    studio, ids = runs
    with pytest.raises(LensError, match="no mask"):
        studio.lenses.fill_mask("a small red star", ids["bert"])
    with pytest.raises(LensError, match="one at a time"):
        studio.lenses.fill_mask("a [MASK] red [MASK]", ids["bert"])


# ---- generation --------------------------------------------------------------------------
def test_generate_is_repeatable_for_a_seed(runs):
    studio, ids = runs
    settings = dict(max_new_tokens=12, temperature=1.0, top_k=0)
    first = studio.lenses.generate("a small red", ids["gpt"], seed=3, **settings)
    again = studio.lenses.generate("a small red", ids["gpt"], seed=3, **settings)
    assert first["continuation"] == again["continuation"]
    assert first["text"] == "a small red" + first["continuation"]
    assert 1 <= first["new_tokens"] <= 12 and not first["greedy"]
    others = {
        studio.lenses.generate("a small red", ids["gpt"], seed=s, **settings)["continuation"]
        for s in range(4, 8)
    }
    assert len(others | {first["continuation"]}) > 1  # the seed matters when sampling
    greedy = [
        studio.lenses.generate("a small red", ids["gpt"], 12, 0.0, 50, seed)["continuation"]
        for seed in (0, 1)
    ]
    assert greedy[0] == greedy[1]
    with pytest.raises(LensError, match="temperature"):
        studio.lenses.generate("a", ids["gpt"], 5, -1.0)


def test_concurrent_requests_give_the_sequential_answers(runs):
    """Web requests arrive on several threads: seeded samples stay seeded, and the shared
    tokenizers and models give every request its own answer."""
    from concurrent.futures import ThreadPoolExecutor

    studio, ids = runs
    jobs = [("generate", seed) for seed in range(4)] + [("fill_mask", k) for k in (2, 3, 4)]

    def answer(job):
        lens, value = job
        if lens == "generate":
            return studio.lenses.generate("a small", ids["gpt"], 8, 1.0, 0, value)["continuation"]
        predictions = studio.lenses.fill_mask(CAPTION, ids["bert"], value)["predictions"]
        return [p["token"] for p in predictions]

    sequential = [answer(job) for job in jobs]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(answer, jobs * 2)) == sequential * 2


# ---- text to text ------------------------------------------------------------------------
def test_text2text_puts_the_spans_back(runs, monkeypatch):
    studio, ids = runs
    lm = studio.lenses.lens_model("text2text", ids["t5"])
    tokenizer = lm.processor
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]
    sentinel = tokenizer.convert_tokens_to_ids
    written = [
        lm.model.config.decoder_start_token_id,
        sentinel("<extra_id_0>"),
        *encode("star"),
        sentinel("<extra_id_1>"),
        *encode("striped"),
        lm.model.config.eos_token_id,
    ]
    monkeypatch.setattr(lm.model, "generate", lambda **kwargs: torch.tensor([written]))
    out = studio.lenses.text2text("a small red [MASK] on a [MASK] background", ids["t5"])
    assert out["input"] == "a small red <extra_id_0> on a <extra_id_1> background"
    assert [s["text"] for s in out["spans"]] == ["star", "striped"]
    assert out["filled"] == "a small red star on a striped background"
    assert [fill for _, fill in out["parts"]] == [False, True, False, True, False]
    assert out["output"].startswith("<extra_id_0>") and out["hint"] is None


def test_text2text_on_the_trained_run(runs):
    studio, ids = runs
    out = studio.lenses.text2text(
        "a small red <extra_id_0> on a blue background", ids["t5"], num_beams=2, max_new_tokens=8
    )
    assert [s["sentinel"] for s in out["spans"]] == ["<extra_id_0>"]
    assert out["filled"] == f"a small red {out['spans'][0]['text']} on a blue background"
    plain = studio.lenses.text2text("a small red star", ids["t5"], 2, 8)
    assert plain["filled"] is None and "span filling" in plain["hint"]
    with pytest.raises(LensError, match="beams"):
        studio.lenses.text2text("a <extra_id_0>", ids["t5"], num_beams=0)


def test_sentinel_helpers():
    assert (
        with_sentinels("<extra_id_0> a [mask] b <MASK>")
        == "<extra_id_0> a <extra_id_1> b <extra_id_2>"
    )

    class Decode:
        def decode(self, ids, skip_special_tokens=True):
            return " ".join(str(i) for i in ids)

    spans = split_spans([7, 100, 1, 2, 101, 3, 100, 9], {100: 0, 101: 1}, Decode())
    assert spans == {0: "1 2", 1: "3"}  # text before the first sentinel and repeats dropped


# ---- families and pickers ----------------------------------------------------------------
@pytest.mark.parametrize(
    "call, wrong, expected",
    [
        (lambda s, m: s.lenses.zero_shot(PHOTO, m, "a, b"), "bert", "needs a CLIP model"),
        (lambda s, m: s.lenses.retrieve("a star", m, "shapes"), "gpt", "needs a CLIP model"),
        (lambda s, m: s.lenses.fill_mask(CAPTION, m), "t5", "needs a masked language model"),
        (lambda s, m: s.lenses.generate("a", m), "bert", "needs a causal language model"),
        (
            lambda s, m: s.lenses.text2text("a <extra_id_0>", m),
            "clip",
            "needs an encoder-decoder T5",
        ),
    ],
)
def test_each_lens_refuses_the_wrong_family(runs, call, wrong, expected):
    studio, ids = runs
    with pytest.raises(LensError, match=expected):
        call(studio, ids[wrong])


def test_pickers_list_only_runs_of_the_fitting_method(runs):
    studio, ids = runs
    for lens, method, hub_id in [
        ("zero_shot", "clip", "openai/clip-vit-base-patch32"),
        ("retrieve", "clip", "openai/clip-vit-base-patch32"),
        ("fill_mask", "bert", "bert-base-uncased"),
        ("generate", "gpt", "gpt2"),
        ("text2text", "t5", "t5-small"),
    ]:
        values = [c["value"] for c in studio.lenses.lens_models(lens)]
        assert values == [ids[method], hub_id], lens
