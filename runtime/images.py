"""Reading query images: any file pillow reads -> the preset's normalised (C, H, W) array.

Preprocessing is a chain of small steps, one function each (:func:`preprocess` runs them):
:func:`flatten_alpha` (transparent areas onto the background the model expects),
:func:`to_8bit` (16-bit greys scaled, not clipped), for drawings :func:`isolate_ink` (any
polarity, lighting and framing -> bright ink on black, cropped to the ink), :func:`resize_crop`,
:func:`normalise`.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageFilter, UnidentifiedImageError

from .errors import VpklInputError

MAX_SIDE = 1024  # px: a larger image is box-reduced to this first, so preprocessing never holds a huge one
MIN_SIDE = 5  # px: the smallest side that can carry a drawing (a 5 x 7 dot-matrix digit); 1 x 1 is refused
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # "I": 32-bit ints, read as 16-bit (PNG, TIFF)


@dataclass(frozen=True)
class ImageConfig:
    """Image preprocessing; stored in a bundle's ``config.json`` under ``image``.

    ``mode`` is a pillow mode ("L" grey or "RGB"); the image is resized (bilinear) so its
    short side is ``resize`` px, centre-cropped to ``size`` x ``size``, scaled to [0, 1] and
    normalised per channel with ``mean``/``std``. ``background`` is the grey level in [0, 1]
    that transparent areas are composited onto: 0 (black), the digits model's training images'
    background (bright ink on dark). ``drawing``: the queries are drawings of ink on a plain
    ground (the digits preset): :func:`isolate_ink` runs, and ``margin`` is the space it leaves
    around the ink, as a share of the ink's longer side (0 for the digits preset, whose training
    digits touch the top and bottom of their 8 x 8 grid).
    """

    mode: str = "RGB"
    resize: int = 256
    size: int = 224
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    background: float = 0.0
    drawing: bool = False
    margin: float = 0.0

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


def flatten_alpha(img: Image.Image, background: float, drawing: bool = False) -> Image.Image:
    """An image with transparency -> RGB composited onto grey ``background`` (0..1); others unchanged.

    Pillow's own conversion drops the alpha channel, so whatever colour lies under the
    transparent areas (often white) would be read as the drawing's background. For a drawing
    (``drawing``) the ground is chosen against the ink instead: black under light ink, white
    under dark ink (:func:`_ground_against_ink`), so strokes drawn on a transparent sheet stay
    visible whatever their colour.
    """
    if img.mode not in ALPHA_MODES and "transparency" not in img.info:
        return img
    rgba = img.convert("RGBA")
    if drawing:
        a = np.asarray(rgba, np.float64)
        opaque = a[..., 3] > 127
        grey = a[..., :3].mean(axis=-1)
        background = _ground_against_ink(grey, opaque)
    v = int(round(255 * background))
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (v, v, v, 255)), rgba).convert("RGB")


def _ground_against_ink(grey: np.ndarray, opaque: np.ndarray) -> float:
    """The grey (0 or 1) to lay under the transparent areas of a drawing.

    Ink of one colour (opaque greys within 20 levels): the ground opposite to it. Otherwise the
    opaque pixels shade from ink into ground, and those touching the transparent areas show
    the ground: their median grey, snapped to black or white.
    """
    if not opaque.any() or opaque.all():
        return 0.0
    inked = grey[opaque]
    if inked.std() < 20:
        return 0.0 if inked.mean() >= 127.5 else 1.0
    clear = ~opaque
    near = np.zeros_like(clear)
    near[1:] |= clear[:-1]
    near[:-1] |= clear[1:]
    near[:, 1:] |= clear[:, :-1]
    near[:, :-1] |= clear[:, 1:]
    edge = grey[near & opaque]
    return 1.0 if np.median(edge) >= 127.5 else 0.0


def to_8bit(img: Image.Image) -> Image.Image:
    """16-bit grey (0..65535) -> 8-bit grey "L" by x / 257, rounded; others unchanged.

    Pillow's conversion of such images to "L" clips at 255, which turns almost every grey white.
    """
    if img.mode not in SIXTEEN_BIT_MODES:
        return img
    x = np.clip(np.asarray(img).astype(np.float64), 0, 65535) / 257.0
    return Image.fromarray(np.round(x).astype(np.uint8), "L")


def isolate_ink(img: Image.Image, margin: float) -> Image.Image:
    """A drawing of any polarity, lighting and framing -> "L" bright ink on black, cropped to the ink.

    1. Polarity: the paper is the median grey of the image's outer ring (5% of the short side);
       when it is lighter than mid-way between the darkest and lightest grey, the ink is dark
       and the image is inverted.

    Images under 32 px a side are digit grids like the model's training images (8 x 8): nothing
    more is done to them. Larger ones (a drawing scanned or photographed) go on:

    2. Uneven light: the paper's own brightness is estimated by a grey opening (minimum then
       maximum filter) wider than the strokes, on a copy scaled to 64 px, and subtracted; what
       remains is ink.
    3. Contrast: scaled so the 99th percentile of the ink is 255.
    4. Framing: cropped to the box of the pixels above a third of that (ignoring specks: rows and
       columns need 2% of their length inked, at least one pixel), centred in a square whose side
       is the box's longer side plus ``margin`` of it on each side, black around.
    """
    g = np.asarray(img.convert("L"), np.float64)
    h, w = g.shape
    r = max(1, round(0.05 * min(h, w)))
    ring = np.concatenate([g[:r].ravel(), g[-r:].ravel(), g[:, :r].ravel(), g[:, -r:].ravel()])
    if np.median(ring) > 0.5 * (g.min() + g.max()):
        g = 255.0 - g
    if min(h, w) < 32:
        return Image.fromarray(np.round(g).astype(np.uint8), "L")
    s = 64 / min(h, w)
    small = Image.fromarray(np.round(g).astype(np.uint8), "L").resize(
        (max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR)
    paper = small.filter(ImageFilter.MinFilter(15)).filter(ImageFilter.MaxFilter(15))
    paper = paper.filter(ImageFilter.GaussianBlur(3)).resize((w, h), Image.BILINEAR)
    g = np.maximum(g - np.asarray(paper, np.float64), 0.0)
    top = np.percentile(g[g > 0], 99) if np.any(g > 0) else 0.0
    if top <= 0:
        return Image.fromarray(np.zeros_like(g, np.uint8), "L")
    g = np.clip(g * (255.0 / top), 0, 255)
    ink = g > 255.0 / 3
    rows = np.flatnonzero(ink.sum(axis=1) >= max(1, 0.02 * w))
    cols = np.flatnonzero(ink.sum(axis=0) >= max(1, 0.02 * h))
    if len(rows) == 0 or len(cols) == 0:
        return Image.fromarray(g.astype(np.uint8), "L")
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    side = int(round(max(y1 - y0, x1 - x0) * (1 + 2 * margin)))
    out = np.zeros((side, side), np.float64)
    oy, ox = (side - (y1 - y0)) // 2, (side - (x1 - x0)) // 2
    out[oy:oy + y1 - y0, ox:ox + x1 - x0] = g[y0:y1, x0:x1]
    return Image.fromarray(np.round(out).astype(np.uint8), "L")


def resize_crop(img: Image.Image, cfg: ImageConfig) -> Image.Image:
    """Resize (bilinear) so the short side is ``cfg.resize`` px, then centre-crop ``cfg.size`` square."""
    w, h = img.size
    s = cfg.resize / min(w, h)
    img = img.resize((max(cfg.size, round(w * s)), max(cfg.size, round(h * s))), Image.BILINEAR)
    w, h = img.size
    left, top = (w - cfg.size) // 2, (h - cfg.size) // 2
    return img.crop((left, top, left + cfg.size, top + cfg.size))


def normalise(img: Image.Image, cfg: ImageConfig) -> np.ndarray:
    """8-bit image in ``cfg.mode`` -> (C, H, W) float32: x / 255, minus mean, over std, per channel."""
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
    mean = np.asarray(cfg.mean, np.float32)[:, None, None]
    std = np.asarray(cfg.std, np.float32)[:, None, None]
    return (x - mean) / std


def preprocess(img: Image.Image, cfg: ImageConfig) -> np.ndarray:
    """Pillow image -> (C, size, size) float32 network input (the steps of the module docstring)."""
    img = to_8bit(flatten_alpha(img, cfg.background, cfg.drawing)).convert(cfg.mode)
    if cfg.drawing:
        img = isolate_ink(img, cfg.margin).convert(cfg.mode)
    return normalise(resize_crop(img, cfg), cfg)


def check_size(img: Image.Image, path: str) -> None:
    """Refuse an image with a side under MIN_SIDE px: it cannot carry a drawing (VpklInputError naming ``path``)."""
    w, h = img.size
    if min(w, h) < MIN_SIDE:
        raise VpklInputError(f"{path}: a {w} x {h} pixel image is too small to show a query "
                             f"(expected at least {MIN_SIDE} x {MIN_SIDE})")


def shrink(img: Image.Image) -> Image.Image:
    """An image with a side over MAX_SIDE px -> box-reduced by a whole factor to fit; others unchanged.

    Done before any other step: a 13000 x 13000 drawing took 4.8 GB through the float steps.
    A query is seen at 224 px at most, so nothing the model uses is lost.
    """
    if max(img.size) <= MAX_SIDE:
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode in SIXTEEN_BIT_MODES:
        img = to_8bit(img)
    return img.reduce(-(-max(img.size) // MAX_SIDE))


def read_image(path, cfg: ImageConfig) -> np.ndarray:
    """Read an image file and preprocess it.

    Images up to twice pillow's ``Image.MAX_IMAGE_PIXELS`` (its decompression-bomb limit: about
    179 M pixels, e.g. 13000 x 13000) are read, JPEGs decoded at a reduced scale and others reduced at once
    (:func:`shrink`); larger ones are refused before they are decoded.

    Returns:
        (C, size, size) float32.
    Raises:
        VpklInputError: the file is missing, not an image pillow can decode, too large, or
            smaller than MIN_SIDE px on a side.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VpklInputError(f"{path}: no such image file")
    if not os.path.isfile(path):
        raise VpklInputError(f"{path}: is a folder, expected an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None   # vpkl's own limit, just below
            try:
                img = Image.open(path)   # reads the header only
            finally:
                Image.MAX_IMAGE_PIXELS = limit
            with img:
                w, h = img.size
                if limit is not None and w * h > 2 * limit:
                    raise VpklInputError(f"{path}: {w} x {h} pixels is too large for a query image (at most "
                                         f"{2 * limit / 1e6:.0f} M pixels); scale it down")
                check_size(img, path)
                img.draft(img.mode, (MAX_SIDE, MAX_SIDE))   # JPEG: decode at a reduced scale
                img.load()
                return preprocess(shrink(img), cfg)
    except VpklInputError:
        raise
    except PermissionError:
        raise VpklInputError(f"{path}: permission denied: the image cannot be read") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise VpklInputError(f"{path}: not a readable image ({e})") from None
