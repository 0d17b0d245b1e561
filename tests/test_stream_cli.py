"""`vpkl stream`: the file, stdin and microphone sources, Ctrl-C, and bad input, against `vpkl detect`."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf
import soxr

from conftest import EXAMPLES, ROOT, run_cli

QUERIES = os.path.join(EXAMPLES, "queries")


def stream_cli(bundle, *args, stdin=None):
    return subprocess.run([sys.executable, "-m", "vpkl.cli", "stream", "--bundle", bundle, "--queries", QUERIES,
                           "--jsonl", *args], input=stdin, capture_output=True, timeout=300)


def words(stdout: bytes):
    return sorted((d["keyword"], d["frame"]) for d in map(json.loads, stdout.decode().splitlines()))


@pytest.fixture(scope="module")
def offline(shipped_bundle, example_wavs):
    """`vpkl detect --json` on each shipped example: {wav: sorted [(keyword, frame)] of the detected}."""
    out = {}
    for wav in example_wavs:
        r = run_cli("detect", "--bundle", shipped_bundle, "--json",
                    *[a for f in sorted(os.listdir(QUERIES)) for a in ("--query", os.path.join(QUERIES, f))], wav)
        assert r.returncode == 0, r.stderr
        out[wav] = sorted((x["keyword"], x["frame"]) for x in json.loads(r.stdout)["results"] if x["detected"])
    return out


@pytest.fixture(scope="module")
def streamed(shipped_bundle, example_wavs):
    """The in-process `Spotter` on each shipped example (100 ms chunks, as the CLI reads): {wav:
    sorted [(keyword, frame)]}. test_stream.py checks each of its detections against `detect` on
    the audio heard when it fired; here it is what the CLI must print."""
    from vpkl.runtime.audio import read_audio
    from vpkl.runtime.bundle import Bundle
    from vpkl.runtime.queries import enrol, folder_images
    from vpkl.runtime.stream import Spotter
    b = Bundle.load(shipped_bundle)
    qs = enrol(b, folder_images(QUERIES))
    out = {}
    for wav in example_wavs:
        sp = Spotter(b, qs)
        dets = list(sp.run(read_audio(wav, 16000), 0.1))
        out[wav] = sorted((d.keyword, d.frame) for d in dets)
    return out


def same_places(got, want):
    return [k for k, _ in got] == [k for k, _ in want] and all(abs(a - b) <= 2 for (_, a), (_, b) in zip(got, want))


def finds_detects(got, want):
    """Every keyword `detect` detects is reported at detect's place (within 2 frames). The stream
    may also report a keyword at a second place, or one whose S passes the threshold on the audio
    heard so far and not on the whole file (test_stream.py checks those against `detect` on the
    audio heard)."""
    return all(any(k == g and abs(f - h) <= 2 for g, h in got) for k, f in want)


def near(got, *refs):
    """Each reported (keyword, frame) is within 2 frames of one in the references."""
    return all(any(k == g and abs(f - h) <= 2 for ref in refs for g, h in ref) for k, f in got)


def test_file_reports_what_detect_reports(shipped_bundle, example_wavs, offline, streamed):
    for wav in example_wavs:
        r = stream_cli(shipped_bundle, "--file", wav)
        assert r.returncode == 0, r.stderr
        got = words(r.stdout)
        assert finds_detects(got, offline[wav]) and same_places(got, streamed[wav]), (wav, got, offline[wav])
        assert b"s of audio in" in r.stderr and b"RTF" in r.stderr and b"p95" in r.stderr
        assert r.stderr.decode().splitlines()[0] == (  # what was enrolled, before the audio
            "vpkl stream: 10 keywords from 30 images: " + ", ".join(
                f"{k} (3)" for k in ("eight", "five", "four", "nine", "one", "seven", "six", "three", "two", "zero")))


def test_stdin_raw_pcm(shipped_bundle, example_wavs, offline, streamed, tmp_path):
    wav = example_wavs[1]
    x, sr = sf.read(wav, dtype="int16")
    r = stream_cli(shipped_bundle, "-", "--chunk-ms", "20", stdin=x.tobytes())
    got = words(r.stdout)
    assert r.returncode == 0 and same_places(got, streamed[wav]) and finds_detects(got, offline[wav]), got
    # ends mid-sample: the odd byte is dropped with a warning, the rest is used
    r = stream_cli(shipped_bundle, "-", stdin=x.tobytes() + b"\x07")
    assert r.returncode == 0 and same_places(words(r.stdout), streamed[wav])
    assert b"ended mid-sample; dropped 1 trailing byte" in r.stderr
    # stereo float at 44.1 kHz, resampled on the fly
    y = soxr.resample(x.astype(np.float32) / 32768, sr, 44100)
    r = stream_cli(shipped_bundle, "-", "--format", "f32le", "--rate", "44100", "--channels", "2",
                   stdin=np.repeat(y[:, None], 2, axis=1).astype("<f4").tobytes())
    got = words(r.stdout)
    assert r.returncode == 0 and finds_detects(got, offline[wav]) and near(got, offline[wav], streamed[wav]), got


@pytest.mark.parametrize("args, stdin, what", [
    ([], None, "exactly one of --mic, --file"),
    (["--mic", "--file", "x.wav"], None, "got --mic and --file"),
    (["x.wav"], None, "use --file AUDIO"),
    (["--realtime", "-"], b"", "--realtime: only with --file"),
    (["-", "--format", "u8"], b"\x00" * 100, "--format: expected one of s16le"),
    (["-"], b"", "stdin: no audio received"),
    (["-", "--format", "f32le"], np.full(3200, np.nan, "<f4").tobytes(), "stdin: chunk 0: holds 1600 NaN"),
    (["--file", "{nofile}"], None, "no such file"),
    (["--file", "{example}", "--chunk-ms", "0"], None, "--chunk-ms"),
    (["--file", "{example}", "--hop-ms", "5000"], None, "--hop-ms: 5.0 s is longer than --window-s (3.0 s)"),
    (["--file", "{example}", "--query", "{example}"], None, "--query/--queries: give --query IMAGE"),
    (["--file", "{example}", "--provider", "cuda", "--fp16"], None, "--fp16: only with the tensorrt provider"),
    (["--file", "{example}", "--lookahead-s", "2.99"], None, "--lookahead-s: 2.99 s is 150 frames"),
    (["--file", "{example}", "--chunk-ms", "inf"], None, "--chunk-ms: expected 0 < milliseconds <= 60000"),
    (["--file", "{example}", "--format", "f32le"], None, "--format: only with -"),
    (["-", "--channels", "100"], b"\x00" * 100, "--channels: expected 1 to 32"),
    (["-", "--rate", "1"], b"\x00" * 100, "--rate: expected a sample rate from 1000"),
    (["-"], b"\x00" * 400, "stdin: 12.5 ms of audio is shorter than one frame"),
    (["--file", "{example}", "--bundle", "{old}"], None, "bundle format version 2"),
])
def test_bad_stream_arguments(shipped_bundle, example_wavs, tmp_path, args, stdin, what):
    if "{old}" in args:  # the format-2 bundle of commit 41d8717
        subprocess.run(f"git -C {ROOT} archive 41d8717 assets/digits | tar -x -C {tmp_path}", shell=True, check=True)
    args = [a.replace("{nofile}", str(tmp_path / "none.wav")).replace("{example}", example_wavs[0])
            .replace("{old}", str(tmp_path / "assets" / "digits")) for a in args]
    r = stream_cli(shipped_bundle, *args, stdin=stdin)
    assert r.returncode == 2 and what in r.stderr.decode() and b"Traceback" not in r.stderr, r.stderr
    if not what.startswith("stdin: "):  # refused before any audio: the error is the only line
        assert len(r.stderr.decode().strip().splitlines()) == 1, r.stderr


def test_stream_lists_the_files_it_skipped(shipped_bundle, example_wavs, streamed, tmp_path):
    """A --queries folder with other files: stderr names them; the detections are those of the
    images alone (against the stream with the shipped query folder)."""
    folder = tmp_path / "q"
    shutil.copytree(QUERIES, folder)
    (folder / "README.txt").write_text("query images")
    (folder / "seven.gif").write_bytes(b"GIF89a")
    r = subprocess.run([sys.executable, "-m", "vpkl.cli", "stream", "--queries", str(folder), "--jsonl",
                        "--file", example_wavs[1]], capture_output=True, timeout=300)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "10 keywords from 30 images" in err and f"skipped in {folder} (not {{keyword}}_{{anything}}.png/.jpg/.jpeg images): README.txt, seven.gif" in err
    assert same_places(words(r.stdout), streamed[example_wavs[1]])


def test_ctrl_c_stops_cleanly_with_a_summary(shipped_bundle, example_wavs, tmp_path):
    long = tmp_path / "long.wav"
    x, sr = sf.read(example_wavs[1], dtype="int16")
    sf.write(long, np.tile(x, 20), sr)  # ~1 min, paced in real time
    p = subprocess.Popen([sys.executable, "-m", "vpkl.cli", "stream", "--bundle", shipped_bundle, "--queries", QUERIES,
                          "--file", str(long), "--realtime"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = p.stdout.readline()  # a detection: the stream is running
    assert first, p.stderr.read()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert b"stopped (Ctrl-C)" in err and b"Traceback" not in err
    seconds = float(err.decode().split("stopped (Ctrl-C); ")[1].split(" s of audio")[0])
    assert 0.5 < seconds < 30


def test_ctrl_c_with_an_idle_writer_on_stdin(shipped_bundle, example_wavs):
    """The writer stays open but sends nothing more: Ctrl-C still stops at once, with the audio so far."""
    x, _ = sf.read(example_wavs[1], dtype="int16")
    p = subprocess.Popen([sys.executable, "-m", "vpkl.cli", "stream", "--bundle", shipped_bundle, "--queries", QUERIES,
                          "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdin.write(x.tobytes())
    p.stdin.flush()
    first = p.stdout.readline()  # a detection: the audio was read
    assert first, p.stderr.read()
    time.sleep(3)  # all the audio is processed; vpkl now waits for more
    p.send_signal(signal.SIGINT)
    rc = p.wait(timeout=15)  # stdin still open: no end of stream to stop on
    err = p.stderr.read()
    p.stdin.close()
    assert rc == 0 and b"stopped (Ctrl-C)" in err and b"s of audio in" in err, err


class FakeSoundDevice:
    """Stands in for the sounddevice module: one input device at 44.1 kHz that plays ``audio`` in
    blocks from a thread, then either stops (the device disappears) or sends Ctrl-C."""

    class PortAudioError(Exception):
        pass

    def __init__(self, audio, rate=44100, then="vanish", default=True):
        self.audio, self.rate, self.then, self.default = audio, rate, then, default

    def query_devices(self, device, kind):
        if device not in ((None, 3) if self.default else (3,)):
            raise ValueError(f"No input device matching {device!r}")
        return {"name": "fake", "default_samplerate": float(self.rate)}

    def InputStream(self, device, samplerate, channels, dtype, blocksize, callback):
        assert samplerate == self.rate and channels == 1 and dtype == "float32"
        fake = self

        class Stream:
            def __enter__(self):
                def play():
                    for i in range(0, len(fake.audio), blocksize):
                        block = fake.audio[i:i + blocksize].astype(np.float32)[:, None]
                        callback(block, len(block), None, None)
                        time.sleep(0.002)
                    if fake.then == "ctrl-c":
                        time.sleep(0.3)
                        os.kill(os.getpid(), signal.SIGINT)
                self.thread = threading.Thread(target=play, daemon=True)
                self.thread.start()
                return self

            def __exit__(self, *exc):
                self.thread.join()

        return Stream()


def mic(monkeypatch, capsys, shipped_bundle, fake, *extra):
    from vpkl.cli import main
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    rc = main(["stream", "--bundle", shipped_bundle, "--queries", QUERIES, "--jsonl", "--mic", *extra])
    out, err = capsys.readouterr()
    return rc, out, err


def test_microphone_with_a_fake_device(monkeypatch, capsys, shipped_bundle, example_wavs, offline, streamed):
    wav = example_wavs[0]
    x, sr = sf.read(wav, dtype="float32")
    audio = soxr.resample(np.concatenate([x, np.zeros(sr, np.float32)]), sr, 44100)
    rc, out, err = mic(monkeypatch, capsys, shipped_bundle, FakeSoundDevice(audio, then="ctrl-c"), "--device", "3")
    assert rc == 0 and "stopped (Ctrl-C)" in err, err
    got = words(out.encode())   # resampled from 44.1 kHz: S differs a little from the file's
    assert finds_detects(got, offline[wav]) and near(got, offline[wav], streamed[wav]), (got, offline[wav])


def test_microphone_that_disappears(monkeypatch, capsys, shipped_bundle, example_wavs):
    x, sr = sf.read(example_wavs[0], dtype="float32")
    rc, out, err = mic(monkeypatch, capsys, shipped_bundle, FakeSoundDevice(soxr.resample(x, sr, 44100)))
    assert rc == 2 and "no audio for 2 s; was it unplugged" in err and "Traceback" not in err


def test_microphone_device_and_portaudio_missing(monkeypatch, capsys, shipped_bundle, tmp_path):
    rc, _, err = mic(monkeypatch, capsys, shipped_bundle, FakeSoundDevice(np.zeros(100)), "--device", "7")
    assert rc == 2 and "--device 7: no such input device" in err
    rc, _, err = mic(monkeypatch, capsys, shipped_bundle, FakeSoundDevice(np.zeros(100), default=False))
    assert rc == 2 and "--mic: no default input device" in err
    (tmp_path / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    r = subprocess.run([sys.executable, "-m", "vpkl.cli", "stream", "--bundle", shipped_bundle, "--queries", QUERIES,
                        "--mic"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "PortAudio library is missing" in r.stderr and "libportaudio2" in r.stderr
