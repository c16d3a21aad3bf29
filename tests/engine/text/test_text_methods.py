"""The language and image-text methods: a few steps each, then the run folder loads offline
with plain transformers (pipelines, from_pretrained) and through engine.hub."""

import json
import os

import pytest
import torch
from PIL import Image

from engine import checkpoints
from engine.config import TrainSpec, build_config
from engine.data import text
from engine.registry import get_method
from engine.trainer import run_job
from tests.conftest import TINY


class Sink:
    def __init__(self):
        self.points = []

    def started(self, first_step, total_steps):
        pass

    def metrics(self, step, values):
        self.points.append((step, values))

    def checkpoint(self, step, path):
        pass

    def flush(self):
        pass


def train(name, tmp_path_factory, **params):
    run_dir = tmp_path_factory.mktemp(name)
    spec = TrainSpec(
        name,
        get_method(name).default_dataset,
        params=dict(TINY, steps=8, backbone="tiny", sample_every=4, **params),
    )
    if name == "clip":
        spec.params.pop("sample_every")
        spec.params.update(zero_shot_every=4, train_pairs=600)  # 600 freshly rendered pairs
    config = build_config(get_method(name).Config, "quick", spec.params)
    sink = Sink()
    result = run_job(spec, config, run_dir, sink, should_stop=lambda: False)
    assert result.status == "completed"
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    return run_dir, checkpoints.latest(run_dir) / "pretrained", sink.points


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory):
    return train("bert", tmp_path_factory, context_length=32)


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    return train("gpt", tmp_path_factory, context_length=32)


def test_bert_fill_mask_pipeline(bert_run):
    from transformers import pipeline

    run_dir, folder, points = bert_run
    assert {"masked_acc", "perplexity"} <= set(points[-1][1])
    fill = pipeline("fill-mask", model=str(folder))
    out = fill("a small red [MASK] on a blue background", top_k=5)
    vocabulary = set(" ".join(text.corpus_texts("captions")).replace(",", " , ").split())
    assert len(out) == 5 and all(o["token_str"].strip() in vocabulary | {","} for o in out)
    assert abs(sum(o["score"] for o in out) - 1) < 1  # probabilities


def test_gpt_text_generation_pipeline_and_samples(gpt_run):
    from transformers import pipeline

    run_dir, folder, points = gpt_run
    assert "perplexity" in points[-1][1]
    generate = pipeline("text-generation", model=str(folder))
    out = generate("a small red", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    assert out.startswith("a small red") and len(out) > len("a small red")
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [4, 8] and all(
        isinstance(s["text"], str) for s in samples
    )
    from engine.methods._text import read_samples

    assert [s["step"] for s in read_samples(run_dir, since_step=4)] == [8]


def test_t5_generates_from_a_corrupted_caption(tmp_path_factory):
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    run_dir, folder, points = train("t5", tmp_path_factory, context_length=32)
    model = T5ForConditionalGeneration.from_pretrained(folder, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer("a small red <extra_id_0> on a blue background", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=6)
    assert isinstance(tokenizer.decode(out[0]), str) and out.shape[1] > 1
    sample = json.loads((run_dir / "samples.jsonl").read_text().splitlines()[-1])
    assert "<extra_id_0>" in sample["input"] and sample["target"].startswith("<extra_id_0>")


def test_clip_zero_shot_pipeline_and_processor(tmp_path_factory):
    from transformers import CLIPModel, CLIPProcessor, pipeline

    from engine.data import shapes

    run_dir, folder, points = train("clip", tmp_path_factory, lr=3e-4)
    accuracies = [v["zero_shot_acc"] for _, v in points if "zero_shot_acc" in v]
    assert len(accuracies) == 2 and all(0 <= a <= 1 for a in accuracies)
    seen = [v["zero_shot_seen_acc"] for _, v in points if "zero_shot_seen_acc" in v]
    assert len(seen) == 2 and all(0 <= a <= 1 for a in seen)  # the trained pairs, beside
    blind = [
        v["zero_shot_colour_blind_acc"] for _, v in points if "zero_shot_colour_blind_acc" in v
    ]  # and the held-out ones, colours ignored
    assert len(blind) == 2 and all(0 <= a <= 1 for a in blind)
    assert all(v["temperature"] >= 0.01 - 1e-6 for _, v in points)  # clamp: scale <= 100
    model = CLIPModel.from_pretrained(folder, use_safetensors=True)
    processor = CLIPProcessor.from_pretrained(folder)
    # CLIP pools the text at the tokenizer's real end-of-text token.
    assert model.config.text_config.eos_token_id == processor.tokenizer.eos_token_id
    batch = shapes.generate_shapes(2, seed=7)
    image = Image.fromarray(batch.images[0].permute(1, 2, 0).numpy())
    classify = pipeline("zero-shot-image-classification", model=str(folder))
    out = classify(
        image,
        candidate_labels=list(shapes.SHAPE_NAMES[:4]),
        hypothesis_template="a {} on a background",
    )
    assert sorted(o["label"] for o in out) == sorted(shapes.SHAPE_NAMES[:4])
    assert abs(sum(o["score"] for o in out) - 1) < 1e-4
    # Different captions embed differently (a wrong eos id would pool position 0 for all).
    tokens = processor.tokenizer(["a red star", "a blue ring"], padding=True, return_tensors="pt")
    with torch.no_grad():
        feats = model.get_text_features(**tokens)
    feats = feats if isinstance(feats, torch.Tensor) else feats.pooler_output
    assert not torch.allclose(feats[0], feats[1])


def test_hub_loads_run_folders_and_refuses_unknown_offline(bert_run, gpt_run):
    import time

    from engine import hub

    run_dir, folder, _ = bert_run
    for source in (run_dir, folder, folder.parent):
        model, tokenizer = hub.load(source)
        assert type(model).__name__ == "BertForMaskedLM" and tokenizer.mask_token == "[MASK]"
    model, tokenizer = hub.load(gpt_run[0])
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert hub.hub_reachable() is False  # HF_HUB_OFFLINE=1 in tests
    tick = time.monotonic()
    with pytest.raises(hub.HubError, match="offline"):
        hub.load("some-org/not-a-cached-model")
    assert time.monotonic() - tick < 15  # no retry loop (generous: shared CPU)
    with pytest.raises(hub.HubError, match="no run folder"):
        hub.load("987654", home=run_dir)


def test_clip_draws_one_of_each_images_captions(tmp_path):
    from engine.data import shapes
    from engine.methods.clip import CLIP

    batch = shapes.generate_shapes(4, seed=3)
    for i, label in enumerate(batch.labels.tolist()):
        name = shapes.SHAPE_NAMES[label]
        variants = shapes.caption_variants(name, batch.factors, i)
        assert all(v.startswith("a ") and name in v for v in variants)  # each names the shape
        assert len(set(variants)) == len(variants) and batch.captions[i] not in variants
    config = build_config(CLIP.Config, "quick", dict(TINY, backbone="tiny", train_pairs=0))
    data = CLIP.load_data("shapes", config, tmp_path)
    ids, mask = data.tensors["input_ids"], data.tensors["attention_mask"]
    assert ids.ndim == 3 and ids.shape[:2] == (len(data), 7) and mask.shape == ids.shape
    tokenizer = data.info["tokenizer"]
    row = tokenizer.batch_decode(ids[0], skip_special_tokens=True)
    assert len(set(row)) == 7  # the full caption first ("a size colour shape on ..., place")
    assert len(row[0].split()) > max(len(r.split()) for r in row[1:]) and "," in row[0]
    method = CLIP(config, data.info)
    torch.manual_seed(0)
    loss, _ = method.training_step({k: v[:8] for k, v in data.tensors.items()})
    assert torch.isfinite(loss)
    # A step's captions are cut to the longest drawn: the same text embeddings, less width.
    torch.manual_seed(1)
    _, ids, mask = method.draw_pairs({k: v[:8] for k, v in data.tensors.items()})
    assert ids.shape[1] == mask.sum(dim=1).max() < data.tensors["input_ids"].shape[2]
    extra = data.tensors["input_ids"].shape[2] - ids.shape[1]
    padded = torch.nn.functional.pad(ids, (0, extra), value=tokenizer.pad_token_id)
    method.model.eval()
    with torch.no_grad():
        cut = method.model.get_text_features(input_ids=ids, attention_mask=mask)
        full = method.model.get_text_features(
            input_ids=padded, attention_mask=torch.nn.functional.pad(mask, (0, extra))
        )
    cut, full = (t if isinstance(t, torch.Tensor) else t.pooler_output for t in (cut, full))
    assert torch.allclose(cut, full, atol=1e-5)
    # Zero-shot blind to colour: the class prompts have no part along the colours' differences.
    colours = data.info["colour_words"]
    assert colours == list(shapes.PALETTE)
    blind = method.class_embeddings(method.class_names, ignore=colours)
    from engine.methods.clip import TEMPLATES

    with torch.no_grad():
        per_colour = []
        for c in colours:  # every prompt "a red circle", "a small red circle", ... normalised
            tokens = tokenizer(
                [t.format(f"{c} {n}") for n in method.class_names for t in TEMPLATES],
                padding=True,
                return_tensors="pt",
            )
            text = method.model.get_text_features(**tokens)
            text = text if isinstance(text, torch.Tensor) else text.pooler_output
            per_colour.append(torch.nn.functional.normalize(text, dim=-1).mean(dim=0))
    directions = torch.nn.functional.normalize(torch.stack(per_colour), dim=-1)
    assert (blind @ (directions - directions.mean(dim=0)).T).abs().max() < 1e-4
    assert not torch.allclose(blind, method.class_embeddings(method.class_names))
    off = build_config(
        CLIP.Config, "quick", dict(TINY, backbone="tiny", caption_variants=False, train_pairs=0)
    )
    assert CLIP.load_data("shapes", off, tmp_path / "off").tensors["input_ids"].shape[1] == 1


def test_clip_grayscale_pairs_grey_images_with_captions_naming_no_colour(tmp_path):
    from engine.data import shapes
    from engine.data.views import grey
    from engine.methods.clip import CLIP

    pixels = torch.tensor(
        [[255, 0, 0], [0, 255, 0], [0, 0, 255], [200, 200, 200]], dtype=torch.uint8
    ).T.reshape(1, 3, 2, 2)
    # ITU-R 601 luma as torchvision weighs it: red 76, green 150, blue 29; grey stays grey.
    assert grey(pixels)[0, :, 0, 0].tolist() == [76] * 3
    assert grey(pixels)[0, 0].flatten().tolist() == [76, 150, 29, 200]
    colours = set(shapes.BACKGROUND_PALETTE)
    batch = shapes.generate_shapes(6, seed=4)
    for i, label in enumerate(batch.labels.tolist()):
        plain = shapes.caption_variants(shapes.SHAPE_NAMES[label], batch.factors, i, colour=False)
        every = shapes.caption_variants(shapes.SHAPE_NAMES[label], batch.factors, i)
        assert plain == every[: len(plain)] and not colours & set(" ".join(plain).split())
        assert all(colours & set(v.split()) for v in every[len(plain) :])

    def drawn(grayscale):
        config = build_config(
            CLIP.Config, "quick", dict(TINY, backbone="tiny", train_pairs=0, grayscale=grayscale)
        )
        data = CLIP.load_data("shapes", config, tmp_path / str(grayscale))
        torch.manual_seed(0)
        batch = {k: v[:200] for k, v in data.tensors.items()}
        images, ids, _ = CLIP(config, data.info).draw_pairs(batch)
        words = [
            set(c.split())
            for c in data.info["tokenizer"].batch_decode(ids, skip_special_tokens=True)
        ]
        is_grey = (images == images[:, :1]).flatten(1).all(dim=1)
        return batch["images"], images, is_grey, [bool(colours & w) for w in words]

    raw, images, is_grey, names_colour = drawn(1.0)
    assert is_grey.all() and not any(names_colour)  # all grey, no caption names a colour
    assert torch.equal(images, grey(raw))
    raw, images, is_grey, names_colour = drawn(0.5)
    assert 0.35 < is_grey.float().mean() < 0.65
    # Grey images draw a caption naming no colour; the others keep their colours and draw
    # from all their captions.
    assert not any(n for n, g in zip(names_colour, is_grey.tolist()) if g)
    assert torch.equal(images[~is_grey], raw[~is_grey])
    assert 20 < sum(names_colour) < (~is_grey).sum()
    _, _, is_grey, names_colour = drawn(0.0)
    assert not is_grey.any() and sum(names_colour) > 80


def test_clip_trains_on_freshly_rendered_pairs_never_the_held_out_ones(tmp_path):
    from engine.data import shapes
    from engine.data.datasets import load_dataset, render_images
    from engine.errors import DatasetError
    from engine.methods.clip import CLIP, held_out

    fresh = render_images("shapes", 400, 16)
    assert torch.equal(fresh.images, render_images("shapes", 400, 16).images)  # same seed
    assert len(fresh.captions) == len(fresh.factors["color"]) == 400
    test = load_dataset("shapes", "test", 16)
    assert not (fresh.images[:, None] == test.images[None, :50]).flatten(2).all(2).any()
    chunks = render_images("shapes", 400, 16, chunk=150)  # chunked: other seeds, same shape
    assert chunks.images.shape == fresh.images.shape and len(chunks.captions) == 400
    with pytest.raises(DatasetError, match="cannot render more"):
        render_images("digits", 10, 16)
    config = build_config(CLIP.Config, "quick", dict(TINY, backbone="tiny", train_pairs=400))
    data = CLIP.load_data("shapes", config, tmp_path)
    names, colours = list(shapes.SHAPE_NAMES), list(shapes.PALETTE)
    unseen = sum(
        held_out(names[label], colour, names, colours)
        for label, colour in zip(fresh.labels.tolist(), fresh.factors["color"])
    )
    assert unseen > 0 and len(data) == 400 - unseen  # the held-out pairs are left out
    assert len(data.info["seen_images"]) == 500 and len(data.info["zero_shot_images"]) > 50
