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
