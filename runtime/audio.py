"""Reading and checking audio: any file soundfile reads -> mono float32 at the bundle's rate.

Handles WAV, FLAC, OGG (whatever libsndfile reads), any sample rate (resampled with soxr),
mono or multi-channel (channels averaged), 8/16/24/32-bit integer or float samples.
Every failure is a :class:`VpklInputError` naming the file.
"""
from __future__ import annotations

import os
import struct

import numpy as np
import soundfile as sf
import soxr

from .errors import VpklInputError


def _check_riff(path: str) -> None:
    """Reject a WAV whose RIFF header promises more data than the file holds (truncated).

    libsndfile silently reads what is there; a truncated recording would then be scored
    as if it were complete, so vpkl refuses it.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, clen = struct.unpack("<4sI", f.read(8))
            if cid == b"data":
                if pos + 8 + clen > size:
                    raise VpklInputError(
                        f"{path}: truncated WAV: the header declares {clen} bytes of samples "
                        f"but the file holds only {size - pos - 8}")
                return
            pos += 8 + clen + (clen & 1)


def check_samples(x: np.ndarray, name: str) -> None:
    """Raise :class:`VpklInputError` unless ``x`` is non-empty and finite."""
    if x.size == 0:
        raise VpklInputError(f"{name}: the audio is empty (0 samples)")
    if not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise VpklInputError(f"{name}: the audio holds {bad} NaN or infinite sample(s)")


def to_mono(x: np.ndarray, name: str = "audio") -> np.ndarray:
    """(n,) or (n, channels) samples -> (n,) by averaging the channels."""
    if x.ndim == 1:
        return x
    if x.ndim == 2:
        return x.mean(axis=1)
    raise VpklInputError(f"{name}: expected (samples,) or (samples, channels), got shape {x.shape}")


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample (n,) samples from ``sr_in`` to ``sr_out`` Hz with soxr (high quality)."""
    if sr_in == sr_out:
        return x
    return soxr.resample(x, sr_in, sr_out, quality="HQ")


def open_audio(path: str) -> sf.SoundFile:
    """Open an audio file for reading after vpkl's checks (used whole by :func:`read_audio`,
    block by block by the streaming file source).

    Raises:
        VpklInputError: missing file, a folder, empty, truncated WAV, not audio libsndfile reads.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VpklInputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise VpklInputError(f"{path}: is a folder, expected an audio file")
    if os.path.getsize(path) == 0:
        raise VpklInputError(f"{path}: the file is empty (0 bytes)")
    _check_riff(path)
    try:
        return sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise VpklInputError(f"{path}: not a readable audio file ({e})") from None


def read_audio(path: str, sample_rate: int) -> np.ndarray:
    """Read an audio file as mono float32 at ``sample_rate`` Hz, full scale +-1.

    Args:
        path: a file soundfile reads (WAV, FLAC, OGG, ...).
        sample_rate: the wanted rate in Hz (the bundle's, 16000 for the shipped ones).
    Returns:
        (n_samples,) float32.
    Raises:
        VpklInputError: missing file, not audio, truncated WAV, empty, NaN/inf samples.
    """
    path = os.fspath(path)
    with open_audio(path) as f:
        try:
            x = f.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as e:
            raise VpklInputError(f"{path}: not a readable audio file ({e})") from None
        sr = f.samplerate
    x = to_mono(x, path)
    check_samples(x, path)
    return resample(x, sr, sample_rate).astype(np.float32)


def as_samples(audio, sample_rate: int, name: str = "audio") -> np.ndarray:
    """Accept a path or an in-memory array; return mono float32 samples at ``sample_rate``.

    An array is taken to be at ``sample_rate`` already. Integer arrays are scaled by their
    full scale (int16 / 32768, ...); (n, channels) arrays are averaged to mono.
    """
    if isinstance(audio, (str, os.PathLike)):
        return read_audio(audio, sample_rate)
    x = np.asarray(audio)
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    elif not np.issubdtype(x.dtype, np.floating):
        raise VpklInputError(f"{name}: expected int or float samples, got dtype {x.dtype}")
    x = to_mono(x, name).astype(np.float32)
    check_samples(x, name)
    return x
