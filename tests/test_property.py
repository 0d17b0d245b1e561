"""Property-based bad input (hypothesis): randomly damaged WAV files, random sample arrays and
chunk sequences, random and damaged images, fed to detect, Spotter.feed and enrol.

Whatever comes in, the runtime answers with a result or a VpklInputError (a VpklWarning at
most besides), never another exception, and input that breaks a documented rule (another
dtype or shape, NaN or inf samples, too short, a sample rate outside 1000-768000 Hz, an image
under 5 px a side) is refused rather than scored. Examples are small so no call can take long.
"""
import io
import math
import os
import struct
import tempfile
import warnings

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vpkl.runtime.bundle import Bundle
from vpkl.runtime.detect import detect, min_samples
from vpkl.runtime.errors import VpklInputError, VpklWarning
from vpkl.runtime.images import MIN_SIDE, read_image
from vpkl.runtime.queries import enrol
from vpkl.runtime.stream import Spotter, StreamConfig

from conftest import ASSETS, EXAMPLES

SETTINGS = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def rig():
    b = Bundle.load(os.path.join(ASSETS, "digits"), threads=1)
    return b, enrol(b, {"seven": [os.path.join(EXAMPLES, "queries", "seven_test00.png")]})


def _answer(call):
    """call() -> ("ok", value) or ("refused", message); any other exception fails the test.
    VpklWarning is allowed; other warnings are errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", VpklWarning)
        try:
            return "ok", call()
        except VpklInputError as e:
            assert str(e) and "\n" not in str(e), repr(e)
            return "refused", str(e)


def _good_results(res):
    for r in res:
        assert 0.0 <= r.score <= 1.0 and math.isfinite(r.score)
        assert np.all(np.isfinite(r.aud_att)) and 0 <= r.frame < len(r.aud_att)


def _wav(seconds=0.2, rate=16000, channels=1, subtype="PCM_16"):
    x = 0.3 * np.sin(np.arange(int(seconds * rate))[:, None] / (3.0 + np.arange(channels)))
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype=subtype)
    return bytearray(buf.getvalue())


damage = st.lists(st.one_of(
    st.tuples(st.just("byte"), st.integers(0, 63), st.integers(0, 255)),           # one header byte
    st.tuples(st.just("u32"), st.sampled_from([4, 16, 24, 28, 40]),                 # a size, the rate, ...
              st.sampled_from([0, 1, 2, 999, 1000, 8000, 768001, 0x7FFFFFFF, 0xFFFFFFFF])),
    st.tuples(st.just("u16"), st.sampled_from([20, 22, 32, 34]), st.integers(0, 65535)),  # format, channels, bits
    st.tuples(st.just("cut"), st.integers(0, 7000), st.just(0)),                     # truncate
), max_size=3)


@settings(max_examples=100, **SETTINGS)
@given(channels=st.integers(1, 3), subtype=st.sampled_from(["PCM_16", "PCM_U8", "FLOAT", "PCM_24"]), damage=damage)
def test_damaged_wav_files(rig, channels, subtype, damage):
    b, qs = rig
    data = _wav(channels=channels, subtype=subtype)
    for kind, at, v in damage:
        value = {"byte": lambda: bytes([v]), "u32": lambda: struct.pack("<I", v), "u16": lambda: struct.pack("<H", v),
                 "cut": lambda: b""}[kind]()
        if kind == "cut":
            del data[at:]
        elif at + len(value) <= len(data):
            data[at:at + len(value)] = value
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.wav")
        with open(p, "wb") as f:
            f.write(data)
        how, res = _answer(lambda: detect(b, p, qs, name=p))  # as the CLI names it
        if how == "ok":  # then libsndfile itself reads the file, at a sane rate, long enough for a frame
            _good_results(res)
            info = sf.info(p)
            assert 1000 <= info.samplerate <= 768000 and info.frames > 0
        else:
            assert p in res


ARRAY_DTYPES = ["int16", "int32", "float32", "float64", "uint8", "uint16", "int8", "bool", "complex64", "U1"]


def _array(draw_dtype, n, channels, nonfinite):
    rng = np.random.default_rng(n * 7 + (channels or 0))
    x = rng.uniform(-0.9, 0.9, (n,) if channels is None else (n, channels))
    if nonfinite and x.size:
        x.flat[rng.integers(x.size)] = [np.nan, np.inf, -np.inf][x.size % 3]
    dt = np.dtype(draw_dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return np.nan_to_num(x * info.max, nan=0, posinf=0, neginf=0).clip(info.min, info.max).astype(dt)
    if dt.kind == "U":
        return x.astype(str).astype(dt)
    return x.astype(dt)


@settings(max_examples=100, **SETTINGS)
@given(dtype=st.sampled_from(ARRAY_DTYPES), n=st.integers(0, 4000), channels=st.sampled_from([None, 0, 1, 2, 5]),
       nonfinite=st.booleans(), three_d=st.booleans())
def test_random_arrays_to_detect(rig, dtype, n, channels, nonfinite, three_d):
    b, qs = rig
    x = _array(dtype, n, channels, nonfinite)
    if three_d:
        x = x.reshape(x.shape + (1,))
    how, res = _answer(lambda: detect(b, x, qs, name="arr"))
    dt = np.dtype(dtype)
    must_refuse = (dt.kind not in "iuf" or x.ndim not in (1, 2) or x.size == 0
                   or (dt.kind == "f" and not np.all(np.isfinite(x))) or len(x) < min_samples(b))
    assert (how == "refused") == must_refuse, (how, res, x.dtype, x.shape)
    if how == "ok":
        _good_results(res)


CHUNK_DTYPES = ["int16", "int32", "float32", "float64", "uint8", "int64", "float16", "bool"]
chunk = st.tuples(st.sampled_from(CHUNK_DTYPES), st.integers(0, 2000), st.sampled_from([None, 0, 1, 2, 33]),
                  st.booleans())


@settings(max_examples=40, **SETTINGS)
@given(chunks=st.lists(chunk, min_size=1, max_size=12))
def test_random_chunk_sequences(rig, chunks):
    b, qs = rig
    sp = Spotter(b, qs, config=StreamConfig(window_s=1.0, min_window_s=0.2, hop_s=0.1))
    fed = 0
    for dtype, n, channels, nonfinite in chunks:
        x = _array(dtype, n, channels, nonfinite)
        how, res = _answer(lambda: sp.feed(x))
        must_refuse = (dtype not in ("int16", "int32", "float32", "float64", "uint8")
                       or (x.ndim == 2 and not 1 <= x.shape[1] <= 32)
                       or (x.dtype.kind == "f" and not np.all(np.isfinite(x))))
        assert (how == "refused") == must_refuse, (how, res, x.dtype, x.shape)
        if how == "ok":
            fed += len(x)
            for d in res:
                assert 0 <= d.score <= 1 and d.frame < sp.n_frames
    assert sp.audio_s == fed / b.front_end.sample_rate  # refused chunks left no trace
    how, res = _answer(sp.flush)
    assert how == "ok"


MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"]


@settings(max_examples=80, **SETTINGS)
@given(mode=st.sampled_from(MODES), w=st.integers(1, 40), h=st.integers(1, 40), seed=st.integers(0, 2 ** 16),
       fmt=st.sampled_from(["PNG", "JPEG", "BMP"]),
       damage=st.one_of(st.none(), st.tuples(st.integers(0, 400), st.integers(0, 255)), st.integers(0, 300)))
def test_random_images_to_enrol(rig, mode, w, h, seed, fmt, damage):
    b, _ = rig
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    else:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA").convert(mode)
    if (fmt == "JPEG" and mode not in ("L", "RGB")) or (fmt == "BMP" and mode not in ("1", "L", "P", "RGB")):
        fmt = "PNG"
    buf = io.BytesIO()
    img.save(buf, fmt)
    data = bytearray(buf.getvalue())
    if isinstance(damage, tuple):
        data[damage[0] % len(data)] = damage[1]
    elif isinstance(damage, int):
        del data[damage:]
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "k_x." + ("jpg" if fmt == "JPEG" else fmt.lower()))
        with open(p, "wb") as f:
            f.write(data)
        how, res = _answer(lambda: enrol(b, {"k": [p]}))
        if damage is None:
            assert (how == "refused") == (min(w, h) < MIN_SIDE), (how, res)
        if how == "ok":
            assert np.all(np.isfinite(res.embeddings))
            x = read_image(p, b.image)  # inside the normalised range of [0, 1] pixels
            lo, hi = (0 - 0.5) / 0.5, (1 - 0.5) / 0.5
            assert x.shape == (1, 32, 32) and x.min() >= lo - 1e-6 and x.max() <= hi + 1e-6
        else:
            assert p in res
