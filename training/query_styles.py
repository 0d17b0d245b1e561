"""Digit images as people make query images: drawn dark on light paper, resized, photographed.

The recipe's digit images are 8 x 8 bright ink on black (UCI optdigits). A user draws a digit
dark on white paper, or photographs a printed one under a desk lamp. :func:`render` turns an
8 x 8 digit into such an image, for evaluation query folders (``vpkl make-dataset`` writes one
folder per style) and for training augmentation:

- ``shipped``: the 8 x 8 image as it is (bright ink on black);
- ``dark``: dark ink on light paper, 8 x 8;
- ``resized``: bright ink on black, drawn into a larger canvas (96-320 px, any aspect) with a
  margin and an offset, smoothly upscaled;
- ``photo``: dark ink on paper photographed: RGB, 160-480 px, off-centre, rotated up to 12
  degrees, thicker or thinner strokes, paper tint, a lighting gradient (uneven light), sensor
  noise, blur and JPEG compression.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

STYLES = ("shipped", "dark", "resized", "photo")


def _canvas(rng: np.random.Generator, digit: Image.Image, side: tuple, fill_h: float) -> Image.Image:
    """Paste the (upscaled) digit, its height ``fill_h`` of the canvas, at a random offset; black elsewhere."""
    w, h = side
    dh = max(8, int(round(fill_h * h)))
    dw = max(6, int(round(dh * digit.width / digit.height)))
    big = digit.resize((dw, dh), Image.BICUBIC)
    canvas = Image.new("L", (w, h), 0)
    x = int(rng.integers(0, max(1, w - dw + 1)))
    y = int(rng.integers(0, max(1, h - dh + 1)))
    canvas.paste(big, (x, y))
    return canvas


def render(digit: np.ndarray, style: str, rng: np.random.Generator) -> Image.Image:
    """An (8, 8) uint8 bright-on-black digit -> a pillow image in ``style`` (see module docstring).

    Raises:
        ValueError: an unknown style.
    """
    src = Image.fromarray(np.asarray(digit, np.uint8), "L")
    if style == "shipped":
        return src
    if style == "dark":
        return Image.fromarray(255 - np.asarray(src), "L")
    if style == "resized":
        side = (int(rng.integers(96, 321)), int(rng.integers(96, 321)))
        return _canvas(rng, src, side, float(rng.uniform(0.35, 0.8)))
    if style != "photo":
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    side = (int(rng.integers(160, 481)), int(rng.integers(160, 481)))
    ink = _canvas(rng, src, side, float(rng.uniform(0.35, 0.75)))
    ink = ink.rotate(float(rng.uniform(-12, 12)), resample=Image.BILINEAR)
    k = int(rng.choice([1, 3, 5, 7]))
    if k > 1:    # stroke width: thicker (max filter) or thinner (min filter)
        ink = ink.filter(ImageFilter.MaxFilter(k) if rng.random() < 0.6 else ImageFilter.MinFilter(min(k, 3)))
    a = np.asarray(ink, np.float64) / 255.0
    h, w = a.shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    angle = rng.uniform(0, 2 * np.pi)
    light = 0.55 + 0.45 * (0.5 + 0.5 * np.cos(angle) * (xx - 0.5) * 2 + 0.5 * np.sin(angle) * (yy - 0.5) * 2)
    light = np.clip(light, 0.35, 1.0)
    paper = np.array([rng.uniform(0.8, 1.0), rng.uniform(0.78, 1.0), rng.uniform(0.7, 0.95)])
    ink_colour = np.array([rng.uniform(0, 0.25)] * 3) + rng.uniform(0, 0.1, 3)
    rgb = (paper[None, None] * (1 - a[..., None]) + ink_colour[None, None] * a[..., None]) * light[..., None]
    rgb = rgb + rng.normal(0, rng.uniform(0.005, 0.03), rgb.shape)
    img = Image.fromarray(np.clip(rgb * 255, 0, 255).astype(np.uint8), "RGB")
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.5))))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(35, 90)))
    buf.seek(0)
    return Image.open(buf).convert("RGB")
