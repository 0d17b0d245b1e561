"""Reading query images: any file pillow reads -> the preset's normalised (C, H, W) array."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import VpklInputError


@dataclass(frozen=True)
class ImageConfig:
    """Image preprocessing; stored in a bundle's ``config.json`` under ``image``.

    ``mode`` is a pillow mode ("L" grey or "RGB"); the image is resized (bilinear) so its
    short side is ``resize`` px, centre-cropped to ``size`` x ``size``, scaled to [0, 1] and
    normalised per channel with ``mean``/``std``.
    """

    mode: str = "RGB"
    resize: int = 256
    size: int = 224
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ImageConfig":
        d = dict(d)
        d["mean"], d["std"] = tuple(d["mean"]), tuple(d["std"])
        return cls(**d)

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3


def preprocess(img: Image.Image, cfg: ImageConfig) -> np.ndarray:
    """Pillow image -> (C, size, size) float32 network input."""
    img = img.convert(cfg.mode)
    w, h = img.size
    s = cfg.resize / min(w, h)
    img = img.resize((max(cfg.size, round(w * s)), max(cfg.size, round(h * s))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - cfg.size) // 2, (h - cfg.size) // 2
    img = img.crop((left, top, left + cfg.size, top + cfg.size))
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
    mean = np.asarray(cfg.mean, np.float32)[:, None, None]
    std = np.asarray(cfg.std, np.float32)[:, None, None]
    return (x - mean) / std


def read_image(path, cfg: ImageConfig) -> np.ndarray:
    """Read an image file and preprocess it.

    Returns:
        (C, size, size) float32.
    Raises:
        VpklInputError: the file is missing or is not an image pillow can decode.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VpklInputError(f"{path}: no such image file")
    if not os.path.isfile(path):
        raise VpklInputError(f"{path}: is a folder, expected an image file")
    try:
        with Image.open(path) as img:
            img.load()
            return preprocess(img, cfg)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise VpklInputError(f"{path}: not a readable image ({e})") from None
