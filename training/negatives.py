"""What a microphone hears besides keywords: material for training utterances with and without digits.

The digits recipe used to show the model only utterances made of digits, so every sound was
matched to its nearest digit (thousands of false alarms per hour on ordinary words). This module
adds, to the training utterances of :mod:`vpkl.training.digits_data`:

- real non-keyword words: Speech Commands clips (``DATA/speech_commands_words``), trimmed to the
  word; the words in :data:`HELD_OUT_WORDS` are kept for validation;
- synthetic speech (:mod:`vpkl.training.synth_speech`): keyword-free running text, cut into
  pieces of 0.3-2 s, and every digit word said by each synthetic voice (extra speakers next to
  the real recordings); the held-out engine is kept for validation;
- non-speech: digital silence, clicks, mains hum and bursts of coloured noise.

:func:`compose` mixes them into one utterance of one of three kinds: no keyword at all, digits
mixed with non-keyword pieces, or digits alone (the old recipe's kind). Word times are kept for
evaluation only; training uses the set of keywords (empty for a keyword-free utterance).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

import numpy as np

from vpkl.runtime.audio import read_audio

from . import digits_data as dd

HELD_OUT_WORDS = ("happy", "house", "marvin")
_SC_NAME = re.compile(r"^([a-z]+)_([0-9a-f]+)_nohash_(\d+)\.wav$")


def trim(x: np.ndarray, rel_db: float = -35.0, margin_s: float = 0.05) -> np.ndarray:
    """The part of ``x`` whose 10 ms frames are within ``rel_db`` of its loudest, plus a margin."""
    hop = dd.SAMPLE_RATE // 100
    n = len(x) // hop
    if n == 0:
        return x
    e = 10 * np.log10(np.mean(x[:n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1) + 1e-12)
    on = np.flatnonzero(e > e.max() + rel_db)
    m = int(margin_s * dd.SAMPLE_RATE)
    return x[max(on[0] * hop - m, 0):min((on[-1] + 1) * hop + m, len(x))]


def speech_commands(data_dir: str, split: str) -> list[np.ndarray]:
    """Trimmed Speech Commands words of a split: ``train`` (all but HELD_OUT_WORDS) or ``val``."""
    d = os.path.join(data_dir, "speech_commands_words")
    if not os.path.isdir(d):
        return []
    out = []
    for f in sorted(os.listdir(d)):
        m = _SC_NAME.match(f)
        if m and (m[1] in HELD_OUT_WORDS) == (split == "val"):
            out.append(trim(read_audio(os.path.join(d, f), dd.SAMPLE_RATE)))
    return out


def synthetic(cache: str, split: str) -> tuple[list[np.ndarray], list[dd.Recording]]:
    """(keyword-free text recordings, digit recordings as extra speakers) of a split of the cache."""
    texts, digits = [], []
    with open(os.path.join(cache, "index.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r["split"] != split:
                continue
            x = trim(read_audio(os.path.join(cache, r["audio"]), dd.SAMPLE_RATE))
            if r["keyword"] is None:
                texts.append(x)
            else:
                digits.append(dd.Recording(dd.KEYWORDS.index(r["keyword"]), f"{r['engine']}:{r['voice']}", 0, x))
    return texts, digits


def reversed_speech(clips: list) -> list[np.ndarray]:
    """The clips played backwards: real voices, rooms and microphones saying no word.

    Why: the real non-keyword words at hand are few (70 training clips of seven words) and the
    model fires most on real words it never heard (README, *False alarms per hour*). A digit
    or word played backwards keeps its speaker, microphone and the spectra of its sounds but is
    no keyword, so it teaches that a digit's sounds in the wrong order are not the digit (a
    common negative in keyword spotting).
    """
    return [np.ascontiguousarray(np.asarray(x)[::-1]) for x in clips]


NON_SPEECH = ("silence", "clicks", "hum", "noise")


def non_speech(rng: np.random.Generator, n: int, kind: str | None = None) -> np.ndarray:
    """(n,) float64 non-speech at unit-ish level, of ``kind`` (one of :data:`NON_SPEECH`; None: any).

    silence: digital zeros; clicks: 1-5 decaying impulses; hum: 50 or 60 Hz mains hum with four
    harmonics; noise: coloured noise (spectral slope 0-2).
    """
    kind = NON_SPEECH[int(rng.integers(len(NON_SPEECH)))] if kind is None else kind
    t = np.arange(n) / dd.SAMPLE_RATE
    if kind == "silence":
        return np.zeros(n)
    if kind == "clicks":
        x = np.zeros(n)
        for at in rng.integers(0, n, size=int(rng.integers(1, 6))):
            k = min(n - at, 400)
            x[at:at + k] += rng.choice([-1, 1]) * np.exp(-np.arange(k) / rng.uniform(5, 60))
        return x
    if kind == "hum":
        f0 = float(rng.choice([50.0, 60.0]))
        return sum(rng.uniform(0.1, 1) / h * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6.3)) for h in range(1, 6))
    if kind == "noise":
        return dd.coloured_noise(rng, n, float(rng.uniform(0, 2)))
    raise ValueError(f"kind must be one of {NON_SPEECH}, got {kind!r}")


@dataclass
class Fillers:
    """Non-keyword material of one split: pieces of speech (real words, synthetic text, real speech
    played backwards)."""

    words: list = field(default_factory=list)     # real words, trimmed
    texts: list = field(default_factory=list)     # synthetic running text, trimmed
    reversed: list = field(default_factory=list)  # real recordings time-reversed (see reversed_speech)

    def __bool__(self) -> bool:
        return bool(self.words or self.texts or self.reversed)

    def piece(self, rng: np.random.Generator) -> np.ndarray:
        """A real word, 0.3-2 s cut from a synthetic sentence, or a reversed real recording: a third
        each when all exist (half each of the first two when there is no reversed speech)."""
        if self.reversed and (not (self.words or self.texts) or rng.random() < 1 / 3):
            return self.reversed[int(rng.integers(len(self.reversed)))]
        use_words = self.words and (not self.texts or rng.random() < 0.5)
        if use_words:
            return self.words[int(rng.integers(len(self.words)))]
        x = self.texts[int(rng.integers(len(self.texts)))]
        n = min(len(x), int(rng.uniform(0.3, 2.0) * dd.SAMPLE_RATE))
        start = int(rng.integers(0, len(x) - n + 1))
        return x[start:start + n]


LONG_LEAD_S = (0.5, 2.5)          # long-context utterances: noise before the first word (s)
LONG_PAUSE_S = (0.05, 1.0)        # ... and pauses between and after the words (s)
PAUSE_S = (0.05, 0.5)             # other utterances: every pause, the first included (s)
QUIET_LEAD_DBFS = (-70.0, -30.0)  # RMS of a lead-in that is not the utterance's own noise bed


def compose(rng: np.random.Generator, recordings: list, fillers: Fillers, p_free: float, p_mixed: float,
            p_digital_silence: float = 0.15, noise_bank: dd.NoiseBank | None = None,
            p_long: float = 0.0) -> dd.Utterance:
    """One training utterance: keyword-free (``p_free``), digits mixed with fillers (``p_mixed``),
    or digits alone (otherwise, as :func:`~vpkl.training.digits_data.synthesize`).

    Level and noise as in ``synthesize``; speech power for the SNR is measured over all the
    speech pieces. With ``p_digital_silence`` the utterance is framed by 0.1-1 s of exact zeros
    (a padded file, a device warming up), the noise not reaching into them.

    With ``p_long`` the utterance has long context: 0.5-2.5 s of noise before its first word
    and pauses of up to 1 s, with fewer words (1-2 digits, 1-2 pieces) so that it stays about as
    long as the others. Half of these lead-ins are the utterance's own noise bed, half are
    coloured noise at an RMS of -70 to -30 dBFS whatever the utterance's level (a quiet room
    before someone speaks up close, or a noisy one before a distant talker). Why: the running
    normaliser and the LSTMs start from what came before the word, and utterances that started
    at most 0.5 s before their first word taught the model to miss words after a second of
    anything (README, *Streaming*). 0 draws no random number for it, so older recipes replay exactly.
    """
    long = p_long > 0 and rng.random() < p_long
    quiet_lead = long and rng.random() < 0.5
    lead = LONG_LEAD_S if long and not quiet_lead else PAUSE_S
    pause = LONG_PAUSE_S if long else PAUSE_S
    u = rng.random()
    kind = "free" if u < p_free else "mixed" if u < p_free + p_mixed else "digits"
    if kind == "digits" or not fillers:
        if long:
            utt = dd.synthesize(rng, recordings, n_words=(1, 2), pause_s=pause, lead_s=lead, noise_bank=noise_bank)
        else:
            return dd.synthesize(rng, recordings, noise_bank=noise_bank)
        mix, words, snr, peak = utt.samples, utt.words, utt.snr_db, utt.peak_dbfs
    else:
        mix, words, snr, peak = _with_fillers(rng, recordings, fillers, kind, long, lead, pause, noise_bank)
    if quiet_lead:
        n = int(rng.uniform(*LONG_LEAD_S) * dd.SAMPLE_RATE)
        x = noise_bank(rng, n) if noise_bank else dd.coloured_noise(rng, n, float(rng.uniform(0, 2)))
        mix = np.concatenate([(x * 10 ** (rng.uniform(*QUIET_LEAD_DBFS) / 20)).astype(np.float32), mix])
        words = [(w, s + n / dd.SAMPLE_RATE, e + n / dd.SAMPLE_RATE) for w, s, e in words]
    if rng.random() < p_digital_silence:
        a, b = (int(rng.uniform(0.1, 1.0) * dd.SAMPLE_RATE) for _ in range(2))
        mix = np.concatenate([np.zeros(a, np.float32), mix, np.zeros(b, np.float32)])
        words = [(w, s + a / dd.SAMPLE_RATE, e + a / dd.SAMPLE_RATE) for w, s, e in words]
    return dd.Utterance(np.clip(mix, -1.0, 1.0).astype(np.float32), words, snr, peak)


def _with_fillers(rng, recordings, fillers, kind, long, lead, pause, noise_bank) -> tuple:
    """(samples, words, snr_db, peak_dbfs) of a keyword-free or mixed utterance (see compose)."""
    items = []                                   # (samples, keyword or None)
    most = 2 if long else 3
    if kind == "free":
        for _ in range(int(rng.integers(1, most + 2))):
            if rng.random() < 0.2:
                items.append((non_speech(rng, int(rng.uniform(0.2, 1.0) * dd.SAMPLE_RATE)) * rng.uniform(0.05, 1), None))
            else:
                items.append((fillers.piece(rng), None))
    else:
        for r in (recordings[int(i)] for i in rng.integers(0, len(recordings), size=int(rng.integers(1, most + 1)))):
            items.append((r.samples, dd.KEYWORDS[r.digit]))
        for _ in range(int(rng.integers(1, most + 1))):
            items.insert(int(rng.integers(0, len(items) + 1)), (fillers.piece(rng), None))
    pieces, words, t = [], [], 0
    for j, (x, kw) in enumerate(items):
        gap = np.zeros(int(rng.uniform(*(lead if j == 0 else pause)) * dd.SAMPLE_RATE))
        pieces += [gap, np.asarray(x, np.float64)]
        t += len(gap)
        if kw is not None:
            words.append((kw, t / dd.SAMPLE_RATE, (t + len(x)) / dd.SAMPLE_RATE))
        t += len(x)
    pieces.append(np.zeros(int(rng.uniform(*pause) * dd.SAMPLE_RATE)))
    mix, snr, peak = dd.mix_at_level(rng, pieces, noise_bank=noise_bank)
    return mix, words, snr, peak
