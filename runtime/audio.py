"""Reading and checking audio: any file soundfile reads -> mono float32 at the bundle's rate.

Handles WAV, FLAC, OGG (whatever libsndfile reads), any sample rate (resampled with soxr),
mono or multi-channel (channels averaged), 8/16/24/32-bit integer or float samples.
Every failure is a :class:`VpklInputError` naming the file.
"""
from __future__ import annotations

import io
import os
import stat
import struct
import warnings

import numpy as np
import soundfile as sf
import soxr

from .errors import VpklInputError, VpklWarning

MIN_RATE, MAX_RATE = 1000, 768000  # Hz: sample rates vpkl reads (resampling from 1 Hz to 16 kHz ran out of memory)
PIPE_LIMIT = 256 << 20  # bytes read from a path that is not a regular file (a pipe, /dev/stdin)
STREAMED_SIZE = 0xFFFFFFFF  # a RIFF or data size a streaming writer leaves: "until the end of the file"


def _check_riff(f, size: int, path: str) -> None:
    """Reject a WAV whose RIFF header promises more data than the file holds (truncated).

    libsndfile silently reads what is there; a truncated recording would then be scored
    as if it were complete, so vpkl refuses it. A data size of 0xFFFFFFFF is what a writer
    that could not seek back (a pipe, a live recorder) leaves: libsndfile reads such a file
    to its end, and so does vpkl.

    Args:
        f: the file, binary, seekable; size: its length in bytes; path: its name for errors.
    """
    f.seek(0)
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    pos = 12
    while pos + 8 <= size:
        f.seek(pos)
        cid, clen = struct.unpack("<4sI", f.read(8))
        if cid == b"data":
            if clen != STREAMED_SIZE and pos + 8 + clen > size:
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
    """(n,) or (n, channels) samples -> (n,) by averaging the channels (no check; see :func:`mix_to_mono`)."""
    if x.ndim == 1:
        return x
    if x.ndim == 2:
        with np.errstate(invalid="ignore", over="ignore"):  # NaN and infinity pass through to be named
            return x.mean(axis=1)
    raise VpklInputError(f"{name}: expected (samples,) or (samples, channels), got shape {x.shape}")


def _cancel_warning(name: str, channels: int, mix_energy: float, channel_energy: float) -> str | None:
    """The warning for a mono mix that lost most of the channels' energy, or None.

    ``channel_energy`` is the channels' mean energy (sum of squares). Averaging C unrelated
    channels keeps 1/C of it, identical ones all of it; the mix is called cancelled when it keeps
    under a quarter of 1/C (stereo: under 12.5%, -9 dB), as channels in opposite phase do.
    """
    if channels < 2 or not (0 < channel_energy < np.inf and np.isfinite(mix_energy)):
        return None
    kept = mix_energy / channel_energy
    if kept >= 0.25 / channels:
        return None
    return (f"{name}: its {channels} channels cancel when averaged to mono (the mix keeps {100 * kept:.1f}% of "
            "their energy: channels in opposite phase?); the words may be lost: give one channel "
            "(e.g. sox in.wav out.wav remix 1)")


def mix_to_mono(x: np.ndarray, name: str = "audio") -> np.ndarray:
    """(n,) or (n, channels) samples -> (n,) by averaging the channels, with a :class:`VpklWarning`
    naming ``name`` when the mix cancels (see :func:`_cancel_warning`)."""
    y = to_mono(x, name)
    if x.ndim == 2 and x.shape[1] > 1:
        xe = x.astype(np.float64, copy=False)
        msg = _cancel_warning(name, x.shape[1], float(np.sum(y.astype(np.float64) ** 2)),
                              float(np.mean(np.sum(xe ** 2, axis=0))))
        if msg:
            warnings.warn(msg, VpklWarning, stacklevel=3)
    return y


class StreamMix:
    """Averages a stream's (n, channels) blocks to mono, and warns once (:class:`VpklWarning`) when
    the mix cancels: judged on the first ``after`` samples, or on all of a shorter stream at
    :meth:`finish`.
    """

    def __init__(self, name: str, after: int):
        self.name, self.after = name, after
        self._n, self._mix, self._ch, self._channels, self._done = 0, 0.0, 0.0, 1, False

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(n, channels) float32 -> (n,) float32 (NaN and infinity pass through, for the chunk check to name)."""
        with np.errstate(invalid="ignore", over="ignore"):
            y = x.mean(axis=1)
        if not self._done and x.shape[1] > 1:
            self._channels = x.shape[1]
            self._n += len(x)
            with np.errstate(invalid="ignore", over="ignore"):
                self._mix += float(np.sum(y.astype(np.float64) ** 2))
                self._ch += float(np.mean(np.sum(x.astype(np.float64) ** 2, axis=0)))
            if self._n >= self.after:
                self.finish()
        return y

    def finish(self) -> None:
        """Judge what was seen so far (once)."""
        if not self._done:
            self._done = True
            msg = _cancel_warning(self.name, self._channels, self._mix, self._ch)
            if msg:
                warnings.warn(msg, VpklWarning, stacklevel=2)


def check_rate(rate, name: str, why: str = "") -> int:
    """A sample rate in Hz from MIN_RATE to MAX_RATE, else VpklInputError naming ``name`` (``why``
    is appended to the message)."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise VpklInputError(f"{name}: expected a sample rate from {MIN_RATE} to {MAX_RATE} Hz, got {rate}{why}")
    return int(rate)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample (n,) samples from ``sr_in`` to ``sr_out`` Hz with soxr (high quality)."""
    if sr_in == sr_out:
        return x
    return soxr.resample(x, sr_in, sr_out, quality="HQ")


def open_audio(path: str) -> sf.SoundFile:
    """Open an audio file for reading after vpkl's checks (used whole by :func:`read_audio`,
    block by block by the streaming file source).

    A path that is not a regular file (``/dev/stdin``, a named pipe) cannot be seeked, which
    libsndfile needs: it is read whole into memory first, up to PIPE_LIMIT bytes.

    Raises:
        VpklInputError: missing file, a folder, no permission, empty, truncated WAV, not audio
            libsndfile reads, a sample rate outside MIN_RATE .. MAX_RATE, a pipe or device
            beyond PIPE_LIMIT.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VpklInputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise VpklInputError(f"{path}: is a folder, expected an audio file")
    try:
        with open(path, "rb") as raw:
            if stat.S_ISREG(os.fstat(raw.fileno()).st_mode):
                size = os.fstat(raw.fileno()).st_size
                if size:
                    _check_riff(raw, size, path)
                source = path
            else:
                data = raw.read(PIPE_LIMIT + 1)  # /dev/zero would otherwise be read forever
                if len(data) > PIPE_LIMIT:
                    raise VpklInputError(f"{path}: not a regular file and longer than {PIPE_LIMIT / 2 ** 20:g} MiB "
                                         "(read whole into memory): give a file, or stream it with `vpkl stream -`")
                source = io.BytesIO(data)
                size = len(source.getbuffer())
                if size:
                    _check_riff(source, size, path)
                    source.seek(0)
    except PermissionError:
        raise VpklInputError(f"{path}: permission denied: the audio file cannot be read") from None
    except OSError as e:
        raise VpklInputError(f"{path}: cannot be read ({e.strerror or e})") from None
    if size == 0:
        raise VpklInputError(f"{path}: the file is empty (0 bytes)")
    try:
        f = sf.SoundFile(source)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise VpklInputError(f"{path}: not a readable audio file ({e})") from None
    try:
        check_rate(f.samplerate, path, " Hz in its header (damaged?)")
    except VpklInputError:
        f.close()
        raise
    return f


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
    check_samples(x, path)
    x = mix_to_mono(x, path)
    return resample(x, sr, sample_rate).astype(np.float32)


MAX_CHANNELS = 32


def to_float(x: np.ndarray, name: str) -> np.ndarray:
    """Samples of any int, uint or float dtype -> float at full scale +-1 (floats unchanged).

    Signed integers are scaled by 2^(bits-1) (int16 / 32768, ...); unsigned ones are offset
    binary, as in 8-bit WAV: (x - 2^(bits-1)) / 2^(bits-1) (uint8 128 is silence).
    Raises:
        VpklInputError: another dtype (naming ``name``).
    """
    if np.issubdtype(x.dtype, np.unsignedinteger):
        half = float(2 ** (8 * x.dtype.itemsize - 1))
        return ((x.astype(np.float64) - half) / half).astype(np.float32)
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    if not np.issubdtype(x.dtype, np.floating):
        raise VpklInputError(f"{name}: expected int or float samples, got dtype {x.dtype}")
    return x


def check_layout(x: np.ndarray, name: str) -> None:
    """Refuse anything but (samples,) or (samples, channels) with 1 to MAX_CHANNELS channels.

    A (channels, samples) array (more than MAX_CHANNELS "channels") is named as such; a smaller
    one cannot be told apart and is read as (samples, channels).
    """
    if x.ndim == 2 and x.shape[1] > MAX_CHANNELS:
        raise VpklInputError(f"{name}: shape {x.shape} read as (samples, channels) gives {x.shape[1]} channels "
                             f"(at most {MAX_CHANNELS}); pass (samples, channels), e.g. x.T for channels first")
    if x.ndim not in (1, 2) or (x.ndim == 2 and x.shape[1] == 0):
        raise VpklInputError(f"{name}: expected (samples,) or (samples, channels), got shape {x.shape}")


def as_samples(audio, sample_rate: int, name: str = "audio") -> np.ndarray:
    """Accept a path, an open binary file (``io.BytesIO``, say) or an in-memory array; return
    mono float32 samples at ``sample_rate``.

    A file (path or object) is read with soundfile and resampled; an array is taken to be at
    ``sample_rate`` already, its samples scaled by :func:`to_float`. (n, channels) arrays are
    averaged to mono (:func:`mix_to_mono`, which warns when they cancel).

    Returns:
        (n,) float32.
    Raises:
        VpklInputError: an unreadable file, another dtype, another shape (a (channels, samples)
            array named as such), empty, NaN or infinite samples.
    """
    if isinstance(audio, (str, os.PathLike)):
        return read_audio(audio, sample_rate)
    if hasattr(audio, "read"):
        try:
            x, sr = sf.read(audio, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
            raise VpklInputError(f"{name}: not a readable audio file ({str(e).splitlines()[0][:200]})") from None
        check_samples(x, name)
        x = mix_to_mono(x, name)
        return resample(x, check_rate(sr, name), sample_rate) if sr != sample_rate else x
    x = to_float(np.asarray(audio), name)
    check_layout(x, name)
    check_samples(x, name)
    x = mix_to_mono(x, name).astype(np.float32)
    check_samples(x, name)  # float64 beyond the float32 range
    return x
