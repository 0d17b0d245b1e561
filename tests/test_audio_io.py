"""Reading audio: formats, rates, channels and bit depths all give mono float32 at 16 kHz."""
import numpy as np
import pytest
import soundfile as sf

from vpkl.runtime.audio import as_samples, read_audio
from vpkl.runtime.errors import VpklInputError

SR = 16000


def tone(sr, seconds=0.5, f=440.0):
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * f * t)).astype(np.float64)


@pytest.mark.parametrize("fmt,subtype,tol", [
    ("WAV", "PCM_U8", 1e-2), ("WAV", "PCM_16", 1e-4), ("WAV", "PCM_24", 1e-6), ("WAV", "PCM_32", 1e-6),
    ("WAV", "FLOAT", 1e-7), ("FLAC", "PCM_16", 1e-4), ("OGG", "VORBIS", 5e-2)])
def test_formats_and_bit_depths(tmp_path, fmt, subtype, tol):
    x = tone(SR)
    p = tmp_path / f"t.{fmt.lower()}"
    sf.write(p, x, SR, format=fmt, subtype=subtype)
    y = read_audio(p, SR)
    assert y.dtype == np.float32 and y.ndim == 1 and len(y) == len(x)
    assert np.abs(y[100:-100] - x[100:-100]).max() < tol


def test_other_rate_is_resampled(tmp_path):
    p = tmp_path / "t8k.wav"
    sf.write(p, tone(8000), 8000, subtype="FLOAT")
    y = read_audio(p, SR)
    assert len(y) == len(tone(SR))
    # against the analytic tone at 16 kHz, away from the filter's edges
    assert np.abs(y[400:-400] - tone(SR)[400:-400]).max() < 1e-3


def test_stereo_is_averaged(tmp_path):
    left, right = tone(SR), tone(SR, f=1000.0)
    p = tmp_path / "st.wav"
    sf.write(p, np.stack([left, right], 1), SR, subtype="FLOAT")
    assert np.abs(read_audio(p, SR) - (left + right) / 2).max() < 1e-6


def test_int16_array_is_scaled():
    x = np.array([0, 16384, -32768], np.int16)
    assert as_samples(x, SR).tolist() == [0.0, 0.5, -1.0]


@pytest.mark.parametrize("bad,match", [(np.array([], np.float32), "empty"),
                                       (np.array([0.0, np.nan], np.float32), "NaN or infinite"),
                                       (np.array([0.0, np.inf]), "NaN or infinite"),
                                       (np.array(["a"]), "dtype")])
def test_bad_arrays(bad, match):
    with pytest.raises(VpklInputError, match=match):
        as_samples(bad, SR, "chunk")


def _pcm16_wav(path, x, sr=SR):
    sf.write(path, x, sr, subtype="PCM_16")
    return sf.read(path, dtype="float32")[0]  # what libsndfile reads: the reference


def test_streamed_wav_sizes_are_read(tmp_path):
    """RIFF and data sizes 0xFFFFFFFF, as a writer that cannot seek back leaves them: libsndfile reads
    such a file to its end; vpkl refused it as a truncated WAV."""
    p = tmp_path / "streamed.wav"
    want = _pcm16_wav(p, tone(SR))
    b = bytearray(p.read_bytes())
    i = b.index(b"data")
    b[4:8] = b[i + 4:i + 8] = b"\xff\xff\xff\xff"
    p.write_bytes(bytes(b))
    assert np.array_equal(read_audio(p, SR), want)


def test_real_truncation_still_refused(tmp_path):
    p = tmp_path / "t.wav"
    _pcm16_wav(p, tone(SR))
    p.write_bytes(p.read_bytes()[:4000])
    with pytest.raises(VpklInputError, match="truncated WAV"):
        read_audio(p, SR)


@pytest.mark.parametrize("rate", [1, 999])
def test_absurd_sample_rate_refused(tmp_path, rate):
    """A header claiming 1 Hz made detect resample to 16 kHz until killed for memory."""
    p = tmp_path / "r.wav"
    sf.write(p, np.zeros(100, np.int16), rate)
    with pytest.raises(VpklInputError, match=rf"r\.wav: expected a sample rate from 1000 to 768000 Hz, got {rate}"):
        read_audio(p, SR)


def test_uint8_array_is_offset_binary(tmp_path):
    """uint8 samples are 8-bit WAV's offset binary (128 = silence), not signed: compared with
    libsndfile's reading of the same bytes as a PCM_U8 WAV."""
    assert as_samples(np.array([128, 255, 0, 192], np.uint8), SR).tolist() == [0.0, 127 / 128, -1.0, 0.5]
    p = tmp_path / "u8.wav"
    sf.write(p, tone(SR), SR, subtype="PCM_U8")
    ref = sf.read(p, dtype="float32")[0]
    raw = np.frombuffer(p.read_bytes()[-len(ref):], np.uint8)  # the data chunk is the file's last
    assert np.abs(as_samples(raw, SR) - ref).max() < 1e-7
    u16 = np.array([32768, 0, 65535], np.uint16)
    assert as_samples(u16, SR).tolist() == [0.0, -1.0, 32767 / 32768]


def test_opposite_phase_stereo_warns(tmp_path):
    from vpkl.runtime.errors import VpklWarning
    x = tone(SR)
    p = tmp_path / "anti.wav"
    sf.write(p, np.stack([x, -x], 1), SR, subtype="FLOAT")
    with pytest.warns(VpklWarning, match=r"anti\.wav: its 2 channels cancel when averaged to mono"):
        assert np.abs(read_audio(p, SR)).max() < 1e-7
    with pytest.warns(VpklWarning, match="chunk: its 2 channels cancel"):
        as_samples(np.stack([x, -0.9 * x], 1).astype(np.float32), SR, "chunk")


@pytest.mark.parametrize("right", ["same", "other tone", "silent", "noise"])
def test_ordinary_stereo_does_not_warn(right):
    import warnings
    x = tone(SR)
    r = {"same": x, "other tone": tone(SR, f=1000.0), "silent": 0 * x,
         "noise": np.random.default_rng(0).normal(0, 0.3, len(x))}[right]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        as_samples(np.stack([x, r], 1), SR)


def test_streamed_file_warns_once(tmp_path):
    import warnings
    from vpkl.runtime.errors import VpklWarning
    from vpkl.runtime.sources import file_chunks
    x = np.tile(tone(SR), 6)
    p = tmp_path / "anti.wav"
    sf.write(p, np.stack([x, -x], 1), SR, subtype="FLOAT")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        list(file_chunks(str(p), SR, 0.1))
    assert [str(m.message).split(":")[0] for m in w if m.category is VpklWarning] == [str(p)]


def test_wav_through_a_pipe_is_read(tmp_path):
    """`detect ... /dev/stdin` with a WAV piped in said 'the file is empty' (a pipe has no size)."""
    import subprocess
    import sys
    p = tmp_path / "t.wav"
    want = _pcm16_wav(p, tone(SR))
    code = ("import sys, numpy as np; from vpkl.runtime.audio import read_audio; "
            "sys.stdout.buffer.write(read_audio('/dev/stdin', 16000).tobytes())")
    r = subprocess.run([sys.executable, "-c", code], input=p.read_bytes(), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()
    assert np.array_equal(np.frombuffer(r.stdout, np.float32), want)


def test_endless_device_is_refused(monkeypatch):
    """A path that is not a regular file is read whole: /dev/zero must end in one line, not fill memory."""
    import vpkl.runtime.audio as audio
    monkeypatch.setattr(audio, "PIPE_LIMIT", 1 << 16)
    with pytest.raises(VpklInputError, match="/dev/zero: not a regular file and longer than 0.0625 MiB"):
        read_audio("/dev/zero", SR)
