"""`vpkl stream --mic` through a real PortAudio input: PulseAudio's null sink, whose monitor is an
input device, with the shipped examples played into it by paplay.

Needs Debian's pulseaudio, pulseaudio-utils, libasound2-plugins and libportaudio2 and the Python
package sounddevice (`.ci/run` installs them); skipped, with the reason, without them. The test
starts a PulseAudio daemon when none answers (and stops it afterwards), and loads and unloads its
own null sink.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import soxr

from vpkl.runtime.audio import read_audio
from vpkl.runtime.bundle import Bundle
from vpkl.runtime.detect import detect
from vpkl.runtime.queries import enrol, folder_images
from vpkl.runtime.stream import Spotter

from conftest import EXAMPLES, ROOT

SR = 16000
GAP_S = 1.0        # digital silence before, between and after the examples, as an idle device gives
TOLERANCE_S = 0.15  # 7.5 frames: stream and detect localise a word up to a few frames apart
NEAR_S = 0.05      # S this close under the threshold: a resampler's difference may lift a window over it
MIC_TOLERANCE_S = 0.06  # 3 frames: the microphone against the same stream from the file
MAX_SHIFT_S = 10.0  # playback begins at most this long after vpkl starts recording; it may also come
                    # early by up to GAP_S: PulseAudio can drop some of the leading silence (measured: 0.09 s)


def _pactl(*args, check=True):
    return subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=20, check=check)


@pytest.fixture(scope="module")
def null_sink():
    """The name of a fresh null sink (its monitor is the input), on a PulseAudio daemon that answers."""
    missing = [t for t in ("pulseaudio", "pactl", "paplay") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"PulseAudio not installed (no {', '.join(missing)}): apt install pulseaudio "
                    "pulseaudio-utils libasound2-plugins libportaudio2")
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError) as e:
        pytest.skip(f"sounddevice or PortAudio missing ({e}): pip install sounddevice; apt install libportaudio2")
    started = False
    if _pactl("info", check=False).returncode != 0:
        subprocess.run(["pulseaudio", "--daemonize=yes", "--exit-idle-time=-1", "--disallow-exit=yes",
                        "--log-target=stderr"], capture_output=True, timeout=30)
        for _ in range(40):
            if _pactl("info", check=False).returncode == 0:
                started = True
                break
            time.sleep(0.25)
        else:
            pytest.skip("no PulseAudio server answers and `pulseaudio --daemonize` did not start one")
    name = f"vpkl_test_{os.getpid()}"
    module = _pactl("load-module", "module-null-sink", f"sink_name={name}").stdout.strip()
    yield name
    _pactl("unload-module", module, check=False)
    if started:
        subprocess.run(["pulseaudio", "--kill"], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def played(tmp_path_factory):
    """A WAV of the four examples, each preceded by GAP_S of zeros and followed by the last gap;
    returns (path, samples, {example file: its start in seconds})."""
    parts, starts, at = [], {}, 0.0
    for i in (1, 2, 3, 4):
        x = read_audio(f"{EXAMPLES}/example_{i}.wav", SR)
        parts += [np.zeros(int(GAP_S * SR), np.float32), x]
        starts[f"example_{i}.wav"] = at + GAP_S
        at += GAP_S + len(x) / SR
    parts.append(np.zeros(int(GAP_S * SR), np.float32))
    x = np.concatenate(parts)
    p = tmp_path_factory.mktemp("mic") / "examples.wav"
    sf.write(p, x, SR, subtype="PCM_16")
    return str(p), read_audio(str(p), SR), starts


def _listen(sink: str, wav: str, shipped_bundle: str) -> list[dict]:
    """`vpkl stream --mic --device pulse --jsonl` on the sink's monitor while paplay plays ``wav``."""
    env = dict(os.environ, PULSE_SOURCE=f"{sink}.monitor", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "vpkl.cli", "stream", "--bundle", shipped_bundle, "--queries",
           f"{EXAMPLES}/queries", "--mic", "--device", "pulse", "--jsonl"]
    monitor = [line.split("\t")[0] for line in _pactl("list", "short", "sources").stdout.splitlines()
               if line.split("\t")[1:2] == [f"{sink}.monitor"]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        for _ in range(120):  # until vpkl records from the monitor (a source output on it exists)
            if proc.poll() is not None:
                pytest.fail(f"vpkl stream --mic ended before recording: {proc.communicate()[1]}")
            if any(line.split("\t")[1:2] == monitor
                   for line in _pactl("list", "short", "source-outputs").stdout.splitlines()):
                break
            time.sleep(0.25)
        else:
            pytest.fail("vpkl stream --mic did not open the PulseAudio monitor within 30 s")
        subprocess.run(["paplay", f"--device={sink}", wav], check=True, timeout=60)
        time.sleep(2.0)  # what PulseAudio still buffers reaches vpkl, and vpkl catches up on a busy machine
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped (Ctrl-C)" in err, err
    return [json.loads(line) for line in out.splitlines()]


def _pcm16(x: np.ndarray) -> np.ndarray:
    """Float samples rounded to 16-bit PCM steps, as float32."""
    return (np.round(np.clip(x, -1, 1) * 32767) / 32767).astype(np.float32)


def _streamed(b: Bundle, q, x: np.ndarray, threshold=None) -> list:
    """(keyword, seconds) of each detection of a Spotter fed ``x`` in 100 ms chunks, then flushed."""
    sp = Spotter(b, q, threshold)
    dets = [d for i in range(0, len(x), 1600) for d in sp.feed(x[i:i + 1600])] + sp.flush()
    return [(d.keyword, d.time_s) for d in dets]


def _matches(found: list, wanted: list, shift: float, tol: float) -> list[bool]:
    """Per ``wanted`` (keyword, seconds): is there a ``found`` one of that keyword at it + shift, within tol?"""
    return [any(kf == kw and abs(f - shift - w) <= tol for kf, f in found) for kw, w in wanted]


def _best_shift(found: list, wanted: list, tol: float) -> float:
    """The shift (stream time - file time, -GAP_S to MAX_SHIFT_S seconds) that matches the most
    ``wanted`` (keyword, time) with a ``found`` one within ``tol``."""
    shifts = [f - w for kf, f in found for kw, w in wanted if kf == kw and -GAP_S <= f - w <= MAX_SHIFT_S]
    return max(shifts, key=lambda s: sum(_matches(found, wanted, s, tol)), default=0.0)


def test_mic_hears_what_detect_reports(null_sink, played, shipped_bundle):
    """The examples played into the null sink while `vpkl stream --mic` listens to its monitor
    (PulseAudio resamples them to 44.1 kHz, vpkl back to 16 kHz), after one shift common to all
    (when playback began in the stream, -1 to 10 s):

    - the microphone's detections are those of streaming the played file itself (Spotter on its
      samples): the same keywords at the same times within 0.06 s, but for detections that a
      44.1 kHz 16-bit round trip of the file (soxr) changes, or that the file gives only at a
      threshold NEAR_S lower, which it may make or not;
    - every keyword `vpkl detect` reports for an example file is heard at the example's start in
      the played file plus detect's time (within 0.15 s) or inside a span where that keyword is
      said in the example (examples.jsonl), but for at most one of them; a keyword missed so
      is missed by streaming the file too (the stream's difference from detect, not the microphone's).
    """
    wav, x, starts = played
    b = Bundle.load(shipped_bundle)
    q = enrol(b, folder_images(f"{EXAMPLES}/queries"))
    wanted = [(r.keyword, starts[f] + r.time_s) for f in sorted(starts)
              for r in detect(b, f"{EXAMPLES}/{f}", q) if r.detected]
    assert len(wanted) >= 8
    with open(f"{EXAMPLES}/examples.jsonl") as f:
        spans = [(w, starts[e["audio"]] + t0, starts[e["audio"]] + t1) for e in map(json.loads, f)
                 for w, t0, t1 in e["words"]]
    file_dets = _streamed(b, q, x)
    # the played file after a 44.1 kHz 16-bit round trip, as PulseAudio and vpkl resample it
    # (soxr here, another resampler there): a detection that this changes sits on a near-tie in
    # aud_att (two frames of one query within a hair), and the microphone may go either way on it
    trip = _streamed(b, q, _pcm16(soxr.resample(_pcm16(soxr.resample(x, SR, 44100)), 44100, SR)))
    stable = [d for d, m in zip(file_dets, _matches(trip, file_dets, 0.0, MIC_TOLERANCE_S)) if m]
    # a keyword whose windows straddle the threshold fires only when two in a row pass it: another
    # resampler's few hundredths of S decide it (measured: at a threshold of 0.72 the file and its round
    # trip both give example_2's "five", with S 0.803 and 0.736; at 0.75 neither does, the microphone may)
    either = file_dets + trip + _streamed(b, q, x, b.threshold - NEAR_S)

    found = [(d["keyword"], d["time_s"]) for d in _listen(null_sink, wav, shipped_bundle)]
    shift = _best_shift(found, stable, MIC_TOLERANCE_S)
    where = (f"(shift {shift:.3f} s): the microphone heard {found}; the file streamed gives {file_dets}, "
             f"after a 44.1 kHz round trip {trip}")
    assert all(_matches(found, stable, shift, MIC_TOLERANCE_S)), f"missed by the microphone {where}"
    assert all(_matches(either, found, -shift, MIC_TOLERANCE_S)), f"heard only by the microphone {where}"

    def said(kw, t):  # heard by the microphone inside a span where kw is said, around t
        return any(kf == kw and w == kw and t0 <= f - shift <= t1 and t0 - 1 <= t <= t1 + 1
                   for kf, f in found for w, t0, t1 in spans)
    heard = [m or said(kw, t) for m, (kw, t) in zip(_matches(found, wanted, shift, TOLERANCE_S), wanted)]
    missed = [w for w, h in zip(wanted, heard) if not h]
    assert not any(_matches(file_dets, missed, 0.0, TOLERANCE_S)), f"{missed} only missed by the microphone {where}"
    if len(missed) > 1:   # the stream's difference from detect, not the microphone's (asserted above)
        pytest.xfail(f"known: the shipped model, streamed over the examples one after another, misses "
                     f"keywords it finds in each alone (README, Streaming): not heard {missed}")
