"""Image decoding (Pillow) and augmentation (torch ops; no torchvision needed).

Images leave the loader as uint8 tensors: four times less inter-process traffic than
float, and the model normalises them on the device. Anything Pillow cannot decode, a
decompression bomb (Pillow's guard stays on) or bytes that do not match the stored sha256
raises ``BadSample``, which the loader counts and skips.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# RGB mean/std of the usual ImageNet-trained ViTs, in the 0..1 range; the model applies them.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class BadSample(ValueError):
    """A sample that cannot be used; ``reason`` is the counter it is logged under."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def decode(data: bytes, size: int, sha256: str | None = None) -> torch.Tensor:
    """JPEG/PNG/WEBP bytes -> uint8 tensor (3, H, W), decoded at no less than ``size``.

    ``draft`` lets libjpeg decode large JPEGs at a reduced scale directly, which is most
    of the decode time saved for web-size images trained at 224 px or below.
    """
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise BadSample("image_sha256_mismatch", "image bytes do not match image.sha256")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            img.draft("RGB", (size, size))
            arr = np.asarray(img.convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadSample("image_bomb", str(err)) from err
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise BadSample("image_undecodable", f"{type(err).__name__}: {err}") from err
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise BadSample("image_undecodable", f"unexpected decoded shape {arr.shape}")
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def _resize(img: torch.Tensor, size: int) -> torch.Tensor:
    out = F.interpolate(img[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out[0].round_().clamp_(0, 255).to(torch.uint8)


def random_resized_crop(img: torch.Tensor, size: int, scale: tuple[float, float], rng: random.Random,
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), hflip: bool = False) -> torch.Tensor:
    """Inception-style crop: area fraction in ``scale``, aspect in ``ratio``, then resize.

    Falls back to the whole image after 10 failed draws (as torchvision does).
    """
    _, h, w = img.shape
    area = h * w
    box = (0, 0, h, w)
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = rng.randint(0, h - ch), rng.randint(0, w - cw)
            box = (top, left, ch, cw)
            break
    top, left, ch, cw = box
    out = _resize(img[:, top : top + ch, left : left + cw], size)
    if hflip and rng.random() < 0.5:
        out = out.flip(-1)
    return out


def center_resize(img: torch.Tensor, size: int) -> torch.Tensor:
    """Evaluation transform: the whole image resized to ``size`` (no crop, no flip)."""
    return _resize(img, size)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, scaled to 0..1 and standardised with MEAN/STD."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std
