"""Speech gating (runtime/vad.py, Spotter(vad=...)): silero-vad's decisions do not depend on how the
stream is cut into chunks, the gate keeps speech and drops noise, a gated Spotter finds what the
ungated one finds on speech and scores nothing on non-speech; bad models and arguments get one line.
"""
import importlib.util
import os

import numpy as np
import pytest

from vpkl.runtime.audio import read_audio
from vpkl.runtime.bundle import Bundle
from vpkl.runtime.errors import VpklInputError
from vpkl.runtime.queries import enrol, folder_images
from vpkl.runtime.stream import Spotter

from conftest import ASSETS, EXAMPLES, run_cli

needs_silero = pytest.mark.skipif(importlib.util.find_spec("silero_vad") is None,
                                reason="silero-vad is not installed (pip install --no-deps silero-vad)")
SR = 16000


@pytest.fixture(scope="module")
def setup():
    bundle = Bundle.load(os.path.join(ASSETS, "digits"), threads=1)
    queries = enrol(bundle, folder_images(os.path.join(EXAMPLES, "queries")))
    return bundle, queries


def _speech():
    return read_audio(os.path.join(EXAMPLES, "example_1.wav"), SR)


@needs_silero
def test_decisions_do_not_depend_on_chunking():
    """Whole-signal probabilities (the reference) against the same audio fed in odd chunk sizes."""
    from vpkl.runtime.vad import SpeechGate
    x = _speech()
    whole = SpeechGate(SR).feed(x)
    gate, parts = SpeechGate(SR), []
    for i, n in enumerate(range(0, len(x), 777)):
        parts.append(gate.feed(x[n:n + 777]))
    chunked = np.concatenate(parts)
    assert len(whole) == len(x) // 512 == len(chunked)
    np.testing.assert_allclose(chunked, whole, atol=1e-6)


@needs_silero
def test_speech_opens_the_gate_noise_and_hum_do_not():
    from vpkl.runtime.vad import SpeechGate
    rng = np.random.default_rng(0)
    t = np.arange(3 * SR) / SR
    gate = SpeechGate(SR, pad_s=0.0)
    assert gate.feed(_speech()).max() > 0.9
    for x in (0.05 * rng.standard_normal(3 * SR), 0.2 * np.sin(2 * np.pi * 50 * t) + 0.1 * np.sin(2 * np.pi * 150 * t)):
        gate.reset()
        gate.feed(x.astype(np.float32))
        assert not gate.speech_between(0.0, 3.0)


@needs_silero
def test_speech_between_counts_the_pad_and_forgets_old_blocks():
    """Speech placed in the second second of a 4 s stream: a stretch ending 0.3 s before its first
    speech block is speech only with a pad that reaches over the gap; forgetting bounds the
    decisions kept."""
    from vpkl.runtime.vad import SpeechGate
    x = np.zeros(4 * SR, np.float32)
    x[SR:2 * SR] = _speech()[:SR]
    wide, narrow = SpeechGate(SR, pad_s=0.5), SpeechGate(SR, pad_s=0.0)
    probs = narrow.feed(x)
    wide.feed(x)
    onset = np.flatnonzero(probs >= 0.5)[0] * 512 / SR    # start of the first speech block, seconds
    assert 1.0 <= onset < 2.0
    assert wide.speech_between(onset - 0.6, onset - 0.3) and not narrow.speech_between(onset - 0.6, onset - 0.3)
    assert narrow.speech_between(onset, onset + 0.01)
    wide.forget_before(3.0)
    assert wide._first > 0 and len(wide._speech) == wide.blocks - wide._first


@needs_silero
def test_gated_spotter_keeps_detections_and_skips_non_speech(setup):
    """On an example (speech throughout) the gate changes nothing; on noise it scores no window."""
    bundle, queries = setup
    x = _speech()
    ref = [(d.keyword, d.frame) for d in Spotter(bundle, queries).run(x)]
    gated = [(d.keyword, d.frame) for d in Spotter(bundle, queries, vad=True).run(x)]
    assert ref and gated == ref
    rng = np.random.default_rng(1)
    noise = (0.03 * rng.standard_normal(6 * SR)).astype(np.float32)
    sp = Spotter(bundle, queries, vad=True)
    list(sp.run(noise))
    assert sp.last_window is None
    plain = Spotter(bundle, queries)
    list(plain.run(noise))
    assert plain.last_window is not None


@needs_silero
def test_bad_vad_arguments_get_one_line(setup, tmp_path):
    from vpkl.runtime.vad import SpeechGate
    bundle, queries = setup
    with pytest.raises(VpklInputError, match="no such file"):
        Spotter(bundle, queries, vad=str(tmp_path / "missing.onnx"))
    with pytest.raises(VpklInputError, match="expected silero-vad's inputs"):
        Spotter(bundle, queries, vad=os.path.join(ASSETS, "digits", "audio_causal.onnx"))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(VpklInputError, match="not an ONNX model"):
        Spotter(bundle, queries, vad=str(tmp_path / "junk.onnx"))
    with pytest.raises(VpklInputError, match="expected True/False"):
        Spotter(bundle, queries, vad=3)
    with pytest.raises(VpklInputError, match="16000 or 8000"):
        SpeechGate(22050)
    with pytest.raises(VpklInputError, match=r"expected True/False, a path .* got 'yes'"):
        Spotter(bundle, queries, vad="yes")
    with pytest.raises(VpklInputError, match="expected True/False"):
        Spotter(bundle, queries, vad=str(tmp_path))
    with pytest.raises(VpklInputError, match="is a folder"):
        SpeechGate(16000, tmp_path)
    for bad in ({"pad_s": float("inf")}, {"pad_s": -1}, {"threshold": "a"}, {"threshold": 1.5}, {"threshold": True}):
        with pytest.raises(VpklInputError, match="vad (pad_s|threshold): expected"):
            SpeechGate(16000, **bad)
    gate = SpeechGate(16000)
    Spotter(bundle, queries, vad=gate)
    with pytest.raises(VpklInputError, match="already serves another Spotter"):
        Spotter(bundle, queries, vad=gate)


@needs_silero
def test_stream_cli_vad_flag(tmp_path):
    args = ("stream", "--file", os.path.join(EXAMPLES, "example_1.wav"), "--queries", os.path.join(EXAMPLES, "queries"),
            "--jsonl")
    r = run_cli(*args, "--vad")
    assert r.returncode == 0, r.stderr
    plain = run_cli(*args)
    key = lambda out: [(d["keyword"], d["frame"]) for d in map(__import__("json").loads, out.splitlines())]
    assert key(r.stdout) == key(plain.stdout) and key(r.stdout)


def test_missing_silero_vad_names_the_install_command(monkeypatch, setup):
    from vpkl.runtime import vad
    monkeypatch.setattr(vad.importlib.util, "find_spec", lambda name: None)
    bundle, queries = setup
    with pytest.raises(VpklInputError, match=r"pip install --no-deps silero-vad"):
        Spotter(bundle, queries, vad=True)


def test_evaluate_vad_needs_keyword_free_audio(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text('{"audio": "%s", "words": [["seven", 0.5, 0.9]]}\n' % os.path.join(EXAMPLES, "example_1.wav"))
    r = run_cli("evaluate", "--manifest", str(m), "--queries", os.path.join(EXAMPLES, "queries"), "--vad")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--vad: only with what is streamed" in r.stderr


@needs_silero
def test_evaluate_vad_refuses_to_write_a_threshold_into_a_bundle(tmp_path):
    """A threshold chosen with the gate holds only with it; bundles do not record the gate."""
    m = tmp_path / "m.jsonl"
    m.write_text('{"audio": "%s", "words": []}\n' % os.path.join(EXAMPLES, "example_1.wav"))
    r = run_cli("evaluate", "--manifest", str(m), "--queries", os.path.join(EXAMPLES, "queries"), "--vad",
                "--target-fa-per-hour", "10", "--out-bundle", str(tmp_path / "b"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--vad with --out-bundle" in r.stderr
    assert not (tmp_path / "b").exists()
