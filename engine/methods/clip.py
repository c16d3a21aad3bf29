"""CLIP: contrastive image-text pretraining.

Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision"
(arXiv:2103.00020). An image encoder and a text encoder map matched pairs close together and
mismatched pairs of the batch apart (symmetric InfoNCE, learned temperature). Class names put
into prompt templates then classify images with no labelled training: zero-shot.

The model is transformers' `CLIPModel` built from small configs; a run's `pretrained/` folder
holds it with a `CLIPProcessor`, so `pipeline("zero-shot-image-classification", model=...)`
loads it. Some colour-shape combinations of `shapes` are held out of training, and zero-shot
accuracy is measured on test images of exactly those combinations: generalisation, not memory.

Trained so, CLIP learns the held-out pairs' absence: never shown a yellow heart, it learns
"heart" as "not yellow", and a yellow heart scores low as a heart even when its shape is seen.
Zero-shot is also logged blind to colour (`zero_shot_colour_blind_acc`): the class prompts are
projected off the directions along which "a red heart", "a blue heart", ... differ (Chuang et
al. 2023, arXiv:2302.00070; `engine.prompts.label_classifiers`), and `grayscale`
shows some images in grey with captions naming no colour, so shape is learnt apart from
colour (bench/RESULTS-text.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from engine.config import TrainConfig, adam_beta2_param, param
from engine.data.tokenizers import load_or_train
from engine.data.views import grey
from engine.distributed import draw_rows, gather, local_rows
from engine.errors import DatasetError, SpecError
from engine.losses.clip import clamp_logit_scale_, clip_loss
from engine.methods._text import StepCounter
from engine.methods.base import MethodCard, SSLMethod, TrainData
from engine.models.text import TEXT_SIZES, text_dims
from engine.prompts import label_classifiers
from engine.registry import register_method

# Prompt templates; a class's text embedding is the mean over them (the paper's ensembling).
# The forms of shapes' short captions that name no colour, the ones grey images draw.
TEMPLATES = ("a {}", "a small {}", "a medium {}", "a large {}")
CHANCE_NOTE = "chance is 1 / number of classes (0.1 on shapes)"


def held_out(shape: str, colour: str, shape_names, colour_names) -> bool:
    """One colour per shape never seen in training (10 of the 80 combinations on shapes)."""
    return colour == colour_names[(3 * list(shape_names).index(shape)) % len(colour_names)]


@dataclass
class CLIPTrainConfig(TrainConfig):
    backbone: str = param(
        "mini",
        "Size of both towers: tiny (128 wide, 2 layers), mini (256, "
        "4), small (512, 4), base (768, 12).",
        choices=sorted(TEXT_SIZES),
        main=True,
    )
    depth: int = param(0, "Layers of each tower; 0 keeps the size's standard number.", min=0)
    # TrainConfig's help speaks of images and their views; CLIP's batch is image-text pairs.
    batch_size: int = param(
        64,
        "Image-caption pairs per step: each image's own caption is its positive and the "
        "batch's other captions its negatives, so larger batches give more negatives "
        "(the paper used 32,768).",
        min=2,
        main=True,
    )
    patch_size: int = param(
        4, "ViT patch side in pixels; image_size must be a multiple.", min=1, main=True
    )
    projection_dim: int = param(128, "Size of the shared image-text embedding space.", min=8)
    context_length: int = param(32, "Caption tokens (longer captions are cut).", min=8, max=512)
    vocab_size: int = param(
        8000,
        "Tokenizer vocabulary, trained on the training captions "
        "(a small corpus gives a smaller one).",
        min=128,
        max=65536,
    )
    logit_scale_init: float = param(
        2.6592,
        "Initial log of the inverse temperature "
        "(log(1/0.07), the paper's); clamped at log(100) after "
        "every step.",
        min=0.0,
        max=4.6052,
    )
    caption_variants: bool = param(
        True,
        "Where the dataset gives several captions per image "
        "(shapes: the full one and shorter ones naming the shape "
        "and a few other factors), draw one per image and step; "
        "off: the full caption only.",
    )
    grayscale: float = param(
        0.0,
        "Share of training images shown in grey, each with one of "
        "its captions that names no colour (shapes' short captions). "
        "Colour is the easiest thing to match a caption by; grey copies "
        "make the image tower learn shape apart from colour, which is "
        "what carries zero-shot over to colour-shape pairs it never saw. "
        "Images with no caption known to name no colour (a user folder, "
        "or caption_variants off) stay in colour.",
        min=0.0,
        max=1.0,
    )
    train_pairs: int = param(
        0,
        "Image-caption pairs to render for training on a procedural "
        "dataset (shapes), none from its test split: a ViT learns shape "
        "from many images, not from many passes over a few. 0, and any "
        "other dataset: its own training images (shapes: 5,000).",
        min=0,
        max=500_000,
    )
    zero_shot_every: int = param(
        25, "Measure held-out zero-shot accuracy every N steps (and at the last step).", min=1
    )

    # CLIP, section 2.5 and tables 19-20: Adam beta2 0.98 for the ViTs (0.999 ResNets).
    adam_beta2: float = adam_beta2_param(0.98)

    PRESETS = {
        # 60k fresh pairs and 8 px patches: the ViT learns shape from many images (0.27 on
        # seen pairs after 2000 steps, against 0.12 for 5,000 pairs and 4 px patches). Half
        # the images grey and 4000 steps at lr 1e-3: held-out zero-shot 0.28-0.31 with the
        # colours ignored, 0.10-0.12 without; --steps 16000 (15 minutes): 0.46 and 0.27
        # (bench/RESULTS-text.md). An earlier config collapsed at lr 1e-3 (loss stuck at
        # log(batch)); this one does not.
        "quick": dict(
            grad_clip=1.0,  # as bench/RESULTS.md measured the quick runs
            backbone="tiny",
            steps=4000,
            batch_size=64,
            lr=1e-3,
            image_size=32,
            patch_size=8,
            train_pairs=60_000,
            grayscale=0.5,
            warmup_steps=60,
            weight_decay=0.1,
            checkpoint_every=500,
            precision="fp32",
            zero_shot_every=200,
        ),
        # Paper, section 2.5 and table 20 (ViT-B/32): 224 px, batch 32,768, AdamW lr 5e-4,
        # weight decay 0.2, 2k warmup steps, 32 epochs of 400M pairs, 49k BPE, 76 tokens.
        "paper": dict(
            backbone="base",
            image_size=224,
            patch_size=32,
            batch_size=32_768,
            lr=5e-4,
            weight_decay=0.2,
            warmup_steps=2000,
            steps=390_000,
            projection_dim=512,
            context_length=77,
            vocab_size=49_408,
            checkpoint_every=5000,
        ),
        # Seconds on a CPU (the registry walk trains it): a smoke test, not a recipe. The
        # values of engine.methods.base.TINY_PRESET, then 300 rendered pairs and small towers.
        "tiny": dict(
            steps=16,
            batch_size=32,
            image_size=16,
            warmup_steps=2,
            checkpoint_every=5,
            precision="fp32",
            grad_clip=1.0,
            backbone="tiny",
            depth=1,
            patch_size=8,
            lr=1e-3,
            train_pairs=300,
            context_length=16,
        ),
    }


@register_method("clip")
class CLIP(SSLMethod):
    description = "Image-text contrastive: match images to their captions (Radford et al. 2021)"
    paper = "arXiv:2103.00020"
    modality = "image-text"
    default_dataset = "shapes"
    Config = CLIPTrainConfig
    card = MethodCard(
        title="CLIP",
        authors="Radford, Kim, Hallacy, Ramesh, Goh, Agarwal, Sastry, Askell, "
        "Mishkin, Clark, Krueger, Sutskever",
        year=2021,
        paper="arXiv:2103.00020",
        idea="Train an image encoder and a text encoder together so that each image lands "
        "next to its own caption and away from the other captions in the batch. Words "
        "then act as classifiers: the class whose description is nearest wins.",
        good_at="Zero-shot classification and image-text retrieval with no labels; features "
        "that follow the concepts the captions name.",
        hyperparameters="Batch size (more negatives); temperature (learned, clamped at 100); "
        "caption quality and variety; the prompt templates used at test time.",
    )

    @classmethod
    def check_config(cls, config: CLIPTrainConfig) -> None:
        if config.image_size % config.patch_size:
            raise SpecError(
                f"image_size {config.image_size} is not a multiple of patch_size "
                f"{config.patch_size}; pick sizes that divide"
            )

    @classmethod
    def load_data(
        cls,
        dataset: str,
        config: CLIPTrainConfig,
        run_dir: Path | None = None,
        cache_dir: Path | None = None,
    ) -> TrainData:
        from engine.data import shapes
        from engine.data.datasets import dataset_info, is_streamed, load_dataset, render_images

        if config.train_pairs and dataset_info(dataset)["procedural"]:
            train = render_images(dataset, config.train_pairs, config.image_size)
        else:
            train = load_dataset(dataset, "train", config.image_size, cache_dir=cache_dir)
        test = load_dataset(dataset, "test", config.image_size, cache_dir=cache_dir)
        if not train.captions:
            raise DatasetError(f"{dataset!r} has no captions; CLIP trains on image-caption pairs")
        colours = list(shapes.PALETTE)

        def unseen(ds) -> Tensor:
            if not ds.factors or "color" not in ds.factors:
                return torch.zeros(len(ds), dtype=torch.bool)
            return torch.tensor(
                [
                    held_out(ds.class_names[label], colour, ds.class_names, colours)
                    for label, colour in zip(ds.labels.tolist(), ds.factors["color"])
                ]
            )

        keep = ~unseen(train)
        captions = [c for c, k in zip(train.captions, keep.tolist()) if k]
        tokenizer = load_or_train(
            run_dir, "clip", captions, config.vocab_size, config.context_length
        )
        # (N, K) captions per image: the full one first, then the dataset's shorter variants.
        factors = train.factors or {}
        variants = config.caption_variants and {
            "color",
            "size",
            "position",
            "background_color",
        } <= set(factors)
        table = [
            [caption]
            + (shapes.caption_variants(train.class_names[label], factors, i) if variants else [])
            for i, (caption, label, k) in enumerate(
                zip(train.captions, train.labels.tolist(), keep.tolist())
            )
            if k
        ]
        # Captions repeat (variants such as "a star" most of all): each distinct one is
        # tokenised once, then gathered into (N, K, T).
        distinct = list(dict.fromkeys(c for row in table for c in row))
        where = {c: i for i, c in enumerate(distinct)}
        encoded = tokenizer(
            distinct,
            padding="max_length",
            truncation=True,
            max_length=config.context_length,
            return_tensors="pt",
        )
        index = torch.tensor([[where[c] for c in row] for row in table])  # (N, K)
        # Which of the K columns name no colour (the captions a grey copy of the image keeps):
        # the variants that come first, after the full caption.
        colour_free = torch.zeros(index.shape[1], dtype=torch.bool)
        if variants:
            plain = shapes.caption_variants(train.class_names[0], factors, 0, colour=False)
            colour_free[1 : 1 + len(plain)] = True
        tokens = {key: value[index] for key, value in encoded.items()}
        evaluate = unseen(test) if unseen(test).any() else torch.ones(len(test), dtype=torch.bool)
        used_colours = set(factors.get("color", ()))
        info = {
            "vocab_size": len(tokenizer),
            "tokenizer": tokenizer,
            "class_names": list(test.class_names),
            "colour_free": colour_free,
            # The colour words its captions use: zero-shot is also logged blind to them.
            "colour_words": [c for c in colours if c in used_colours],
        }
        if len(test.class_names) > 1 and len(test):  # an unlabelled set has no zero-shot task
            info.update(
                zero_shot_images=test.images[evaluate], zero_shot_labels=test.labels[evaluate]
            )
            if not evaluate.all():  # also the pairs it trained on: the generalisation gap
                seen = (~evaluate).nonzero()[:, 0][:500]
                info.update(seen_images=test.images[seen], seen_labels=test.labels[seen])
        return TrainData(
            {
                # A streamed (large stored) set stays on disk: its kept rows, read per batch.
                "images": (
                    train.images.subset(keep.nonzero()[:, 0])
                    if is_streamed(train.images)
                    else train.images[keep]
                ),
                "input_ids": tokens["input_ids"],
                "attention_mask": tokens["attention_mask"],
            },
            info,
            labels=train.labels[keep] if len(train.class_names) > 1 else None,
        )

    def __init__(self, config: CLIPTrainConfig, data_info: dict | None = None) -> None:
        super().__init__(config, data_info)
        self.check_config(config)
        self.tokenizer = tokenizer = self.data_info.get("tokenizer")
        hidden, layers, heads = text_dims(config.backbone, config.depth)
        tower = dict(
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=4 * hidden,
        )
        special = (
            {}
            if tokenizer is None
            else dict(
                # CLIP pools the text at the first eos: it must be the tokenizer's real end token.
                eos_token_id=tokenizer.eos_token_id,
                bos_token_id=tokenizer.bos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        self.model = CLIPModel(
            CLIPConfig(
                text_config=dict(
                    vocab_size=self.data_info["vocab_size"],
                    max_position_embeddings=config.context_length,
                    **special,
                    **tower,
                ),
                vision_config=dict(
                    image_size=config.image_size, patch_size=config.patch_size, **tower
                ),
                projection_dim=config.projection_dim,
                logit_scale_init_value=config.logit_scale_init,
            )
        )
        self.register_buffer(
            "mean", torch.tensor(OPENAI_CLIP_MEAN)[:, None, None], persistent=False
        )
        self.register_buffer("std", torch.tensor(OPENAI_CLIP_STD)[:, None, None], persistent=False)
        self.class_names = list(self.data_info.get("class_names", []))
        if "zero_shot_images" in self.data_info:
            self.register_buffer(
                "zero_shot_images", self.data_info["zero_shot_images"], persistent=False
            )
            self.register_buffer(
                "zero_shot_labels", self.data_info["zero_shot_labels"], persistent=False
            )
        for name in ("seen_images", "seen_labels", "colour_free"):
            if name in self.data_info:
                self.register_buffer(name, self.data_info[name], persistent=False)
        self.counter = StepCounter()

    def pixels(self, images: Tensor) -> Tensor:
        """uint8 (B, 3, H, W) -> float normalised with CLIP's mean and std (as the processor)."""
        return (images.float() / 255.0 - self.mean) / self.std

    def draw_pairs(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """The step's (images, input_ids, attention_mask): one of each image's K captions,
        drawn at random. With `grayscale`, that share of the images goes grey and draws from
        its captions that name no colour; the others draw from all their captions."""
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        images = batch["images"]
        if input_ids.ndim == 3:  # (B, K, T): K captions per image
            images, input_ids, attention_mask = self._draw(images, input_ids, attention_mask)
        # Drop the padding columns no drawn caption reaches: the text tower's cost follows its
        # width (32 columns, most captions under 20 tokens), and its causal attention makes
        # the embeddings the same without them.
        width = int(attention_mask.sum(dim=1).max())
        return images, input_ids[:, :width], attention_mask[:, :width]

    def _draw(
        self, images: Tensor, input_ids: Tensor, attention_mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        size, device = len(input_ids), input_ids.device
        rows = torch.arange(size, device=device)
        # Drawn for the global batch, this rank's rows kept: the same pairs on any number of
        # processes (engine.distributed.draw_rows).
        total, mine = draw_rows(size)
        mine = None if mine is None else mine.to(device)

        def draw(columns: Tensor) -> Tensor:  # (size,) column indices, uniform over `columns`
            return columns[
                local_rows(torch.randint(0, len(columns), (total,), device=device), mine)
            ]

        pick = draw(torch.arange(input_ids.shape[1], device=device))
        free = self.colour_free.nonzero()[:, 0] if hasattr(self, "colour_free") else rows[:0]
        if self.config.grayscale and len(free):
            turned = local_rows(torch.rand(total, device=device), mine) < self.config.grayscale
            pick = torch.where(turned, draw(free), pick)
            images = torch.where(turned[:, None, None, None], grey(images), images)
        return images, input_ids[rows, pick], attention_mask[rows, pick]

    def training_step(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        images, input_ids, attention_mask = self.draw_pairs(batch)
        out = self.model(
            input_ids=input_ids, attention_mask=attention_mask, pixel_values=self.pixels(images)
        )
        # image_embeds, text_embeds: (B, projection_dim); negatives from the global batch, every
        # rank's rows gathered with gradients (engine.distributed.gather).
        loss = clip_loss(gather(out.image_embeds), gather(out.text_embeds), self.model.logit_scale)
        logs = {"temperature": (-self.model.logit_scale.detach()).exp()}
        step = self.counter.next_step
        if (step % self.config.zero_shot_every == 0 or step == self.config.steps) and hasattr(
            self, "zero_shot_images"
        ):
            logs["zero_shot_acc"] = self.zero_shot_accuracy()
            if hasattr(self, "seen_images"):
                logs["zero_shot_seen_acc"] = self.zero_shot_accuracy(
                    self.seen_images, self.seen_labels
                )
            colours = tuple(self.data_info.get("colour_words", ()))
            if len(colours) > 1:
                logs["zero_shot_colour_blind_acc"] = self.zero_shot_accuracy(ignore=colours)
        return loss, logs

    def after_step(self, step: int, total_steps: int) -> None:
        clamp_logit_scale_(self.model.logit_scale)
        self.counter.set(step)

    @torch.no_grad()
    def class_embeddings(
        self, class_names: list[str], templates=TEMPLATES, ignore: tuple[str, ...] | list[str] = ()
    ) -> Tensor:
        """(C, projection_dim): each class's prompts embedded, normalised, averaged, normalised;
        with `ignore` (two or more attribute words), projected off those words' directions
        (`engine.prompts.label_classifiers`, as the Zero-shot lens)."""
        return label_classifiers(self._text_embeddings, class_names, templates, ignore)

    def _text_embeddings(self, texts: list[str]) -> Tensor:
        """(N, projection_dim) unit-length text embeddings."""
        device = self.model.logit_scale.device
        tokens = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            return_tensors="pt",
            max_length=self.config.context_length,
        ).to(device)
        text = self.model.get_text_features(**tokens)
        text = text if isinstance(text, Tensor) else text.pooler_output
        return torch.nn.functional.normalize(text.float(), dim=-1)

    @torch.no_grad()
    def zero_shot_accuracy(
        self,
        images: Tensor | None = None,
        labels: Tensor | None = None,
        batch_size: int = 256,
        ignore: tuple[str, ...] = (),
    ) -> Tensor:
        """Share of `images` (default: the held-out pairs) whose nearest class prompt
        ensemble is their label (blind to the `ignore` words' attribute when given)."""
        images = self.zero_shot_images if images is None else images
        labels = self.zero_shot_labels if labels is None else labels
        was_training = self.model.training
        self.model.eval()
        classes = self.class_embeddings(self.class_names, ignore=ignore)
        correct = 0
        for start in range(0, len(images), batch_size):
            predicted = (self.embed(images[start : start + batch_size]) @ classes.T).argmax(dim=1)
            correct += int((predicted == labels[start : start + batch_size]).sum())
        self.model.train(was_training)
        return torch.tensor(correct / max(len(images), 1))

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) uint8 -> (B, projection_dim) normalised image embeddings."""
        features = self.model.get_image_features(pixel_values=self.pixels(images))
        features = features if isinstance(features, Tensor) else features.pooler_output
        return torch.nn.functional.normalize(features.float(), dim=-1)

    def export(self, out_dir: Path) -> None:
        folder = out_dir / "pretrained"
        self.model.save_pretrained(folder)
        if self.tokenizer is not None:
            size = self.config.image_size
            image_processor = CLIPImageProcessor(
                size={"shortest_edge": size}, crop_size={"height": size, "width": size}
            )
            CLIPProcessor(
                image_processor=image_processor, tokenizer=self.tokenizer
            ).save_pretrained(folder)
