"""The digits recipe's data: real spoken digits (FSDD) x handwritten digits (scikit-learn).

Utterances concatenate 2-5 single-digit recordings (8 kHz, resampled to 16 kHz) with random
pauses; a digit may repeat. Each is then put at a random speech peak level (-30 to -3 dBFS)
and mixed with coloured Gaussian noise (spectral slope 1/f^beta, beta in [0, 2]) at a
random SNR (5-35 dB, speech power measured over the words). Word start/end times are kept
for evaluation only.

Splits (fixed; the held-out speaker never appears in training or validation):
- ``train``: four speakers, FSDD's training indices 5-49, the training digit images;
- ``val``: the same four speakers, FSDD's test indices 0-4, the validation digit images;
- ``test``: the held-out speaker (all indices), the test digit images.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from vpkl.runtime.audio import read_audio, resample
from vpkl.runtime.errors import VpklInputError

KEYWORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "yweweler")
HELD_OUT_SPEAKER = "george"
SAMPLE_RATE = 16000
_NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


@dataclass
class Recording:
    digit: int
    speaker: str
    index: int
    samples: np.ndarray  # (n,) float32 at 16 kHz


@dataclass
class Utterance:
    samples: np.ndarray          # (n,) float32 at 16 kHz
    words: list                  # [(keyword, start_s, end_s), ...]
    snr_db: float
    peak_dbfs: float


def fsdd_dir(data_dir: str) -> str:
    """``DATA/fsdd/recordings`` (or DATA itself if it holds the recordings)."""
    for d in (os.path.join(data_dir, "fsdd", "recordings"), data_dir):
        if os.path.isdir(d) and any(_NAME.match(f) for f in os.listdir(d)):
            return d
    raise VpklInputError(f"{data_dir}: no FSDD recordings found (expected {data_dir}/fsdd/recordings/"
                         "{digit}_{speaker}_{index}.wav)")


def load_fsdd(data_dir: str, split: str, held_out: str | None = HELD_OUT_SPEAKER) -> list[Recording]:
    """Recordings of one split (see module docstring), resampled to 16 kHz.

    ``held_out``: the speaker of the test split, kept out of train and val (None: no speaker is
    held out, and the test split is empty)."""
    d = fsdd_dir(data_dir)
    out = []
    for f in sorted(os.listdir(d)):
        m = _NAME.match(f)
        if not m:
            continue
        digit, spk, idx = int(m[1]), m[2], int(m[3])
        held = spk == held_out
        if split == "test":
            keep = held
        elif split == "val":
            keep = not held and idx < 5
        elif split == "train":
            keep = not held and idx >= 5
        else:
            raise ValueError(f"split must be train, val or test, got {split!r}")
        if keep:
            out.append(Recording(digit, spk, idx, read_audio(os.path.join(d, f), SAMPLE_RATE)))
    if not out:
        raise VpklInputError(f"{d}: no recordings for the {split} split")
    return out


def speed_perturb(recordings: list[Recording], factors=(0.9, 0.95, 1.05, 1.1)) -> list[Recording]:
    """The recordings plus a copy of each played ``factor`` times faster (tempo and pitch
    together, by resampling with soxr): a training augmentation standing in for other
    speakers' voices. Computed once, so training steps do not pay for it.
    """
    out = list(recordings)
    for f in factors:
        out += [Recording(r.digit, r.speaker, r.index, resample(r.samples, SAMPLE_RATE * f, SAMPLE_RATE))
                for r in recordings]
    return out


def digit_images(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Handwritten digits of one split: (K, 8, 8) uint8 (ink bright), (K,) int labels.

    scikit-learn's ``load_digits`` (UCI optdigits, values 0-16) scaled to 0-255 and split
    60/20/20 by a fixed permutation.
    """
    from sklearn.datasets import load_digits
    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    perm = np.random.default_rng(1234).permutation(len(images))
    a, b = int(0.6 * len(perm)), int(0.8 * len(perm))
    sel = {"train": perm[:a], "val": perm[a:b], "test": perm[b:]}[split]
    return images[sel], d.target[sel]


def coloured_noise(rng: np.random.Generator, n: int, beta: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f^beta (0 white, 1 pink, 2 brown), unit RMS."""
    m = 1 << max(1, int(n - 1).bit_length())  # a power of two: fast FFT
    spec = rng.standard_normal(m // 2 + 1) + 1j * rng.standard_normal(m // 2 + 1)
    f = np.arange(m // 2 + 1, dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / f ** (beta / 2), n=m)[:n]
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


class NoiseBank:
    """Pre-drawn coloured noise to crop from, so training steps do not pay for FFTs."""

    def __init__(self, rng: np.random.Generator, n: int = 48, seconds: float = 12.0):
        self.signals = [coloured_noise(rng, int(seconds * SAMPLE_RATE), float(b)) for b in rng.uniform(0, 2, n)]

    def __call__(self, rng: np.random.Generator, n: int) -> np.ndarray:
        x = self.signals[int(rng.integers(len(self.signals)))]
        if n > len(x):
            x = np.tile(x, n // len(x) + 1)
        start = int(rng.integers(0, len(x) - n + 1))
        return x[start:start + n]


def mix_at_level(rng: np.random.Generator, pieces: list, peak_dbfs=(-30.0, -3.0), snr_db=(5.0, 35.0),
                 noise_bank: NoiseBank | None = None) -> tuple[np.ndarray, float, float]:
    """Pauses and words (``pieces``: pause, word, pause, ..., 1-D sample arrays at 16 kHz) joined,
    scaled to a random speech peak (dBFS, drawn from ``peak_dbfs``) and mixed with noise at a
    random SNR (dB, from ``snr_db``, over the words' power): (float32 samples, snr_db, peak_dbfs).
    ``noise_bank`` crops pre-drawn noise; without it, coloured noise is drawn afresh."""
    speech = np.concatenate(pieces).astype(np.float64)
    peak = float(rng.uniform(*peak_dbfs))
    gain = 10 ** (peak / 20) / (np.max(np.abs(speech)) + 1e-12)
    speech *= gain
    speech_power = np.mean(np.concatenate(pieces[1::2]).astype(np.float64) ** 2) * gain ** 2
    snr = float(rng.uniform(*snr_db))
    noise = noise_bank(rng, len(speech)) if noise_bank else coloured_noise(rng, len(speech), float(rng.uniform(0, 2)))
    noise = noise * np.sqrt(speech_power / 10 ** (snr / 10))
    return np.clip(speech + noise, -1.0, 1.0).astype(np.float32), snr, peak


def synthesize(rng: np.random.Generator, recordings: list[Recording], n_words=(2, 5),
               pause_s=(0.05, 0.5), peak_dbfs=(-30.0, -3.0), snr_db=(5.0, 35.0),
               noise_bank: NoiseBank | None = None, lead_s: tuple | None = None) -> Utterance:
    """One utterance of random digits (see module docstring).

    ``noise_bank`` (training) crops pre-drawn noise; without it (evaluation data) fresh
    noise is drawn for every utterance. ``lead_s``: the range (seconds) of the pause before the
    first word, when it differs from ``pause_s`` (a long lead-in of noise bed, as a stream has).
    """
    k = int(rng.integers(n_words[0], n_words[1] + 1))
    picks = [recordings[int(i)] for i in rng.integers(0, len(recordings), size=k)]
    pieces, words, t = [], [], 0
    for j, r in enumerate(picks):
        gap = np.zeros(int(rng.uniform(*(lead_s if j == 0 and lead_s else pause_s)) * SAMPLE_RATE), np.float32)
        pieces += [gap, r.samples]
        t += len(gap)
        words.append((KEYWORDS[r.digit], t / SAMPLE_RATE, (t + len(r.samples)) / SAMPLE_RATE))
        t += len(r.samples)
    pieces.append(np.zeros(int(rng.uniform(*pause_s) * SAMPLE_RATE), np.float32))
    mix, snr, peak = mix_at_level(rng, pieces, peak_dbfs, snr_db, noise_bank)
    return Utterance(mix, words, snr, peak)


def split_seed(split: str, seed: int) -> int:
    """The RNG seed of a split's fixed evaluation utterances (shared by make-dataset and train)."""
    return seed * 1000 + {"train": 0, "val": 1, "test": 2}[split]
