"""Long keyword-free recordings for measuring false alarms per hour (``vpkl make-dataset --negatives``).

A rate of a few false alarms per hour can only be seen on long audio, and there is little real
keyword-free speech at hand (100 one-second Speech Commands clips). Each set is therefore one
long WAV that loops its clips in a random order, at random levels (speech peak -30 to -3 dBFS),
with random pauses (0.1-2 s of quiet room noise or digital zeros) between them:

- ``words_val.wav`` / ``words_test.wav``: the real words kept out of training
  (:data:`vpkl.training.negatives.HELD_OUT_WORDS`), their speakers split in two halves, one for
  choosing thresholds (val) and one for reporting (test);
- ``synth_val.wav`` / ``synth_test.wav``: the held-out synthesiser's voices reading keyword-free
  text (one voice for val, the other for test), when a synthetic speech cache is given;
- ``silence.wav``, ``noise.wav``, ``clicks.wav``, ``hum.wav``: non-speech, 10 minutes each, in
  ten-second pieces at random levels: digital zeros; coloured noise; clicks on a quiet floor;
  50 or 60 Hz mains hum with harmonics.

The clips repeat (the test words set holds 13 clips, each heard about 35 times in 15 minutes): the
rates measure how often the spotter fires on these clips in varied orders, levels and pauses,
not on 15 minutes of different speech.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np

from vpkl.runtime.audio import read_audio

from . import digits_data as dd
from .negatives import HELD_OUT_WORDS, NON_SPEECH, non_speech

SR = dd.SAMPLE_RATE
_SC_NAME = re.compile(r"^([a-z]+)_([0-9a-f]+)_nohash_(\d+)\.wav$")


def held_out_word_files(data: str) -> dict:
    """{"val": [paths], "test": [paths]}: the held-out Speech Commands words, speakers split in halves."""
    d = os.path.join(data, "speech_commands_words")
    files = sorted(f for f in os.listdir(d) if (m := _SC_NAME.match(f)) and m[1] in HELD_OUT_WORDS)
    speakers = sorted({_SC_NAME.match(f)[2] for f in files})
    half = {s: ("val" if i % 2 == 0 else "test") for i, s in enumerate(speakers)}
    out = {"val": [], "test": []}
    for f in files:
        out[half[_SC_NAME.match(f)[2]]].append(os.path.join(d, f))
    return out


def held_out_words(data: str) -> dict:
    """{"val": [clips], "test": [clips]}: :func:`held_out_word_files` read at 16 kHz."""
    return {k: [read_audio(f, SR) for f in v] for k, v in held_out_word_files(data).items()}


def held_out_synthetic(cache: str) -> dict:
    """{"val": [texts of one held-out voice], "test": [texts of the other]} from a synthetic speech cache."""
    rows = [json.loads(l) for l in open(os.path.join(cache, "index.jsonl"))]
    rows = [r for r in rows if r["split"] == "val" and r["keyword"] is None]
    voices = sorted({r["voice"] for r in rows})
    out = {"val": [], "test": []}
    for r in rows:
        part = "val" if voices.index(r["voice"]) % 2 == 0 else "test"
        out[part].append(read_audio(os.path.join(cache, r["audio"]), SR))
    return out


def loop_clips(rng: np.random.Generator, clips: list, seconds: float) -> np.ndarray:
    """The clips in random orders, levels and pauses until ``seconds`` of audio (see module docstring)."""
    pieces, n = [], 0
    target = int(seconds * SR)
    while n < target:
        order = rng.permutation(len(clips))
        for i in order:
            x = clips[int(i)].astype(np.float64)
            x = x * (10 ** (rng.uniform(-30, -3) / 20) / (np.max(np.abs(x)) + 1e-12))
            gap_n = int(rng.uniform(0.1, 2.0) * SR)
            gap = np.zeros(gap_n) if rng.random() < 0.3 else 10 ** (-70 / 20) * rng.standard_normal(gap_n)
            pieces += [gap, x]
            n += gap_n + len(x)
    return np.clip(np.concatenate(pieces)[:target], -1, 1).astype(np.float32)


def non_speech_set(rng: np.random.Generator, kind: str, seconds: float) -> np.ndarray:
    """Ten-second pieces of one kind of non-speech (:func:`~vpkl.training.negatives.non_speech`),
    each at a random level (-70 to -10 dBFS peak; clicks on a -75 dBFS noise floor), ``seconds`` long."""
    n, piece, pieces = int(seconds * SR), 10 * SR, []
    for _ in range(n // piece + 1):
        x = non_speech(rng, piece, kind)
        if np.any(x):
            x = x / np.max(np.abs(x)) * 10 ** (rng.uniform(-70, -10) / 20)
        if kind == "clicks":
            x = x + 10 ** (-75 / 20) * rng.standard_normal(piece)
        pieces.append(x)
    return np.clip(np.concatenate(pieces)[:n], -1, 1).astype(np.float32)


def write_negative_sets(out: str, data: str, synth: str | None, minutes: float = 15.0,
                        non_speech_minutes: float = 10.0, seed: int = 0) -> dict:
    """Write the sets of the module docstring as 16 kHz 16-bit WAVs into ``out``; returns {name: seconds}."""
    import soundfile as sf
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    sets = {}
    words = held_out_words(data)
    for part in ("val", "test"):
        sets[f"words_{part}"] = loop_clips(rng, words[part], minutes * 60)
    if synth:
        texts = held_out_synthetic(synth)
        for part in ("val", "test"):
            sets[f"synth_{part}"] = loop_clips(rng, texts[part], minutes * 60)
    for kind in NON_SPEECH:
        sets[kind] = non_speech_set(rng, kind, non_speech_minutes * 60)
    for name, x in sets.items():
        sf.write(os.path.join(out, name + ".wav"), x, SR, subtype="PCM_16")
    return {name: round(len(x) / SR, 1) for name, x in sets.items()}
