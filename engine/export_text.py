"""The text an export writes beside the weights: the conv trunks' `load.py` and the loading
snippets of the transformers models (shown in the model card). Plain strings, no imports of
the studio: `load.py` must run with torch, safetensors (and torchvision for a ResNet) alone;
tests/engine/test_export.py runs it against every conv method's `embed`.
"""

from __future__ import annotations

from typing import Any

LOAD_HEAD = '''"""Rebuild this {method} encoder ({architecture}) with plain PyTorch and load its weights.

    from load import load_encoder, preprocess
    encoder = load_encoder()                   # eval mode
    features = encoder(preprocess(images))     # uint8 (B, 3, H, W) -> (B, {feature_dim})

Written by Pretext Studio's export; needs torch and safetensors{needs}.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

HERE = Path(__file__).resolve().parent
CONFIG = json.loads((HERE / "config.json").read_text())
'''

BUILD_RESNET = '''

def build(config):
    """A torchvision ResNet without its classifier, with the stem the run trained."""
    import torchvision

    net = getattr(torchvision.models, config["architecture"])(weights=None)
    stem = config["stem"]
    net.conv1 = nn.Conv2d(
        stem["in_channels"], 64, stem["kernel_size"], stem["stride"], stem["padding"], bias=False
    )
    if not config["maxpool"]:
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net
'''

BUILD_CONVNET = '''

class ConvNet(nn.Module):
    """3x3 conv-BN-ReLU layers of widths w | w, 2w, 2w | 4w, 4w | 8w, 2x2 max pools between
    the groups, then the mean over positions: (B, C, H, W) -> (B, 8w)."""

    def __init__(self, width, in_channels):
        super().__init__()

        def block(i, o):
            return nn.Sequential(
                nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()
            )

        w, pool = width, nn.MaxPool2d(2, ceil_mode=True)
        self.conv1 = nn.Conv2d(in_channels, w, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.body = nn.Sequential(
            block(w, w), pool, block(w, 2 * w), block(2 * w, 2 * w), pool,
            block(2 * w, 4 * w), block(4 * w, 4 * w), pool, block(4 * w, 8 * w),
        )  # fmt: skip

    def forward(self, x):
        return self.body(self.bn1(self.conv1(x)).relu()).mean(dim=(2, 3))


def build(config):
    return ConvNet(config["width"], config["stem"]["in_channels"])
'''

LOAD = """

def load_encoder(folder=HERE):
    config = json.loads((Path(folder) / "config.json").read_text())
    net = build(config)
    net.load_state_dict(load_file(str(Path(folder) / "model.safetensors")))
    return net.eval()
"""

PREPROCESS = {
    "imagenet": '''

def preprocess(images):
    """uint8 (B, 3, H, W) RGB -> float, normalised with the ImageNet mean and std."""
    mean = torch.tensor(CONFIG["mean"])[:, None, None]
    std = torch.tensor(CONFIG["std"])[:, None, None]
    return (images.float() / 255 - mean) / std
''',
    "standardize": '''

def preprocess(images):
    """uint8 (B, 3, H, W) RGB -> each image and channel at zero mean, unit std (as the
    jigsaw tiles were in training)."""
    x = images.float() / 255
    return (x - x.mean(dim=(-2, -1), keepdim=True)) / (x.std(dim=(-2, -1), keepdim=True) + 1e-2)
''',
    "lightness": '''

def preprocess(images):
    """uint8 (B, 3, H, W) sRGB -> (B, 1, H, W) CIE L (D65) scaled to about [-1, 1], the
    grey input colorization trained on."""
    rgb = images.float() / 255
    linear = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    y = torch.einsum("c,bchw->bhw", torch.tensor([0.212671, 0.715160, 0.072169]), linear)
    delta = 6 / 29
    f = torch.where(y > delta**3, y.clamp(min=1e-12) ** (1 / 3), y / (3 * delta**2) + 4 / 29)
    return ((116 * f - 16 - 50) / 50)[:, None]
''',
}


def load_script(config: dict[str, Any]) -> str:
    """The text of load.py for an exported conv trunk: only the builder and preprocessing
    this trunk needs."""
    convnet = config["architecture"] == "convnet"
    head = LOAD_HEAD.format(
        method=config["method"],
        architecture=config["architecture"],
        feature_dim=config["feature_dim"],
        needs="" if convnet else " (and torchvision)",
    )
    build = BUILD_CONVNET if convnet else BUILD_RESNET
    return head + build + LOAD + PREPROCESS[config["input"]]


# method -> Python that loads its export (`folder` is where it lies, or its Hub repo id)
SNIPPETS = {
    "dino": """
from transformers import AutoImageProcessor, AutoModel

folder = "."  # this folder, or the Hub repo id after a push
model = AutoModel.from_pretrained(folder).eval()  # ViTModel: DINO's teacher
processor = AutoImageProcessor.from_pretrained(folder)
inputs = processor(images=images, return_tensors="pt")  # PIL images or (3, H, W) uint8 arrays
features = model(**inputs).last_hidden_state[:, 0]  # DINO's feature: the final [CLS] token
""",
    "dinov2": """
from transformers import AutoImageProcessor, AutoModel

folder = "."  # this folder, or the Hub repo id after a push
model = AutoModel.from_pretrained(folder).eval()  # Dinov2Model: DINOv2's teacher
processor = AutoImageProcessor.from_pretrained(folder)
inputs = processor(images=images, return_tensors="pt")  # PIL images or (3, H, W) uint8 arrays
features = model(**inputs).pooler_output  # the final [CLS] token, layer-normed
patches = model(**inputs).last_hidden_state[:, 1:]  # patch features (iBOT trained them too)
""",
    "mae": """
from transformers import AutoImageProcessor, AutoModel, ViTMAEForPreTraining

folder = "."  # this folder, or the Hub repo id after a push
model = AutoModel.from_pretrained(folder, mask_ratio=0.0).eval()  # the ViT-MAE encoder
processor = AutoImageProcessor.from_pretrained(folder)
inputs = processor(images=images, return_tensors="pt")
features = model(**inputs).last_hidden_state[:, 1:].mean(dim=1)  # mean of the patch tokens
reconstruct = ViTMAEForPreTraining.from_pretrained(folder)  # encoder + decoder
""",
    "beit": """
from transformers import AutoImageProcessor, BeitForMaskedImageModeling

folder = "."  # this folder, or the Hub repo id after a push
model = BeitForMaskedImageModeling.from_pretrained(folder).eval()
processor = AutoImageProcessor.from_pretrained(folder)
inputs = processor(images=images, return_tensors="pt")
hidden = model.beit(**inputs).last_hidden_state
features = model.layernorm(hidden[:, 1:]).mean(dim=1)  # mean of the final patch tokens
""",
    "clip": """
from transformers import CLIPModel, CLIPProcessor

folder = "."  # this folder, or the Hub repo id after a push
model = CLIPModel.from_pretrained(folder).eval()
processor = CLIPProcessor.from_pretrained(folder)
captions = ["a red circle", "a blue square"]
inputs = processor(text=captions, images=images, return_tensors="pt", padding=True)
probs = model(**inputs).logits_per_image.softmax(dim=-1)  # (images, captions)
""",
    "bert": """
from transformers import pipeline

fill = pipeline("fill-mask", model=".")  # this folder, or the Hub repo id after a push
fill(f"the {fill.tokenizer.mask_token} is on the left")
""",
    "gpt": """
from transformers import pipeline

generate = pipeline("text-generation", model=".")  # this folder, or the Hub repo id
generate("the", max_new_tokens=20)
""",
    "t5": """
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

folder = "."  # this folder, or the Hub repo id after a push
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
ids = tokenizer("a red <extra_id_0> on the left", return_tensors="pt").input_ids
print(tokenizer.decode(model.generate(ids, max_new_tokens=10)[0]))
""",
    "default": """
from transformers import AutoModel

model = AutoModel.from_pretrained(".")  # this folder, or the Hub repo id after a push
""",
}
