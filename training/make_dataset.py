"""`vpkl make-dataset`: evaluation manifests and query folders for the digits recipe.

Writes, under OUT:
- ``val/manifest.jsonl`` + WAVs: the four training speakers' held-back recordings;
- ``test/manifest.jsonl`` + WAVs: the held-out speaker (george, or ``--held-out-speaker``);
- ``queries/``: ``{keyword}_{n}.png`` held-out (test-split) digit images, ``per_keyword`` each;
- ``val_queries/``: the same from the validation split.
Utterances come from the same seeded generator as the training recipe's validation.
"""
from __future__ import annotations

import os
import re

import numpy as np
import soundfile as sf
from PIL import Image

from vpkl.evaluation.manifest import write_manifest
from vpkl.runtime.errors import VpklInputError

from . import digits_data as dd
from .query_styles import STYLES, render


def check_per_keyword(split: str, per_keyword: int):
    """The split's digit images and labels; VpklInputError unless 1 <= per_keyword <= the fewest per keyword."""
    images, labels = dd.digit_images(split)
    most = int(min(np.sum(labels == k) for k in range(len(dd.KEYWORDS))))
    if not 1 <= per_keyword <= most:
        raise VpklInputError(f"--per-keyword: expected 1 to {most} (images per keyword in the {split} split), "
                             f"got {per_keyword}")
    return images, labels


def write_queries(folder: str, split: str, per_keyword: int, style: str = "shipped", seed: int = 0) -> int:
    """Write ``per_keyword`` digit images per keyword, drawn in ``style``
    (:mod:`vpkl.training.query_styles`; photos as JPEG); replaces images an earlier run wrote there."""
    images, labels = check_per_keyword(split, per_keyword)
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    ext = ".jpg" if style == "photo" else ".png"
    ours = re.compile(rf"^({'|'.join(dd.KEYWORDS)})_{split}\d+\.(png|jpg)$")
    for f in os.listdir(folder):
        if ours.match(f):
            os.remove(os.path.join(folder, f))
    n = 0
    for k, kw in enumerate(dd.KEYWORDS):
        for j, i in enumerate(np.flatnonzero(labels == k)[:per_keyword]):
            render(images[i], style, rng).save(os.path.join(folder, f"{kw}_{split}{j:02d}{ext}"))
            n += 1
    return n


def write_split(folder: str, data: str, split: str, n: int, seed: int, held_out: str = dd.HELD_OUT_SPEAKER) -> None:
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(dd.split_seed(split, seed))
    recs = dd.load_fsdd(data, split, held_out)
    rows = []
    for i in range(n):
        u = dd.synthesize(rng, recs)
        name = f"{split}_{i:04d}.wav"
        sf.write(os.path.join(folder, name), u.samples, dd.SAMPLE_RATE, subtype="PCM_16")
        rows.append({"audio": name, "words": [[w, round(a, 4), round(b, 4)] for w, a, b in u.words],
                     "snr_db": round(u.snr_db, 2), "peak_dbfs": round(u.peak_dbfs, 2)})
    write_manifest(os.path.join(folder, "manifest.jsonl"), rows)


def make_dataset(data: str, out: str, n_val: int = 400, n_test: int = 500, per_keyword: int = 5,
                 seed: int = 0, force: bool = False, held_out: str = dd.HELD_OUT_SPEAKER) -> dict:
    """Write the evaluation data (see module docstring); refuses a non-empty OUT without ``force``.
    ``held_out``: the FSDD speaker of the test split, kept out of validation (a fold's speaker)."""
    if os.path.isdir(out) and os.listdir(out) and not force:
        raise VpklInputError(f"{out}: exists and is not empty; pass --force to write into it")
    for name, v in (("--val", n_val), ("--test", n_test)):
        if v < 1:
            raise VpklInputError(f"{name}: expected at least 1 utterance, got {v}")
    check_per_keyword("test", per_keyword)
    check_per_keyword("val", per_keyword)
    write_split(os.path.join(out, "val"), data, "val", n_val, seed, held_out)
    write_split(os.path.join(out, "test"), data, "test", n_test, seed, held_out)
    q = write_queries(os.path.join(out, "queries"), "test", per_keyword)
    write_queries(os.path.join(out, "val_queries"), "val", per_keyword)
    for style in STYLES[1:]:   # the same digits as people draw and photograph them
        write_queries(os.path.join(out, f"queries_{style}"), "test", per_keyword, style, seed=2)
        write_queries(os.path.join(out, f"val_queries_{style}"), "val", per_keyword, style, seed=1)
    return {"val": n_val, "test": n_test, "query_images": q, "out": out}


ATTRIBUTION = """# Attribution

The example utterances `example_*.wav` are made from recordings of the
Free Spoken Digit Dataset (FSDD), https://github.com/Jakobovski/free-spoken-digit-dataset,
by Zohar Jackson and contributors, licensed CC BY-SA 4.0
(https://creativecommons.org/licenses/by-sa/4.0/). Changes: recordings of the speaker
"{speaker}" were resampled to 16 kHz, concatenated with pauses, scaled and mixed with
synthetic noise. These derived files are shared under the same licence, CC BY-SA 4.0.

The query images in `queries/` are handwritten digits from the UCI Optical Recognition of
Handwritten Digits data set (Alpaydin & Kaynak, 1998; CC BY 4.0) as bundled with
scikit-learn (`sklearn.datasets.load_digits`), scaled from 0-16 to 0-255.
"""


def write_examples(data: str, out: str, n: int = 4, per_keyword: int = 3, seed: int = 7) -> dict:
    """The demo's shipped examples: ``n`` held-out-speaker utterances, ``examples.jsonl``
    (with the truth), ``per_keyword`` test-split query images per keyword, ATTRIBUTION.md."""
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(dd.split_seed("test", seed))
    recs = dd.load_fsdd(data, "test")
    rows = []
    for i in range(n):
        u = dd.synthesize(rng, recs, snr_db=(10.0, 30.0))
        name = f"example_{i + 1}.wav"
        sf.write(os.path.join(out, name), u.samples, dd.SAMPLE_RATE, subtype="PCM_16")
        rows.append({"audio": name, "words": [[w, round(a, 3), round(b, 3)] for w, a, b in u.words],
                     "snr_db": round(u.snr_db, 1), "peak_dbfs": round(u.peak_dbfs, 1)})
    write_manifest(os.path.join(out, "examples.jsonl"), rows)
    q = write_queries(os.path.join(out, "queries"), "test", per_keyword)
    with open(os.path.join(out, "ATTRIBUTION.md"), "w") as f:
        f.write(ATTRIBUTION.format(speaker=dd.HELD_OUT_SPEAKER))
    return {"examples": n, "query_images": q, "out": out}
