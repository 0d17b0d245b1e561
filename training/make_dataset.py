"""`vpkl make-dataset`: evaluation manifests and query folders for the digits recipe.

Writes, under OUT:
- ``val/manifest.jsonl`` + WAVs: the training speakers' held-back recordings (0-4 of each);
- ``test/manifest.jsonl`` + WAVs: the held-out speaker (george, or ``--held-out-speaker``; none
  with ``--held-out-speaker none``, whose validation then holds every speaker);
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
                 seed: int = 0, force: bool = False, held_out: str | None = dd.HELD_OUT_SPEAKER) -> dict:
    """Write the evaluation data (see module docstring); refuses a non-empty OUT without ``force``.
    ``held_out``: the FSDD speaker of the test split, kept out of validation (a fold's speaker);
    None: validation holds every speaker (a model trained on all five) and no test split is written."""
    if os.path.isdir(out) and os.listdir(out) and not force:
        raise VpklInputError(f"{out}: exists and is not empty; pass --force to write into it")
    for name, v in (("--val", n_val), ("--test", n_test)):
        if v < 1:
            raise VpklInputError(f"{name}: expected at least 1 utterance, got {v}")
    check_per_keyword("test", per_keyword)
    check_per_keyword("val", per_keyword)
    write_split(os.path.join(out, "val"), data, "val", n_val, seed, held_out)
    if held_out is not None:
        write_split(os.path.join(out, "test"), data, "test", n_test, seed, held_out)
    q = write_queries(os.path.join(out, "queries"), "test", per_keyword)
    write_queries(os.path.join(out, "val_queries"), "val", per_keyword)
    for style in STYLES[1:]:   # the same digits as people draw and photograph them
        write_queries(os.path.join(out, f"queries_{style}"), "test", per_keyword, style, seed=2)
        write_queries(os.path.join(out, f"val_queries_{style}"), "val", per_keyword, style, seed=1)
    return {"val": n_val, "test": n_test if held_out is not None else 0, "query_images": q, "out": out}


ATTRIBUTION = """# Attribution

The example utterances `example_*.wav` are made from recordings of the
Free Spoken Digit Dataset (FSDD), https://github.com/Jakobovski/free-spoken-digit-dataset,
by Zohar Jackson and contributors, licensed CC BY-SA 4.0
(https://creativecommons.org/licenses/by-sa/4.0/). Changes: recordings of the speakers
{speakers} were resampled to 16 kHz, concatenated with pauses, scaled and mixed with
synthetic noise. These derived files are shared under the same licence, CC BY-SA 4.0.

`{word_example}` also holds the word "{word}" from the Speech Commands data set v0.01
(Warden, 2017; https://arxiv.org/abs/1804.03209), licensed CC BY 4.0
(https://creativecommons.org/licenses/by/4.0/): the file `{word_file}`, trimmed to the
word, scaled and mixed in the same way.

The query images in `queries/` are handwritten digits from the UCI Optical Recognition of
Handwritten Digits data set (Alpaydin & Kaynak, 1998; CC BY 4.0) as bundled with
scikit-learn (`sklearn.datasets.load_digits`), scaled from 0-16 to 0-255.

The query images in `queries_photo/` are the first test-split digit of each keyword from the
same UCI data, drawn by vpkl as a photographed sheet would show them (dark ink on tinted paper,
enlarged, rotated, under uneven light, with noise, blur and JPEG compression; `vpkl.training.
query_styles`), under the same licence, CC BY 4.0.
"""

# Each example is one speaker; the third has a word that is no keyword, the fourth a pause of
# digital silence (a device that went idle).
EXAMPLE_SPEAKERS = ("george", "jackson", "yweweler", "nicolas")
WORD_EXAMPLE, SILENCE_EXAMPLE = 3, 4
SILENCE_S = 1.0


def _with_word(rng, recs: list, word: np.ndarray, name: str):
    """Digits, the non-keyword word after the first of them, digits: (samples, words, other_words, snr, peak)."""
    from .negatives import trim
    picks = [recs[int(i)] for i in rng.integers(0, len(recs), size=3)]
    items = [(picks[0].samples, dd.KEYWORDS[picks[0].digit]), (trim(word), None)] + \
        [(r.samples, dd.KEYWORDS[r.digit]) for r in picks[1:]]
    pieces, words, other, t = [], [], [], 0
    for x, kw in items:
        gap = np.zeros(int(rng.uniform(0.1, 0.4) * dd.SAMPLE_RATE))
        pieces += [gap, np.asarray(x, np.float64)]
        t += len(gap)
        (words if kw else other).append((kw or name, t / dd.SAMPLE_RATE, (t + len(x)) / dd.SAMPLE_RATE))
        t += len(x)
    pieces.append(np.zeros(int(0.2 * dd.SAMPLE_RATE)))
    x, snr, peak = dd.mix_at_level(rng, pieces, (-25.0, -10.0), (15.0, 25.0))
    return x, words, other, snr, peak


def _with_silence(u: dd.Utterance, seconds: float):
    """``u`` with ``seconds`` of exact zeros inserted in the pause after its first word: (samples, words, silence span)."""
    cut = int(dd.SAMPLE_RATE * (u.words[0][2] + u.words[1][1]) / 2)
    n = int(seconds * dd.SAMPLE_RATE)
    x = np.concatenate([u.samples[:cut], np.zeros(n, np.float32), u.samples[cut:]])
    shift = lambda t: t + seconds if t * dd.SAMPLE_RATE >= cut else t
    return x, [(w, shift(a), shift(b)) for w, a, b in u.words], (cut / dd.SAMPLE_RATE, (cut + n) / dd.SAMPLE_RATE)


def write_examples(data: str, out: str, n: int = 4, per_keyword: int = 3, seed: int = 7) -> dict:
    """The demo's shipped examples, ``examples.jsonl`` (with the truth), ``per_keyword`` test-split
    query images per keyword and ATTRIBUTION.md.

    The digits are FSDD recordings 0-4 of each speaker (the validation split): the recipe trains
    on recordings 5-49 only, so no shipped model, whichever speaker it holds out, has heard them.
    Example i is speaker ``EXAMPLE_SPEAKERS[i - 1]`` alone; example 3 also says a real word that
    is no keyword (a held-out Speech Commands word of the test speakers: ``other_words`` in the
    manifest line), example 4 has ``SILENCE_S`` of digital silence in its first pause
    (``silence``). Raises VpklInputError: n other than 4 (the examples are these four)."""
    from .negative_sets import held_out_word_files
    if n != len(EXAMPLE_SPEAKERS):
        raise VpklInputError(f"--examples: the shipped examples are {len(EXAMPLE_SPEAKERS)}, got {n}")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(dd.split_seed("test", seed))
    recs = dd.load_fsdd(data, "val", held_out=None)
    rows = []
    word_file = held_out_word_files(data)["test"][0]
    word_name = os.path.basename(word_file).split("_")[0]
    for i, spk in enumerate(EXAMPLE_SPEAKERS, 1):
        own = [r for r in recs if r.speaker == spk]
        row = {"audio": f"example_{i}.wav"}
        if i == WORD_EXAMPLE:
            from vpkl.runtime.audio import read_audio
            x, words, other, snr, peak = _with_word(rng, own, read_audio(word_file, dd.SAMPLE_RATE), word_name)
            row["other_words"] = [[w, round(a, 3), round(b, 3)] for w, a, b in other]
        else:
            u = dd.synthesize(rng, own, n_words=(3, 4), snr_db=(10.0, 30.0))
            x, words, snr, peak = u.samples, u.words, u.snr_db, u.peak_dbfs
            if i == SILENCE_EXAMPLE:
                x, words, span = _with_silence(u, SILENCE_S)
                row["silence"] = [[round(span[0], 3), round(span[1], 3)]]
        sf.write(os.path.join(out, row["audio"]), x, dd.SAMPLE_RATE, subtype="PCM_16")
        row.update({"words": [[w, round(a, 3), round(b, 3)] for w, a, b in words], "speaker": spk,
                    "snr_db": round(snr, 1), "peak_dbfs": round(peak, 1)})
        rows.append(row)
    write_manifest(os.path.join(out, "examples.jsonl"), rows)
    q = write_queries(os.path.join(out, "queries"), "test", per_keyword)
    with open(os.path.join(out, "ATTRIBUTION.md"), "w") as f:
        f.write(ATTRIBUTION.format(speakers=", ".join(f'"{s}"' for s in EXAMPLE_SPEAKERS),
                                   word_example=f"example_{WORD_EXAMPLE}.wav", word=word_name,
                                   word_file=os.path.basename(word_file)))
    return {"examples": n, "query_images": q, "out": out}
