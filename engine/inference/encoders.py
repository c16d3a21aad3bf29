"""What the explorer embeds with: a model name turned into an `Encoder` (images and/or texts).

    parse_source("3")          -> ("run", "3")       job 3's newest checkpoint
    parse_source("random:3")   -> ("random", "3")    job 3's network at random initialisation
    parse_source("random:mae") -> ("random", "mae")  a method's quick-preset network, no job
    parse_source("pixels")     -> ("pixels", "32")   the raw pixels at 32 px
    parse_source("org/model")  -> ("hub", ...)       a Hub id or model folder (engine.hub)

A trained method embeds images with its own `embed` (what evaluation uses). Texts: CLIP's text
tower (and its prompt ensemble for class names); a language model's (BERT, GPT, T5) `embed`
of each text's token ids, one text at a time at its own length, so padding never enters the
mean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from engine import checks, hardware
from engine.errors import SpecError
from engine.inference.runs import LoadedMethod


@dataclass
class Encoder:
    """Anything that embeds images and/or texts, with a cache key and plain facts."""

    key: tuple  # part of the embeddings' cache key (includes the step)
    name: str  # "job 3 @ step 150"
    info: dict[str, Any]  # plain: kind, method, backbone, step, job_id, image_size
    image_size: int | None  # px the images are resized to; None: no image tower
    images: Callable[[Tensor], Tensor] | None = None  # uint8 (B, 3, H, W) -> (B, D)
    texts: Callable[[list[str]], Tensor] | None = None  # B strings -> (B, D)
    prompts: Callable[[list[str]], Tensor] | None = None  # class names -> (C, D) (CLIP)
    image_batch: int | None = None  # images per forward pass (None: the caller's default)


def best_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _image_tower(method: Any) -> bool:
    from engine.evaluation.health import has_image_embed

    return has_image_embed(type(method)) or type(method).modality == "image-text"


def _text_tower(method: Any) -> Callable[[list[str]], Tensor] | None:
    """How a trained method embeds sentences: CLIP's text tower, or a language model's mean
    hidden state (`embed(input_ids)`), each text alone at its own length (no padding enters
    the mean)."""
    tokenizer = getattr(method, "tokenizer", None)
    if tokenizer is None:
        return None
    limit = int(getattr(method.config, "context_length", 64))
    if type(method).modality == "image-text":

        def clip_texts(texts: list[str]) -> Tensor:
            device = method.model.logit_scale.device
            tokens = tokenizer(
                texts, padding=True, truncation=True, max_length=limit, return_tensors="pt"
            ).to(device)
            out = method.model.get_text_features(**tokens)
            out = out if isinstance(out, Tensor) else out.pooler_output
            return torch.nn.functional.normalize(out.float(), dim=-1)

        return clip_texts
    if type(method).modality != "text":
        return None

    def lm_texts(texts: list[str]) -> Tensor:
        device = next(method.parameters()).device
        ids = tokenizer(texts, truncation=True, max_length=limit)["input_ids"]
        out = torch.empty(len(texts), 0)
        by_length: dict[int, list[int]] = {}
        for i, row in enumerate(ids):
            by_length.setdefault(len(row), []).append(i)
        for rows in by_length.values():
            batch = torch.tensor([ids[i] for i in rows], device=device)  # (b, length)
            features = method.embed(batch).float().cpu()  # (b, D)
            if out.shape[1] == 0:
                out = torch.empty(len(texts), features.shape[1])
            out[rows] = features
        return out

    return lm_texts


def method_encoder(loaded: LoadedMethod, key: tuple, info: dict[str, Any]) -> Encoder:
    method = loaded.method.to(best_device()).eval()
    images = method.embed if _image_tower(method) else None
    prompts = None
    if hasattr(method, "class_embeddings") and getattr(method, "tokenizer", None) is not None:
        prompts = method.class_embeddings
    return Encoder(
        key,
        loaded.key,
        info,
        loaded.image_size if images else None,
        images,
        _text_tower(method),
        prompts,
    )


def pixels_encoder(image_size: int = 32) -> Encoder:
    def flatten(images: Tensor) -> Tensor:
        return images.reshape(images.shape[0], -1).float() / 255.0  # (B, 3*H*W)

    return Encoder(
        ("pixels", image_size),
        f"raw pixels at {image_size} px",
        {"kind": "pixels", "image_size": image_size},
        image_size,
        flatten,
    )


HUB_IMAGE_BATCH = 64  # see hub_encoder: bf16 runs faster in small batches on a CPU


def processor_size(processor: Any) -> int | None:
    """The square side an image processor feeds its model (its centre crop, else its fixed
    size), or None when it has none: DINOv2's config says 518 px, its processor crops 224."""
    image_processor = getattr(processor, "image_processor", processor)
    if image_processor is None:
        return None
    sizes = []
    if getattr(image_processor, "do_center_crop", False):
        sizes.append(getattr(image_processor, "crop_size", None))
    sizes.append(getattr(image_processor, "size", None))
    for size in sizes:
        value = size.get("height") if hasattr(size, "get") else getattr(size, "height", None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def hub_encoder(source: str, home: Path) -> Encoder:
    """A transformers model from a Hub id or folder: CLIP (both towers), a vision model
    (pooled output, else the first token), or a text model (mean of the last hidden states)."""
    from engine import hub

    model, processor = hub.load(source, home, device=str(best_device()))
    model_type = model.config.model_type
    info = {"kind": "hub", "source": source, "model_type": model_type}
    vision = getattr(model.config, "vision_config", None) or model.config
    size = getattr(vision, "image_size", None)
    size = processor_size(processor) or (size if isinstance(size, int) else 224)

    def pixel_values(images: Tensor) -> Tensor:
        image_processor = getattr(processor, "image_processor", processor)
        if image_processor is None:  # a folder saved without one: resize, ImageNet statistics
            from engine.data.views import normalize

            x = torch.nn.functional.interpolate(
                images.float() / 255, size=(size, size), mode="bilinear", antialias=True
            )
            return normalize(x.clamp(0, 1)).to(model.device)
        arrays = list(images.permute(0, 2, 3, 1).cpu().numpy())  # (H, W, 3) each
        return image_processor(images=arrays, return_tensors="pt")["pixel_values"].to(model.device)

    def pool(out: Any) -> Tensor:
        if isinstance(out, Tensor):
            return out
        if getattr(out, "pooler_output", None) is not None:
            return out.pooler_output
        return out.last_hidden_state[:, 0]

    images = texts = None
    image_batch = None
    if hasattr(model, "get_image_features"):
        images = lambda batch: pool(model.get_image_features(pixel_values=pixel_values(batch)))
        tokenizer = getattr(processor, "tokenizer", processor)
        texts = lambda batch: pool(
            model.get_text_features(
                **tokenizer(batch, padding=True, truncation=True, return_tensors="pt").to(
                    model.device
                )
            )
        )
    elif model.main_input_name == "pixel_values":
        # A vision-only model (DINOv2, ViT) runs under bf16 autocast where the device computes
        # bf16 natively (precision "auto", as the studio's runs train), 64 images at a time: a
        # DINOv2-small-sized ViT at 224 px embedded 16-19 images/s on two CPU cores (native bf16)
        # against 9.1 in fp32 and 13.3 in bf16 batches of 256, its pooled outputs at cosine
        # 1.0000 to fp32's. A CPU that emulates bf16 stays in fp32 (engine.hardware).
        base = getattr(model, "base_model", model)
        bf16 = hardware.use_bf16("auto", model.device)

        def images(batch: Tensor) -> Tensor:
            pixels = pixel_values(batch)
            with torch.autocast(pixels.device.type, dtype=torch.bfloat16, enabled=bf16):
                return pool(base(pixel_values=pixels)).float()

        info["precision"], image_batch = ("bf16" if bf16 else "fp32"), HUB_IMAGE_BATCH
    else:
        base = getattr(model, "base_model", model)
        if hasattr(base, "encoder") and hasattr(base, "decoder"):
            base = base.encoder  # T5: the encoder's states

        def texts(batch: list[str]) -> Tensor:
            tokens = processor(
                batch, padding=True, truncation=True, max_length=512, return_tensors="pt"
            ).to(model.device)
            states = base(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            ).last_hidden_state
            mask = tokens["attention_mask"][..., None].float()  # (B, T, 1)
            return (states * mask).sum(1) / mask.sum(1).clamp(min=1)

    info["image_size"] = size if images is not None else None
    return Encoder(
        ("hub", source),
        source,
        info,
        size if images is not None else None,
        images,
        texts,
        image_batch=image_batch,
    )


def parse_source(source: str) -> tuple[str, str]:
    """("run", "3"), ("random", "3" or a method), ("pixels", "32") or ("hub", id/folder)."""
    text = checks.text(str(source), "model", checks.MAX_REF_CHARS)
    text = text.strip().removeprefix("#").removeprefix("job:")
    if not text:
        raise SpecError("name a model: a job id, random:<job id>, pixels, or a Hub id")
    if text == "pixels" or text.startswith("pixels:"):
        size = text.split(":", 1)[1] if ":" in text else "32"
        if not size.isdigit():
            raise SpecError(f"pixels:<size> takes a whole number of pixels, got {size!r}")
        return "pixels", size
    if text.isdigit():
        return "run", text
    if text.startswith("random:") and text[7:].strip():
        return "random", text[7:].strip()
    return "hub", text
