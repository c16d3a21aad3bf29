"""`studio.lenses`: every lens as one method, plain types in and out.

    studio.lenses.zero_shot(image, "7", "star, ring, heart")   # a CLIP run's probabilities
    studio.lenses.fill_mask("a small red [MASK]", "9", k=5)      # a BERT run's top words

A model reference is a run id ("12"), a local folder or a Hub id. Images are file paths,
PIL images or uint8 (H, W, 3) arrays; pictures come back as uint8 (H, W, 3) arrays. Torch's
threads are capped while a lens runs, so training workers keep their cores. Errors a user can
fix are StudioError (LensError, HubError, JobError) with the fix in the message. The result
types are engine/contract.py's (the `Lenses` protocol the web app is typed against).
"""

from __future__ import annotations

from typing import Any, Protocol, cast

from engine.contract import (
    AttentionResult,
    FillMaskResult,
    GenerateResult,
    JobDetail,
    JobSummary,
    LensChoice,
    LensExample,
    LensModelInfo,
    ReconstructResult,
    RetrieveResult,
    Text2TextResult,
    ViewsResult,
    ZeroShotExample,
    ZeroShotResult,
)
from engine.home import Home


class LensHost(Protocol):
    """What the lenses use of their `engine.api.Studio` (named here, not imported: the Studio
    imports this module)."""

    home: Home

    @property
    def explorer(self) -> Any: ...
    def jobs(self) -> list[JobSummary]: ...
    def job(self, job_id: int) -> JobDetail: ...
    def model_source(self, model: Any) -> str: ...


class Lenses:
    """The lenses of one `Studio`: they read its home, its jobs, its server-path policy (a model
    folder is checked against it) and, for retrieval, its explorer (whose embeddings cache they
    share)."""

    def __init__(self, studio: LensHost) -> None:
        self.studio = studio

    def lens_models(self, lens: str) -> list[LensChoice]:
        """The models `lens` ("attention", "reconstruct", ...) can open: the runs whose
        exported model fits, newest first, then Hub ids to try:
        [{"value": "12", "label": "run 12 · mae on shapes (vit-tiny, 300 steps)"}, ...]."""
        from engine.inference.models import get_lens, lens_choices

        jobs = cast(list[dict[str, Any]], self.studio.jobs())
        return cast(list[LensChoice], lens_choices(jobs, get_lens(lens)))

    def default_model(self, lens: str) -> str | None:
        """What the lens's picker selects first: the first run `lens_models` lists (the newest
        completed run of its kind); in a studio with none, the lens's first Hub model when the
        Hub answered at start-up or the model is in the local Hub cache; else None. Never
        waits on the network."""
        from engine import hub

        choices = [c["value"] for c in self.lens_models(lens)]
        runs = [value for value in choices if value.isdigit()]
        if runs:
            return runs[0]
        reachable = hub.hub_known_reachable()
        return next((v for v in choices if reachable or hub.in_local_cache(v)), None)

    def lens_model(self, lens: str, model: str) -> Any:
        """The cached `LensModel` for `model`, checked against `lens` (loaded on first use);
        a ValueError (LensError, HubError) or JobError says why it cannot serve."""
        from engine.inference.models import get_lens, lens_threads, load_lens_model

        text = self.studio.model_source(model or "")  # a folder outside the roots is refused
        job = cast(dict[str, Any], self.studio.job(int(text))) if text.isdigit() else None
        with lens_threads():
            return load_lens_model(text, get_lens(lens), self.studio.home.root, job)

    def lens_model_info(self, lens: str, model: str) -> LensModelInfo:
        """What a lens's settings depend on: {"model", "model_type", "num_layers", "num_heads",
        "image_size", "patch_size", "decoder" (MAE: whether it can reconstruct)}."""
        from engine.inference.reconstruct import decoder_missing

        item = self.lens_model(lens, model)
        vision = item.vision_config
        return {
            "model": item.label,
            "model_type": item.model_type,
            "num_layers": int(vision.num_hidden_layers),
            "num_heads": int(vision.num_attention_heads),
            "image_size": item.image_size,
            "patch_size": item.patch_size,
            "decoder": item.model_type == "vit_mae" and not decoder_missing(item),
        }

    def lens_examples(self) -> list[LensExample]:
        """Example pictures for the image lenses: [{"name", "path"}, ...] (PNG files)."""
        from engine.inference.examples import example_images

        return cast(list[LensExample], example_images(self.studio.home.cache_dir / "lens_examples"))

    def text_examples(self, lens: str) -> dict[str, list[str]]:
        """A text lens's examples ("fill_mask", "generate", "text2text"): {"captions":
        sentences like the captions corpus's, for runs trained on it, "everyday": for Hub
        models}."""
        from engine.inference.examples import text_examples

        return text_examples(lens)

    def attention(
        self, image: Any, model: str, layer: int = 0, keep: float = 0.6, scale: str = "map"
    ) -> AttentionResult:
        """[CLS] attention of every head of `layer` (1..N; 0 = last) of a ViT over `image`:
        per-head overlays, their mean, and a mask keeping `keep` of the attention mass;
        `scale` "map" stretches each map to its own range, "shared" draws all on one scale
        (uniform attention = the middle colour).
        See `engine.inference.attention.attention_maps` for the keys."""
        from engine.inference.attention import attention_maps
        from engine.inference.images import load_image
        from engine.inference.models import lens_threads

        picture = load_image(image)
        item = self.lens_model("attention", model)
        with lens_threads():
            return cast(AttentionResult, attention_maps(item, picture, layer, keep, scale))

    def reconstruct(
        self, image: Any, model: str, mask_ratio: float = 0.75, seed: int = 0
    ) -> ReconstructResult:
        """An MAE's original, masked input, reconstruction and reconstruction with the visible
        patches pasted back, for `image` at `mask_ratio` with the mask drawn from `seed`.
        See `engine.inference.reconstruct.reconstruct` for the keys."""
        from engine.inference.images import load_image
        from engine.inference.models import lens_threads
        from engine.inference.reconstruct import reconstruct

        picture = load_image(image)
        item = self.lens_model("reconstruct", model)
        with lens_threads():
            return cast(ReconstructResult, reconstruct(item, picture, mask_ratio, seed))

    def view_methods(self) -> list[str]:
        """The methods the views lens can show (those that train on images)."""
        from engine.inference.views_preview import image_methods

        return image_methods()

    def preview_views(
        self, method: str, dataset: str, seed: int = 0, num_images: int = 4, preset: str = "quick"
    ) -> ViewsResult:
        """The exact views `method` trains on, for `num_images` images of `dataset` drawn by
        `seed`. See `engine.inference.views_preview.preview_views` for the keys."""
        from engine.inference.models import lens_threads
        from engine.inference.views_preview import preview_views

        with lens_threads():
            return cast(
                ViewsResult,
                preview_views(
                    method, dataset, seed, num_images, preset, cache_dir=self.studio.home.cache_dir
                ),
            )

    # ---- CLIP ---------------------------------------------------------------------------
    def zero_shot(
        self,
        image: Any,
        model: str,
        labels: str | list[str],
        templates: str | list[str] | None = None,
        ignore: str | list[str] | None = None,
    ) -> ZeroShotResult:
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
            return cast(ZeroShotResult, zero_shot(item, picture, labels, templates, ignore))

    def zero_shot_examples(self) -> list[ZeroShotExample]:
        """The example pictures with labels and templates to try: [{"name", "path", "labels",
        "templates"}, ...]."""
        from engine.inference.zero_shot import example_rows

        pictures = cast(list[dict[str, str]], self.lens_examples())
        return cast(list[ZeroShotExample], example_rows(pictures))

    def retrieve(
        self,
        query: str,
        model: str,
        dataset: str = "shapes",
        k: int = 8,
        split: str = "test",
        samples: int = 1000,
    ) -> RetrieveResult:
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
            raise LensError(
                f"{dataset!r} is a text corpus; retrieval searches images: pick an "
                "image dataset (shapes, digits or one you added)"
            )
        item = self.lens_model("retrieve", model)
        explorer = self.studio.explorer
        before = explorer.embed_calls
        with lens_threads():
            images = explorer.embeddings(str(model).strip(), dataset, samples, split)
            out = retrieve(item, images, query, k)
        out["embeddings_cached"] = explorer.embed_calls == before
        out["images"] = gallery_pictures(explorer.thumbnails(dataset, split, out["indices"]))
        return cast(RetrieveResult, out)

    # ---- language -----------------------------------------------------------------------
    def fill_mask(self, text: str, model: str, k: int = 5) -> FillMaskResult:
        """The `k` most probable distinct words for the one "[MASK]" (or "<mask>") in `text`
        under a masked language model, with the sentences they complete.
        See `engine.inference.fill_mask.fill_mask` for the keys."""
        from engine.inference.fill_mask import fill_mask
        from engine.inference.models import lens_threads

        item = self.lens_model("fill_mask", model)
        with lens_threads():
            return cast(FillMaskResult, fill_mask(item, text, k))

    def generate(
        self,
        prompt: str,
        model: str,
        max_new_tokens: int = 40,
        temperature: float = 0.8,
        top_k: int = 50,
        seed: int = 0,
    ) -> GenerateResult:
        """A causal language model's continuation of `prompt` (temperature 0: greedy; top_k
        0: no cut), repeatable for a seed. See `engine.inference.generate.generate`."""
        from engine.inference.generate import generate
        from engine.inference.models import lens_threads

        item = self.lens_model("generate", model)
        with lens_threads():
            return cast(
                GenerateResult, generate(item, prompt, max_new_tokens, temperature, top_k, seed)
            )

    def text2text(
        self, text: str, model: str, num_beams: int = 4, max_new_tokens: int = 40
    ) -> Text2TextResult:
        """A T5's output for `text` by beam search: the sentinel spans filled in (a T5 run),
        or a task's answer ("translate English to French: ...", with t5-small).
        See `engine.inference.text2text.text2text` for the keys."""
        from engine.inference.models import lens_threads
        from engine.inference.text2text import text2text

        item = self.lens_model("text2text", model)
        with lens_threads():
            return cast(Text2TextResult, text2text(item, text, num_beams, max_new_tokens))
