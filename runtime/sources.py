"""Audio sources for ``vpkl stream``: a file (optionally paced at real speed), raw PCM on a pipe,
a microphone. Each yields (n,) float32 mono chunks, full scale +-1, at the wanted sample rate.

Channels are averaged (files and raw PCM); another sample rate is converted on the fly with
soxr's streaming resampler. The sources are generators: their errors (VpklInputError) come
from the first ``next()``, or later for what goes wrong mid-stream. The microphone needs the optional ``sounddevice`` package (``pip install
'vpkl[mic]'``) and the PortAudio library.
"""
from __future__ import annotations

import io
import os
import queue
import select
import stat
import time
from typing import Callable, Iterator

import numpy as np
import soxr

from .audio import StreamMix, check_rate, open_audio
from .errors import VpklInputError

RAW_FORMATS = {"s16le": "<i2", "s32le": "<i4", "f32le": "<f4"}  # raw PCM on stdin: ffmpeg's names


class Resampler:
    """Streaming resampler from ``rate_in`` to ``rate_out`` Hz (soxr, HQ); a pass-through when equal."""

    def __init__(self, rate_in: int, rate_out: int):
        self._rs = None if rate_in == rate_out else soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32",
                                                                        quality="HQ")

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        """(n,) float32 at rate_in -> (m,) float32 at rate_out; ``last`` flushes the filter's tail."""
        x = np.ascontiguousarray(x, np.float32)
        return x if self._rs is None else self._rs.resample_chunk(x, last=last)


def _samples(n_seconds: float, rate: int) -> int:
    return max(1, int(round(n_seconds * rate)))


def file_chunks(path: str, sample_rate: int, chunk_s: float, realtime: bool = False,
                clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                opened=None) -> Iterator[np.ndarray]:
    """Read an audio file block by block (constant memory, however long the file).

    Args:
        path: any file libsndfile reads; sample_rate: wanted rate in Hz; chunk_s: seconds per chunk;
        realtime: pace the chunks at real speed (each is yielded once its last sample would have
            arrived from a live source);
        opened: ``path`` already opened by :func:`vpkl.runtime.audio.open_audio` (a pipe can be
            opened only once), read from here and closed at the end.
    Raises:
        VpklInputError: the file cannot be opened or read (see :func:`vpkl.runtime.audio.open_audio`).
    """
    f = open_audio(path) if opened is None else opened
    rs = Resampler(f.samplerate, sample_rate)
    mix = StreamMix(path, f.samplerate)  # warns if the channels cancel in the first second
    block = _samples(chunk_s, f.samplerate)
    start, read = clock(), 0
    with f:
        try:
            for b in f.blocks(block, dtype="float32", always_2d=True):
                read += len(b)
                if realtime:
                    wait = start + read / f.samplerate - clock()
                    if wait > 0:
                        sleep(wait)
                yield rs(mix(b))
        except RuntimeError as e:  # libsndfile errors while reading
            raise VpklInputError(f"{path}: could not read the audio after {read} samples ({e})") from None
    mix.finish()
    tail = rs(np.zeros(0, np.float32), last=True)
    if tail.size:
        yield tail


def _waiting_reader(stream) -> Callable[[int], bytes | None]:
    """read(n): up to n bytes (b"" at the end), or None when nothing came for 0.1 s.

    On a pipe or terminal (POSIX) this waits with select() and reads what has arrived, so an
    idle writer does not block Ctrl-C; other streams are read with their own read(n)."""
    try:
        fd = stream.fileno()
        pollable = os.name == "posix" and not stat.S_ISREG(os.fstat(fd).st_mode)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pollable = False
    if not pollable:
        return stream.read

    def read(n: int) -> bytes | None:
        ready, _, _ = select.select([fd], [], [], 0.1)
        return os.read(fd, n) if ready else None
    return read


def audio_container(head: bytes) -> str | None:
    """The kind of audio file whose first 12 bytes are ``head`` (by its magic bytes), or None:
    "WAV", "FLAC", "Ogg", "AIFF", "CAF" or "MP3".

    WAV (RIFF, RIFX, RF64, WAVE), FLAC (fLaC), Ogg (OggS: Vorbis, Opus, FLAC), AIFF (FORM ...
    AIFF/AIFC), CAF (caff), MP3 (an ID3 tag, or an MPEG audio frame's 11-bit sync with layer
    bits set). Raw PCM can begin with these bytes only by coincidence: a 16-bit stream starting
    0xFFE0 or above, say, which no audio at rest does.
    """
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return "WAV"
    if head[:4] == b"fLaC":
        return "FLAC"
    if head[:4] == b"OggS":
        return "Ogg"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF"
    if head[:4] == b"caff":
        return "CAF"
    if head[:3] == b"ID3" or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06):
        return "MP3"
    return None


def raw_chunks(stream, fmt: str, rate: int, channels: int, sample_rate: int, chunk_s: float,
               warn: Callable[[str], None], name: str = "stdin") -> Iterator[np.ndarray]:
    """Read raw interleaved PCM (``arecord -t raw``, ``ffmpeg -f s16le``) from a binary stream.

    Args:
        stream: a binary file object (``sys.stdin.buffer``); fmt: a key of RAW_FORMATS; rate: its
            sample rate in Hz; channels: interleaved channels (averaged).
        warn: called with a message when the stream ends mid-sample: the incomplete trailing
            bytes are dropped (the documented repair), everything before them is used.
    Yields an empty chunk after each 0.1 s in which a pipe delivered nothing (see
    :func:`_waiting_reader`), so the caller can react to Ctrl-C.
    The channels' mix warns (:class:`~vpkl.runtime.errors.VpklWarning`) when they cancel.
    Raises:
        VpklInputError: an unknown format, a rate outside 1000 .. 768000 Hz, a channel count
            outside 1 .. 32; a stream that starts like an audio file (:func:`audio_container`:
            WAV, FLAC, Ogg, MP3, AIFF, ...), whose bytes would otherwise be taken for samples.
    """
    if fmt not in RAW_FORMATS:
        raise VpklInputError(f"--format: expected one of {', '.join(RAW_FORMATS)}, got {fmt!r}")
    check_rate(rate, "--rate")
    if not 1 <= channels <= 32:
        raise VpklInputError(f"--channels: expected 1 to 32 interleaved channels, got {channels}")
    dtype = np.dtype(RAW_FORMATS[fmt])
    frame_bytes = dtype.itemsize * channels
    want = _samples(chunk_s, rate) * frame_bytes
    rs = Resampler(rate, sample_rate)
    mix = StreamMix(name, rate)
    read = _waiting_reader(stream)
    head = b""
    while len(head) < 12:  # the first bytes, to refuse a WAV file's header taken for samples
        got = read(12 - len(head))
        if got is None:
            yield np.zeros(0, np.float32)
            continue
        if not got:
            break
        head += got
    container = audio_container(head)
    if container:
        tag = f" ({head[:4].decode()})" if container == "WAV" else ""  # RIFF, RIFX or RF64
        article = "an" if container in ("Ogg", "AIFF", "MP3") else "a"
        raise VpklInputError(f"{name}: starts with {article} {container} header{tag}, expected raw PCM samples: give the file "
                             "with --file, or decode it to raw samples (ffmpeg -i IN -f s16le -ac 1 -ar 16000 -)")
    ended = len(head) < 12
    while True:
        data, head = head, b""
        while len(data) < want and not ended:
            got = read(want - len(data))
            if got is None:  # nothing for 0.1 s: let the caller look at Ctrl-C
                yield np.zeros(0, np.float32)
                continue
            if not got:
                ended = True
                break
            data += got
        whole = len(data) // frame_bytes * frame_bytes
        if whole < len(data):
            warn(f"{name}: the stream ended mid-sample; dropped {len(data) - whole} trailing byte(s) "
                 f"(a {fmt} sample of {channels} channel(s) is {frame_bytes} bytes)")
        if whole:
            x = np.frombuffer(data[:whole], dtype).reshape(-1, channels).astype(np.float32)
            if dtype.kind == "i":
                x /= float(np.iinfo(dtype).max + 1)
            yield rs(mix(x))
        if len(data) < want:
            break
    mix.finish()
    tail = rs(np.zeros(0, np.float32), last=True)
    if tail.size:
        yield tail


def import_sounddevice():
    """The sounddevice module, or VpklInputError saying what to install."""
    try:
        import sounddevice
    except ImportError:
        raise VpklInputError("--mic: needs the sounddevice package: pip install 'vpkl[mic]'") from None
    except OSError as e:  # sounddevice is there but the PortAudio library is not
        raise VpklInputError(f"--mic: the PortAudio library is missing ({e}); install it "
                             "(Debian/Ubuntu: apt install libportaudio2; macOS: brew install portaudio)") from None
    return sounddevice


def mic_chunks(device, sample_rate: int, chunk_s: float, sd=None, stall_s: float | None = None,
               max_queued_s: float = 10.0, on_drop: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
    """Record from a microphone (PortAudio via sounddevice) at its default rate, resampled.

    Args:
        device: a sounddevice device index or name (None: the default input).
        sd: the sounddevice module (tests pass a fake); stall_s: seconds without audio after
            which the microphone counts as gone (default: 2 s or 3 chunks, the longer);
            max_queued_s: audio kept waiting when the
            consumer falls behind; older blocks beyond it are dropped and counted via on_drop(samples).
    Yields an empty chunk after each 0.1 s without audio, so the caller can react (to Ctrl-C, say).

    Raises:
        VpklInputError: sounddevice or PortAudio missing, no such device, the device cannot be
            opened, or it stops delivering audio (unplugged).
    """
    sd = sd or import_sounddevice()
    stall_s = max(2.0, 3 * chunk_s) if stall_s is None else stall_s
    what = f"microphone {device!r}" if device is not None else "the default microphone"
    try:
        info = sd.query_devices(device, "input")
    except (ValueError, sd.PortAudioError) as e:
        where = f"--device {device}: no such input device" if device is not None else "--mic: no default input device"
        raise VpklInputError(f"{where} ({e}); `python -m sounddevice` lists the devices") from None
    rate = int(info["default_samplerate"])
    block = _samples(chunk_s, rate)
    blocks = queue.Queue(maxsize=max(1, int(max_queued_s / chunk_s)))

    def callback(indata, frames, time_info, status):
        try:
            blocks.put_nowait(np.array(indata[:, 0], np.float32))
        except queue.Full:
            if on_drop is not None:
                on_drop(frames)

    rs = Resampler(rate, sample_rate)
    try:
        stream = sd.InputStream(device=device, samplerate=rate, channels=1, dtype="float32",
                                blocksize=block, callback=callback)
    except sd.PortAudioError as e:
        raise VpklInputError(f"{what}: could not be opened ({e})") from None
    with stream:
        last = time.monotonic()
        while True:
            try:
                x = blocks.get(timeout=min(0.1, stall_s))
            except queue.Empty:
                if time.monotonic() - last > stall_s:
                    raise VpklInputError(f"{what}: no audio for {stall_s:g} s; was it unplugged or "
                                         "taken by another program?") from None
                yield np.zeros(0, np.float32)  # nothing yet: lets the caller look at Ctrl-C
                continue
            last = time.monotonic()
            yield rs(x)
