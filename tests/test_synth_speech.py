"""Synthetic speech for training data: the negatives' text, the engines, the cache."""
import json
import shutil

import numpy as np
import pytest

from vpkl.runtime.errors import VpklInputError
from vpkl.training import synth_speech as ss

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (apt-get install espeak-ng)")


def test_sentences_hold_no_digit_word_or_homophone():
    bad = set(ss.DIGIT_WORDS) | set(ss.HOMOPHONES) | {"to", "too", "for", "fore", "won", "ate", "oh"}
    text = ss.sentences(500, seed=3)
    assert len(text) == 500 and len(set(text)) > 450
    assert not [s for s in text if bad & set(s.split())]


def test_missing_engine_names_its_packages(monkeypatch, tmp_path):
    monkeypatch.setattr(ss.shutil, "which", lambda p: None)
    with pytest.raises(VpklInputError, match=r"apt-get install espeak-ng flite"):
        ss.make_speech(str(tmp_path), engines=["espeak-ng", "flite"])
    with pytest.raises(VpklInputError, match="--engines: unknown"):
        ss.make_speech(str(tmp_path), engines=["say"])


@needs_espeak
def test_espeak_digits_and_text_cached_once(tmp_path):
    r = ss.make_speech(str(tmp_path), engines=["espeak-ng"], digit_repeats=1, n_sentences=1)
    n_voices = len(ss.voices("espeak-ng"))
    assert r["files"] == r["written"] == n_voices * 11
    lines = [json.loads(l) for l in open(tmp_path / "index.jsonl")]
    assert sorted({l["keyword"] for l in lines if l["keyword"]}) == sorted(ss.DIGIT_WORDS)
    assert {l["split"] for l in lines} == {"train"}
    import soundfile as sf
    info = sf.info(str(tmp_path / lines[0]["audio"]))
    assert info.samplerate == 16000 and 0.2 < info.duration < 2.5   # one digit word
    x, _ = sf.read(str(tmp_path / lines[0]["audio"]))
    assert np.sqrt(np.mean(x ** 2)) > 1e-3                           # not silence
    again = ss.make_speech(str(tmp_path), engines=["espeak-ng"], digit_repeats=1, n_sentences=1)
    assert again["written"] == 0 and again["files"] == r["files"]


@pytest.mark.parametrize("args, message", [
    (["make-speech", "--out", "OUT", "--engines", "say"], "--engines: unknown engine"),
    (["make-speech", "--out", "OUT", "--sentences", "-1"], "--sentences: expected a count >= 0"),
    (["train", "--out", "OUT/m.ckpt", "--keyword-free", "0.7", "--mixed", "0.5"], "at most 1 together"),
    (["train", "--out", "OUT/m.ckpt", "--mixed", "2"], "--mixed: expected a share in [0, 1]"),
    (["train", "--out", "OUT/m.ckpt", "--long-context", "-0.1"], "--long-context: expected a share in [0, 1]"),
])
def test_bad_flags_are_one_line(args, message, tmp_path):
    from conftest import run_cli
    r = run_cli(*[str(tmp_path) + a[3:] if a.startswith("OUT") else a for a in args])
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
