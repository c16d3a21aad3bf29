"""Decoding one user image to a stored square: what the import's worker processes run.

Kept apart from `engine.data.user_images` so a worker process (started with spawn) imports only
PIL and numpy, not torch: it starts in a fraction of a second.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def decode_image(task: tuple[str, int, int]) -> np.ndarray | str:
    """One image as (3, size, size) uint8, or "corrupt" / "too_large"; runs in a pool worker.

    The shorter side is resized to `size` (bicubic, antialiased), then the centre square is cut:
    the whole width of a portrait photo's middle, nothing stretched. A JPEG at least four times
    the size is decoded at a reduced scale first (`Image.draft`, DCT scaling, never below twice
    the size), which is several times faster and loses nothing the resize would keep."""
    path, size, max_pixels = task
    try:
        with Image.open(path) as img:
            if img.width * img.height > max_pixels:
                return "too_large"
            if img.format == "JPEG":
                img.draft("RGB", (2 * size, 2 * size))
            img = img.convert("RGB")
            scale = size / min(img.width, img.height)
            w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
            img = img.resize((w, h), Image.Resampling.BICUBIC, reducing_gap=2.0)
            left, top = (w - size) // 2, (h - size) // 2
            square = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
            return np.ascontiguousarray(square.transpose(2, 0, 1))
    except Image.DecompressionBombError:
        return "too_large"
    except (OSError, ValueError, SyntaxError):
        return "corrupt"
