"""Synthetic speech from Debian's speech synthesisers, for training and validation data.

Real recordings of five speakers cannot teach a keyword spotter what other voices, and speech
without any keyword, sound like. Debian's synthesisers give many more voices for free:

- ``espeak-ng``: English accents (en-us, en-gb, Scotland, Received Pronunciation, Lancaster, West
  Midlands, Caribbean), each with several voice variants (male and female timbres);
- ``flite``: kal, kal16, awb, rms, slt;
- ``festival`` (``text2wave``): the kal diphone voice, and the HTS voice cmu_us_slt_arctic when
  the package festvox-us-slt-hts is installed.

Each voice says every digit word (extra speakers next to the real recordings, never in place of
them) and sentences of running text made from a word list with no digit word and none of the
homophones (to, too, for, fore, won, ate, oh, ...): the negatives a spotter must stay quiet on.
:data:`HELD_OUT_ENGINE` is kept out of training, for validation.

Files are written once to a cache folder as 16 kHz 16-bit WAV with an ``index.jsonl``:
``{"audio": "espeak-ng/en-us+f3/digit_seven_0.wav", "engine": ..., "voice": ..., "text": ...,
"keyword": "seven" or null, "split": "train" or "val"}``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import numpy as np

from vpkl.runtime.audio import read_audio
from vpkl.runtime.errors import VpklInputError

SAMPLE_RATE = 16000
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# words that sound like a digit word: never in the negatives
HOMOPHONES = ("to", "too", "for", "fore", "won", "ate", "oh", "owe", "nein", "tree", "free", "fife", "hive",
              "heaven", "weight", "wait", "fine", "hero", "sex", "sticks")
HELD_OUT_ENGINE = "festival"
PACKAGES = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "festival festvox-kallpc16k festvox-us-slt-hts"}
PROGRAMS = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"}

_ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
_ESPEAK_VARIANTS = ("m1", "m3", "m7", "f1", "f3", "f4")
_FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
_FESTIVAL_VOICES = ("kal_diphone", "cmu_us_slt_arctic_hts")

# a small grammar of everyday English without digit words or their homophones
_DET = ("the", "a", "this", "that", "my", "your", "our", "every", "some", "her", "his")
_ADJ = ("old", "little", "quiet", "bright", "happy", "green", "heavy", "warm", "strange", "busy", "gentle",
        "small", "open", "broken", "yellow", "careful", "distant", "soft", "cold", "early")
_NOUN = ("man", "woman", "child", "dog", "cat", "bird", "house", "river", "garden", "street", "window",
         "teacher", "market", "table", "letter", "mountain", "kitchen", "bicycle", "morning", "doctor",
         "painter", "basket", "ocean", "forest", "bridge", "station", "picture", "orange", "rabbit", "music")
_VERB = ("saw", "found", "carried", "painted", "opened", "watched", "followed", "cleaned", "visited", "heard",
         "pulled", "washed", "loved", "noticed", "dropped", "bought", "moved", "called", "built", "showed")
_ADV = ("slowly", "quickly", "again", "today", "outside", "quietly", "yesterday", "carefully", "almost", "there")
_PREP = ("near", "behind", "under", "above", "beside", "across", "into", "from", "with", "past")


def sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` sentences of 6-14 words from the grammar above (no digit word, no homophone)."""
    rng = np.random.default_rng(seed)
    pick = lambda words: words[int(rng.integers(len(words)))]
    out = []
    for _ in range(n):
        s = [pick(_DET), pick(_ADJ), pick(_NOUN), pick(_VERB), pick(_DET), pick(_NOUN)]
        if rng.random() < 0.6:
            s += [pick(_PREP), pick(_DET), pick(_ADJ), pick(_NOUN)]
        if rng.random() < 0.5:
            s += [pick(_ADV)]
        if rng.random() < 0.3:
            s += ["and", pick(_VERB), pick(_DET), pick(_NOUN)]
        out.append(" ".join(s))
    bad = set(DIGIT_WORDS) | set(HOMOPHONES)
    assert not any(bad & set(s.split()) for s in out)
    return out


def available_engines() -> dict:
    """{engine: True if its program is on PATH} for espeak-ng, flite and festival."""
    return {e: shutil.which(p) is not None for e, p in PROGRAMS.items()}


def missing_message(engines) -> str:
    """One line naming the Debian packages that bring the missing ``engines``."""
    pkgs = " ".join(PACKAGES[e] for e in engines)
    return f"speech synthesisers not installed: {', '.join(engines)} (apt-get install {pkgs})"


def voices(engine: str) -> list[str]:
    """The voices vpkl uses of one engine (festival: only those whose package is installed)."""
    if engine == "espeak-ng":
        return [f"{a}+{v}" for a in _ESPEAK_ACCENTS for v in _ESPEAK_VARIANTS]
    if engine == "flite":
        return list(_FLITE_VOICES)
    if engine == "festival":
        return [v for v in _FESTIVAL_VOICES if _festival_has(v)]
    raise VpklInputError(f"engine: expected one of {sorted(PROGRAMS)}, got {engine!r}")


def _festival_has(voice: str) -> bool:
    r = subprocess.run(["festival", "-b", f"(begin (voice_{voice}) (print 'ok))"], capture_output=True, text=True,
                       timeout=60)
    return r.returncode == 0 and "ok" in r.stdout


def synthesise(engine: str, voice: str, text: str, rate: float = 1.0) -> np.ndarray:
    """Speak ``text`` with one engine and voice -> (n,) float32 at 16 kHz.

    ``rate``: speaking-rate factor (espeak-ng words per minute, flite and festival duration stretch).
    Raises:
        VpklInputError: the program failed (its message, one line).
    """
    with tempfile.TemporaryDirectory() as d:
        wav = os.path.join(d, "out.wav")
        if engine == "espeak-ng":
            cmd, stdin = ["espeak-ng", "-v", voice, "-s", str(int(round(165 * rate))), "-w", wav, text], None
        elif engine == "flite":
            cmd, stdin = ["flite", "-voice", voice, "--setf", f"duration_stretch={1 / rate:.3f}", "-t", text,
                          "-o", wav], None
        elif engine == "festival":
            cmd = ["text2wave", "-eval", f"(voice_{voice})", "-eval",
                   f"(Parameter.set 'Duration_Stretch {1 / rate:.3f})", "-o", wav]
            stdin = text
        else:
            raise VpklInputError(f"engine: expected one of {sorted(PROGRAMS)}, got {engine!r}")
        r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
        if r.returncode != 0 or not os.path.exists(wav):
            msg = (r.stderr or r.stdout).strip().splitlines()
            raise VpklInputError(f"{engine} {voice}: synthesis failed ({msg[-1] if msg else 'no output'})")
        return read_audio(wav, SAMPLE_RATE)


def make_speech(out: str, engines=None, digit_repeats: int = 3, n_sentences: int = 12, seed: int = 0,
                progress=None) -> dict:
    """Write the synthetic speech cache to ``out`` (see the module docstring); skip files already there.

    Args:
        engines: engine names (default: all three); every one must be installed.
        digit_repeats: times each voice says each digit word (at speaking rates 0.85-1.2).
        n_sentences: sentences of running text per voice.
    Returns:
        {"files": total files in the index, "written": files made by this call, "engines": {engine: voices}}.
    Raises:
        VpklInputError: an engine that is not installed (naming the Debian packages), a failed synthesis.
    """
    import soundfile as sf
    engines = list(engines or PROGRAMS)
    have = available_engines()
    unknown = [e for e in engines if e not in have]
    if unknown:
        raise VpklInputError(f"--engines: unknown engine(s) {unknown}; expected some of {sorted(PROGRAMS)}")
    missing = [e for e in engines if not have[e]]
    if missing:
        raise VpklInputError(missing_message(missing))
    rng = np.random.default_rng(seed)
    texts = sentences(n_sentences * 50, seed)
    jobs = []
    for e in engines:
        for v in voices(e):
            split = "val" if e == HELD_OUT_ENGINE else "train"
            for w in DIGIT_WORDS:
                for i in range(digit_repeats):
                    jobs.append((e, v, f"digit_{w}_{i}", w, w, split, float(rng.uniform(0.85, 1.2))))
            for i in range(n_sentences):
                jobs.append((e, v, f"text_{i}", texts[int(rng.integers(len(texts)))], None, split,
                             float(rng.uniform(0.85, 1.2))))
    os.makedirs(out, exist_ok=True)
    index, written = [], 0
    for e, v, stem, text, kw, split, rate in (progress(jobs) if progress else jobs):
        rel = os.path.join(e, v.replace("+", "_"), stem + ".wav")
        path = os.path.join(out, rel)
        if not os.path.exists(path):
            x = synthesise(e, v, text, rate)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            sf.write(path + ".part", x, SAMPLE_RATE, subtype="PCM_16", format="WAV")
            os.replace(path + ".part", path)
            written += 1
        index.append({"audio": rel, "engine": e, "voice": v, "text": text, "keyword": kw, "split": split})
    with open(os.path.join(out, "index.jsonl.part"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in index)
    os.replace(os.path.join(out, "index.jsonl.part"), os.path.join(out, "index.jsonl"))
    return {"files": len(index), "written": written,
            "engines": {e: sorted({r["voice"] for r in index if r["engine"] == e}) for e in engines}}
