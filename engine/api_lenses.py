"""The lens half of `engine.api.Studio`: every lens as one method, plain types in and out.

    studio.zero_shot(image, "7", "star, ring, heart")        # a CLIP run's probabilities
    studio.fill_mask("a small red [MASK]", "9", k=5)           # a BERT run's top words

A model reference is a run id ("12"), a local folder or a Hub id. Images are file paths,
PIL images or uint8 (H, W, 3) arrays; pictures come back as uint8 (H, W, 3) arrays. Torch's
threads are capped while a lens runs, so training workers keep their cores. Errors a user can
fix are StudioError (LensError, HubError, JobError) with the fix in the message.
"""
from __future__ import annotations

from typing import Any


class LensesMixin:
    """Lens methods of `Studio`; they need `self.home`, `self.jobs()`, `self.job()` and, for
    retrieval, `self.explorer` (whose embeddings cache it shares)."""

    def lens_models(self, lens: str) -> list[dict[str, str]]:
        """The models `lens` ("attention", "reconstruct", ...) can open: the runs whose
        exported model fits, newest first, then Hub ids to try:
        [{"value": "12", "label": "run 12 · mae on shapes (vit-tiny, 300 steps)"}, ...]."""
        from engine.inference.models import get_lens, lens_choices

        return lens_choices(self.jobs(), get_lens(lens))

    def lens_model(self, lens: str, model: str) -> Any:
        """The cached `LensModel` for `model`, checked against `lens` (loaded on first use);
        a ValueError (LensError, HubError) or JobError says why it cannot serve."""
        from engine.inference.models import get_lens, load_lens_model, lens_threads

        text = self.model_source(model or "")  # a folder outside the data roots is refused
        job = self.job(int(text)) if text.isdigit() else None
        with lens_threads():
            return load_lens_model(text, get_lens(lens), self.home.root, job)

    def lens_model_info(self, lens: str, model: str) -> dict[str, Any]:
        """What a lens's settings depend on: {"model", "model_type", "num_layers", "num_heads",
        "image_size", "patch_size", "decoder" (MAE: whether it can reconstruct)}."""
        from engine.inference.reconstruct import decoder_missing

        item = self.lens_model(lens, model)
        vision = item.vision_config
        return {"model": item.label, "model_type": item.model_type,
                "num_layers": int(vision.num_hidden_layers),
                "num_heads": int(vision.num_attention_heads), "image_size": item.image_size,
                "patch_size": item.patch_size,
                "decoder": item.model_type == "vit_mae" and not decoder_missing(item)}

    def lens_examples(self) -> list[dict[str, str]]:
        """Example pictures for the image lenses: [{"name", "path"}, ...] (PNG files)."""
        from engine.inference.examples import example_images

        return example_images(self.home.cache_dir / "lens_examples")

    def attention(self, image: Any, model: str, layer: int = 0,
                  keep: float = 0.6) -> dict[str, Any]:
        """[CLS] attention of every head of `layer` (1..N; 0 = last) of a ViT over `image`:
        per-head overlays, their mean, and a mask keeping `keep` of the attention mass.
        See `engine.inference.attention.attention_maps` for the keys."""
        from engine.inference.attention import attention_maps
        from engine.inference.images import load_image
        from engine.inference.models import lens_threads

        picture = load_image(image)
        item = self.lens_model("attention", model)
        with lens_threads():
            return attention_maps(item, picture, layer, keep)

    def reconstruct(self, image: Any, model: str, mask_ratio: float = 0.75,
                    seed: int = 0) -> dict[str, Any]:
        """An MAE's original, masked input, reconstruction and reconstruction with the visible
        patches pasted back, for `image` at `mask_ratio` with the mask drawn from `seed`.
        See `engine.inference.reconstruct.reconstruct` for the keys."""
        from engine.inference.images import load_image
        from engine.inference.models import lens_threads
        from engine.inference.reconstruct import reconstruct

        picture = load_image(image)
        item = self.lens_model("reconstruct", model)
        with lens_threads():
            return reconstruct(item, picture, mask_ratio, seed)

    def view_methods(self) -> list[str]:
        """The methods the views lens can show (those that train on images)."""
        from engine.inference.views_preview import image_methods

        return image_methods()

    def preview_views(self, method: str, dataset: str, seed: int = 0, num_images: int = 4,
                      preset: str = "quick") -> dict[str, Any]:
        """The exact views `method` trains on, for `num_images` images of `dataset` drawn by
        `seed`. See `engine.inference.views_preview.preview_views` for the keys."""
        from engine.inference.models import lens_threads
        from engine.inference.views_preview import preview_views

        with lens_threads():
            return preview_views(method, dataset, seed, num_images, preset,
                                 cache_dir=self.home.cache_dir)

    # ---- CLIP ---------------------------------------------------------------------------
    def zero_shot(self, image: Any, model: str, labels: str | list[str],
                  templates: str | list[str] | None = None,
                  ignore: str | list[str] | None = None) -> dict[str, Any]:
        """Probabilities of the candidate `labels` (comma-separated text or a list) for
        `image` under a CLIP model, each label's text embedding averaged over the prompt
        `templates` (one per line or a list, each with one "{}"; default "a photo of a {}."),
        and blind to the attribute whose values `ignore` lists (comma-separated, two or more;
        e.g. the colours). See `engine.inference.zero_shot.zero_shot` for the keys."""
        from engine.inference.images import load_image
        from engine.inference.models import lens_threads
        from engine.inference.zero_shot import zero_shot

        picture = load_image(image)
        item = self.lens_model("zero_shot", model)
        with lens_threads():
            return zero_shot(item, picture, labels, templates, ignore)

    def zero_shot_examples(self) -> list[dict[str, str]]:
        """The example pictures with labels and templates to try: [{"name", "path", "labels",
        "templates"}, ...]."""
        from engine.inference.zero_shot import example_rows

        return example_rows(self.lens_examples())

    def retrieve(self, query: str, model: str, dataset: str = "shapes", k: int = 8,
                 split: str = "test", samples: int = 1000) -> dict[str, Any]:
        """The `k` images of `dataset`'s `split` (a fixed sample of `samples` rows, the
        explorer's) nearest to the text `query` under a CLIP model, best first, with their
        pictures ("images": uint8 thumbnails) and "embeddings_cached" (False when this call
        embedded the dataset). The dataset is embedded once per model, checkpoint, dataset,
        split and sample size. See `engine.inference.retrieve.retrieve` for the other keys."""
        from engine.checks import shown
        from engine.data.datasets import dataset_info
        from engine.inference.models import LensError, lens_threads
        from engine.inference.retrieve import check_request, gallery_pictures, retrieve

        _, k, samples = check_request(query, k, samples)
        if split not in ("train", "test"):
            raise LensError(f"split must be train or test, got {shown(split)}")
        info = dataset_info(dataset)
        if info["kind"] == "text":
            raise LensError(f"{dataset!r} is a text corpus; retrieval searches images: pick an "
                            "image dataset (shapes, digits or one you added)")
        item = self.lens_model("retrieve", model)
        before = self.explorer.embed_calls
        with lens_threads():
            images = self.explorer.embeddings(str(model).strip(), dataset, samples, split)
            out = retrieve(item, images, query, k)
        out["embeddings_cached"] = self.explorer.embed_calls == before
        out["images"] = gallery_pictures(self.explorer.thumbnails(dataset, split,
                                                                  out["indices"]))
        return out

    # ---- language -----------------------------------------------------------------------
    def fill_mask(self, text: str, model: str, k: int = 5) -> dict[str, Any]:
        """The `k` most probable distinct words for the one "[MASK]" (or "<mask>") in `text`
        under a masked language model, with the sentences they complete.
        See `engine.inference.fill_mask.fill_mask` for the keys."""
        from engine.inference.fill_mask import fill_mask
        from engine.inference.models import lens_threads

        item = self.lens_model("fill_mask", model)
        with lens_threads():
            return fill_mask(item, text, k)

    def generate(self, prompt: str, model: str, max_new_tokens: int = 40,
                 temperature: float = 0.8, top_k: int = 50, seed: int = 0) -> dict[str, Any]:
        """A causal language model's continuation of `prompt` (temperature 0: greedy; top_k
        0: no cut), repeatable for a seed. See `engine.inference.generate.generate`."""
        from engine.inference.generate import generate
        from engine.inference.models import lens_threads

        item = self.lens_model("generate", model)
        with lens_threads():
            return generate(item, prompt, max_new_tokens, temperature, top_k, seed)

    def text2text(self, text: str, model: str, num_beams: int = 4,
                  max_new_tokens: int = 40) -> dict[str, Any]:
        """A T5's output for `text` by beam search: the sentinel spans filled in (a T5 run),
        or a task's answer ("translate English to French: ...", with t5-small).
        See `engine.inference.text2text.text2text` for the keys."""
        from engine.inference.models import lens_threads
        from engine.inference.text2text import text2text

        item = self.lens_model("text2text", model)
        with lens_threads():
            return text2text(item, text, num_beams, max_new_tokens)
