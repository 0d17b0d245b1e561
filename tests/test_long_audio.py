"""Offline detection of long audio (runtime/longaudio.py): exact up to the window length, windowed
beyond it with positions absolute in the file, bounded memory, progress in the CLI."""
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr

from vpkl.runtime.audio import read_audio
from vpkl.runtime.bundle import Bundle
from vpkl.runtime.detect import detect, embed_audio
from vpkl.runtime.errors import VpklInputError
from vpkl.runtime.longaudio import scan
from vpkl.runtime.progress import AudioProgress
from vpkl.runtime.queries import enrol, folder_images

from conftest import EXAMPLES, ROOT, cut_digital_silence, run_cli

SR = 16000
PERIOD = 10 * SR  # the first examples that fit (three, 8.2 s) over faint noise, padded to one default window


@pytest.fixture(scope="module")
def shipped(shipped_bundle):
    b = Bundle.load(shipped_bundle)
    return b, enrol(b, folder_images(f"{EXAMPLES}/queries"))


@pytest.fixture(scope="module")
def period():
    """(10 s of samples, [(keyword, first frame, last frame)] of the words said in it)."""
    x = np.random.default_rng(0).normal(0, 1e-3, PERIOD).astype(np.float32)
    words, at = [], 0
    with open(f"{EXAMPLES}/examples.jsonl") as f:
        for line in f:
            e = json.loads(line)
            y = read_audio(f"{EXAMPLES}/{e['audio']}", SR)
            if at + len(y) > PERIOD:
                break
            x[at:at + len(y)] += y
            words += [(w, int((at / SR + a) * 50), int((at / SR + b) * 50)) for w, a, b in e["words"]]
            at += len(y)
    return x, words


def whole(bundle, queries, audio):
    """The whole-utterance path: front end and both audio graphs over all of it, then the head."""
    s, att, _ = bundle.score(queries.embeddings, embed_audio(bundle, audio))
    return s, att


def gated_argmax(x: np.ndarray, att: np.ndarray, gate_db: float = 3.0) -> np.ndarray:
    """Localisation written out by hand from its definition (vpkl.runtime.localise), for the shipped
    front end: embedding frame n is centred on sample (2n + 0.5) 160 + 200 = 320 n + 280, its
    energy the mean power of samples [320 n + 120, 320 n + 440) (zeros past the end) in dB,
    floored at -100 dB; the argmax of aud_att over frames >= the 10th percentile + gate_db."""
    n = att.shape[1]
    xp = np.concatenate([np.asarray(x, np.float64), np.zeros(320 * n + 440)])
    e = np.array([10 * np.log10(max(np.mean(xp[320 * i + 120:320 * i + 440] ** 2), 1e-10)) for i in range(n)])
    speech = e >= np.percentile(e, 10) + gate_db
    return np.argmax(np.where(speech, att, -1.0), axis=1)


@pytest.mark.parametrize("rate", [16000, 8000, 44100])
def test_up_to_the_window_exactly_the_whole_utterance(shipped, period, tmp_path, rate):
    """A file of 9.9 s (read in five blocks, resampled block by block when not at 16 kHz) and the
    shipped examples: S, aud_att and the localised frame of the whole-utterance path to 1e-5
    (for example_4, of its audio with its second of digital silence cut out, which detect does
    not hear: aud_att 0 there, frames after it one per 20 ms cut later). The localised frame is
    the argmax of aud_att with the gate off, and the gated argmax written out by hand with it on."""
    b, q = shipped
    x = period[0][:int(9.9 * SR)]
    p = tmp_path / f"x{rate}.wav"
    sf.write(p, x if rate == SR else soxr.resample(x, SR, rate), rate, subtype="FLOAT")
    for audio in [str(p)] + [f"{EXAMPLES}/example_{i}.wav" for i in (1, 2, 3, 4)]:
        kept, gap = cut_digital_silence(read_audio(audio, SR)) if audio.startswith(EXAMPLES) \
            else (read_audio(audio, SR), [])
        s, att = whole(b, q, kept)
        res = detect(b, audio, q, loc_gate_db=None)
        assert [r.window for r in res] == [(0, att.shape[1] + len(gap))] * len(q)
        assert np.abs(np.array([r.score for r in res]) - s).max() < 1e-5
        got = np.stack([r.aud_att for r in res])
        assert not got[:, gap].any() and np.abs(np.delete(got, gap, axis=1) - att).max() < 1e-5
        moved = np.delete(np.arange(att.shape[1] + len(gap)), gap)      # model frame -> input frame
        assert [r.frame for r in res] == list(moved[np.argmax(att, axis=1)])
        assert [r.frame for r in detect(b, audio, q)] == list(moved[gated_argmax(kept, att)])


def test_windows_cover_the_audio(shipped, period):
    """23.5 s with 10 s windows 5 s apart: [0, 500), [250, 750), [500, 1000) and a last one ending
    with the audio (1174 embeddings: 2348 log-mel frames // 2); with a 30 s window, one window."""
    b, q = shipped
    x = np.tile(period[0], 3)[:int(23.5 * SR)]
    got = [(w.start, w.end) for w in scan(b, x, q.embeddings)]
    assert got == [(0, 500), (250, 750), (500, 1000), (674, 1174)]
    got = [(w.start, w.end) for w in scan(b, x, q.embeddings, window_s=30.0, hop_s=5.0)]
    assert got == [(0, 1174)]


def test_a_looped_file_agrees_with_the_example_results_at_shifted_times(shipped, period):
    """The 10 s period looped to 3 minutes. Every window that holds exactly one period scores
    it as `detect` does on the period alone (the causal state carried in from the previous
    period aside: S within 0.08, the same decision for >= 9 of 10 keywords, a detected keyword
    localised where the period alone puts it or inside another span where that keyword is said).
    The file's answer per keyword (its best window) is localised at a shifted place where the
    keyword is said or where the period alone localises it, and detects what the period alone
    detects."""
    b, q = shipped
    x, words = period
    ref = detect(b, x, q)
    ref_frame = {r.keyword: r.frame for r in ref}

    def right_place(kw, frame):  # frame within the period
        return abs(frame - ref_frame[kw]) <= 2 or any(w == kw and lo <= frame <= hi for w, lo, hi in words)

    long = np.tile(x, 18)
    n_aligned = 0
    for w in scan(b, long, q.embeddings):
        if w.start % 500 or w.end - w.start != 500:
            continue
        n_aligned += 1
        assert np.abs(w.scores - np.array([r.score for r in ref])).max() < 0.08
        same = (w.scores >= b.threshold) == np.array([r.detected for r in ref])
        assert same.sum() >= 9
        for k, r in enumerate(ref):
            if r.detected and w.scores[k] >= b.threshold:
                assert right_place(r.keyword, int(w.frames[k]) - w.start), (w.start, r.keyword)
    assert n_aligned == 17  # the 18th period ends a frame short: 180 s gives 8999 embeddings
    res = detect(b, long, q)
    for r, r0 in zip(res, ref):
        assert r.window[0] <= r.frame < r.window[1] and len(r.aud_att) == r.window[1] - r.window[0]
        assert r.time_s == pytest.approx(b.frame_time(r.frame))
        if r0.detected:
            assert r.detected and right_place(r.keyword, r.frame % 500), (r.keyword, r.frame)
    assert sum(r.detected == r0.detected for r, r0 in zip(res, ref)) >= 9


RSS = r'''
import json, sys
import numpy as np, soundfile as sf
from vpkl.benchmarks.suite import peak_rss_kb
from vpkl.runtime.bundle import Bundle
from vpkl.runtime.detect import detect
from vpkl.runtime.queries import enrol, folder_images
path, examples, minutes = sys.argv[1], sys.argv[2], float(sys.argv[3])
x = np.random.default_rng(0).normal(0, 0.01, 60 * 16000).astype(np.float32)
with sf.SoundFile(path, "w", 16000, 1, "PCM_16") as f:
    for _ in range(int(minutes)):
        f.write(x)
del x
b = Bundle.load(sys.argv[4])
q = enrol(b, folder_images(examples + "/queries"))
before, read = peak_rss_kb(), {}
r = detect(b, path, q, progress=lambda done, total: read.update(done=done, total=total))
print(json.dumps({"before_kb": before, "after_kb": peak_rss_kb(), "read": read}))
'''


def test_twenty_minutes_in_bounded_memory(shipped_bundle, tmp_path):
    """20 minutes of audio (a 38 MB WAV): the peak RSS of the process (VmHWM) stays under 300 MB,
    and detection adds less than 40 MB to what loading the bundle took (reading it whole took
    about 105 MB per minute)."""
    r = subprocess.run([sys.executable, "-c", RSS, str(tmp_path / "long.wav"), EXAMPLES, "20", shipped_bundle],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["read"] == {"done": 1200.0, "total": 1200.0}
    assert out["after_kb"] < 300 * 1024, out
    assert out["after_kb"] - out["before_kb"] < 40 * 1024, out


def test_cli_shows_progress_for_long_audio(shipped_bundle, tmp_path):
    """`vpkl detect` on 90 s of audio at 44.1 kHz writes one progress line per tenth on stderr (not
    a terminal), the last at 100%, and the results on stdout; on a 2.6 s example, nothing."""
    p = tmp_path / "long.wav"
    sf.write(p, np.random.default_rng(0).normal(0, 0.01, 90 * 44100).astype(np.float32), 44100)
    q = f"{EXAMPLES}/queries/seven_test00.png"
    r = run_cli("detect", "--bundle", shipped_bundle, "--query", q, str(p), "--json")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 10 and lines[-1] == f"vpkl detect: {p}: 90 / 90 s of audio (100%)", lines
    res = json.loads(r.stdout)["results"][0]
    assert res["keyword"] == "seven"
    start, end = res["window"]  # 90 s: 4499 embeddings, windows of 500 ending at 500, 750, ... and 4499
    assert end - start == 500 and (end % 250 == 0 or end == 4499) and start <= res["frame"] < end
    r = run_cli("detect", "--bundle", shipped_bundle, "--query", q, f"{EXAMPLES}/example_4.wav")
    assert r.returncode == 0 and r.stderr == ""


def test_progress_on_a_terminal_rewrites_one_line():
    """On a terminal: one line rewritten (\\r) at most every 0.5 s of wall clock, ended by close()."""
    class Tty(io.StringIO):
        def isatty(self):
            return True
    t = [0.0]
    out = Tty()
    p = AudioProgress("x.wav", stream=out, clock=lambda: t[0])
    for done in range(0, 121, 10):
        t[0] += 0.2
        p(done, 120)
    p.close()
    assert out.getvalue() == ("\rx.wav: 0 / 120 s of audio (0%)\rx.wav: 30 / 120 s of audio (25%)"
                              "\rx.wav: 60 / 120 s of audio (50%)\rx.wav: 90 / 120 s of audio (75%)"
                              "\rx.wav: 120 / 120 s of audio (100%)\n")
    short = Tty()
    AudioProgress("y.wav", stream=short)(5, 10)
    assert short.getvalue() == ""


@pytest.mark.parametrize("bad,match", [(dict(window_s=0.01), "window_s"), (dict(hop_s=20.0), "hop_s"),
                                       (dict(hop_s=float("nan")), "hop_s"), (dict(window_s="10"), "window_s")])
def test_bad_windows_are_refused(shipped, period, bad, match):
    b, q = shipped
    with pytest.raises(VpklInputError, match=match):
        detect(b, period[0], q, **bad)


def test_nan_late_in_a_long_file_is_named(shipped, tmp_path):
    """A NaN 70 s into a file is found when its block is read: one error naming the file and the time."""
    x = np.zeros(80 * SR, np.float32)
    x[70 * SR] = np.nan
    p = tmp_path / "late.wav"
    sf.write(p, x, SR, subtype="FLOAT")
    b, q = shipped
    with pytest.raises(VpklInputError, match=r"late\.wav: the audio holds NaN or infinite sample\(s\), the first at 70\.000 s"):
        detect(b, str(p), q)


def test_windows_of_digital_silence_alone_are_not_scored(shipped):
    """25.5 s of zeros, example_4 (3.2 s, its own second of zeros inside), 11.3 s of zeros: the
    zeros are cut out (runtime/gaps.py), so the model hears the example alone, in one window laid
    out on the input's frames from the example's first (25.5 s = frame 1275), and detects exactly
    what it detects in the example alone, 1275 frames later; 25 s of zeros alone still gets one
    window (the input's last 500 frames, all 0), so every keyword has an answer."""
    b, q = shipped
    ex = read_audio(f"{EXAMPLES}/example_4.wav", SR)
    x = np.zeros(40 * SR, np.float32)
    x[51 * SR // 2:51 * SR // 2 + len(ex)] = ex
    assert [(w.start, w.end) for w in scan(b, x, q.embeddings)] == [(1275, 1275 + 157)]   # 157: the example alone
    got = {r.keyword: (r.frame, r.score) for r in detect(b, x, q) if r.detected}
    alone = {r.keyword: (r.frame + 1275, r.score) for r in detect(b, ex, q) if r.detected}
    assert alone and got.keys() == alone.keys()
    for k in alone:
        assert got[k][0] == alone[k][0] and abs(got[k][1] - alone[k][1]) < 1e-5
    assert [(w.start, w.end) for w in scan(b, np.zeros(25 * SR, np.float32), q.embeddings)] == [(749, 1249)]


@pytest.mark.parametrize("pad_s", [0.03, 0.3, 1.0])
def test_causal_encoder_begins_at_the_first_sound(shipped, pad_s):
    """Zeros before an example, fed in odd pieces (1 to 4999 samples), are cut out (25 ms or more):
    the causal frames are those of the example alone (the reference: the same encoder on the
    example in one piece), from the first, and the frame map puts them pad_s * 50 frames on
    (0.03 s: 1.5 frames, rounded up)."""
    from vpkl.runtime.longaudio import CausalEncoder
    b, _ = shipped
    x = read_audio(f"{EXAMPLES}/example_2.wav", SR)
    ref = CausalEncoder(b)
    r, _, e_ref = ref(x)
    last = ref.finish()
    r, e_ref = np.concatenate([r, last[0]]), np.concatenate([e_ref, last[2]])
    y = np.concatenate([np.zeros(int(pad_s * SR), np.float32), x])
    enc, rng, out, heard, energy, i = CausalEncoder(b), np.random.default_rng(0), [], [], [], 0
    while i < len(y):
        n = int(rng.integers(1, 5000))
        f, h, e = enc(y[i:i + n])
        out.append(f), heard.append(h), energy.append(e)
        i += n
    f, h, e = enc.finish()
    got, heard, energy = np.concatenate(out + [f]), np.concatenate(heard + [h]), np.concatenate(energy + [e])
    lead = int(np.floor(pad_s * 50 + 0.5))
    assert enc.frame_map.to_input(0) == lead and enc.input_frames(final=True) == lead + len(r)
    assert len(got) == len(r) == len(energy) == len(e_ref) and heard[0]
    np.testing.assert_allclose(got, r, atol=1e-5)
    np.testing.assert_allclose(energy, e_ref, atol=1e-4)   # the energies of the example alone too
