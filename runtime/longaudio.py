"""Offline detection over audio of any length in bounded memory: the audio read block by block,
the causal part of the audio branch run once over all of it, the bidirectional part over
overlapping windows.

What a long utterance's answer is. The front end (causal normalisation) and ``audio_causal.onnx``
(conv, MLP, unidirectional LSTMs, states carried from block to block) are causal, so streaming
them over the file gives exactly the frames they give on the whole of it. The two BiLSTMs
(``audio_bidir.onnx``) and the head's min-max normalisation of aud_att see a whole utterance;
over a long file they run on windows of ``window_s`` seconds, ``hop_s`` apart: frames
[0, W), [H, H + W), [2H, 2H + W), ... and a last window [N - W, N) that ends with the audio
(W, H, N in frames; windows are never shorter than W unless the audio is). Each window is scored
like a whole utterance. A keyword's answer for the file is that of its best-scoring window: S
is that window's S, the localised frame its localisation (the argmax of aud_att over its speech
frames, :mod:`vpkl.runtime.localise`) counted from the start of the file, and aud_att that
window's attention (``window`` says which frames it covers).

Audio no longer than the window gives one window over all of it: the answer is exactly the
whole-utterance one (to float rounding; a test holds it to 1e-5). With the defaults (10 s
windows, 5 s apart) every stretch of up to 5 s lies wholly inside some window, and every
frame but those within 2.5 s of the ends is at least 2.5 s from the edges of the window
centred nearest it. Runs of digital silence (25 ms or more of zeros: an idle device) are
cut out before the model hears them (:mod:`vpkl.runtime.gaps`), so windows count the audio
heard, and their frames are laid out on the input's (aud_att 0 in the silence); audio that is
digital silence throughout still gets one window, all 0. Memory: the window's causal frames, one block of samples and its
features, the best window per keyword; none of it grows with the length of the audio.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .audio import as_samples, open_audio
from .bundle import Bundle
from .checks import check_loc_gate, finite_real, shown
from .errors import VpklInputError
from .features import StreamingFrontEnd, silent_frames
from .gaps import MIN_GAP_S, FrameMap, SilenceCutter
from .localise import LOC_GATE_DB, FrameEnergy, localise
from .sources import file_chunks

WINDOW_S = 10.0   # default window: audio up to this long is scored exactly as one utterance
HOP_S = 5.0       # default distance between windows
BLOCK_S = 2.0     # seconds of samples read and encoded at a time


def min_samples(bundle: Bundle) -> int:
    """Fewest samples that give one audio embedding: two log-mel frames (35 ms at 16 kHz)."""
    fe = bundle.front_end
    return fe.win_length + fe.hop_length


def require_one_frame(bundle: Bundle, x: np.ndarray, name: str) -> np.ndarray:
    """Return ``x`` if it gives at least one audio embedding, else raise VpklInputError naming ``name``."""
    _check_length(bundle, len(x), name)
    return x


def _check_length(bundle: Bundle, n: int, name: str) -> None:
    need = min_samples(bundle)
    if n < need:
        sr = bundle.front_end.sample_rate
        raise VpklInputError(f"{name}: {n / sr * 1000:.1f} ms of audio is shorter than one frame "
                             f"(needs at least {need / sr * 1000:.0f} ms: {need} samples at {sr} Hz)")


class CausalEncoder:
    """Samples in pieces -> causal frames (the output of ``audio_causal.onnx``), each computed once.

    Carries the front end's state, the last log-mel frames the conv (k4, s2) still needs and the
    LSTMs' h/c states, so the frames of a stream fed in any pieces, then :meth:`finish`, are
    those of :meth:`Bundle.embed_features` on the whole (to float rounding): a zero log-mel frame
    of conv padding before the first frame and after the last. Each frame comes with whether it
    was heard: some of its four log-mel frames were not digital silence
    (:func:`~vpkl.runtime.features.silent_frames`), and its energy in dBFS
    (:class:`~vpkl.runtime.localise.FrameEnergy`, for localisation).

    Leading digital silence (a padded file, a device warming up) is not encoded: the stream
    begins at its first sound. Until a log-mel frame is heard, frames come out as zeros, not
    heard. From the first heard log-mel frame (on the conv's even grid: the front end's onset
    rule, :func:`~vpkl.runtime.features.mute_onset`, makes it even; an odd one would be rounded
    up, so frame numbers and times stay those of the whole stream) the conv and the LSTMs start afresh, as on a stream that
    began there: speech after a multiple of 20 ms of zeros is encoded exactly as without them.
    Running the LSTMs through the silence instead changed which near-threshold words fired
    (tests/test_silence.py).

    Digital silence anywhere (runs of zeros of at least 25 ms) is cut out of the samples
    before the front end (:mod:`vpkl.runtime.gaps`): the frames come out on the model's timeline
    (the kept samples), and ``frame_map`` turns them into frames of the input. ``n_samples``
    counts the input's samples, ``n_frames`` the model's frames; :meth:`input_frames` gives the
    input's frame count.
    """

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        fe = bundle.front_end
        self.front_end = StreamingFrontEnd(fe)
        self.cutter = SilenceCutter(max(1, int(round(MIN_GAP_S * fe.sample_rate))))
        self.frame_map = FrameMap(float(fe.embedding_centre(0)), 2 * fe.hop_length)  # conv stride 2
        self.energy = FrameEnergy(fe)
        self.kept = np.zeros(0, np.float32)          # the samples the last call passed to the front end
        self.reset()

    @property
    def n_samples(self) -> int:
        """Samples of the input fed since the stream began (the digital silence cut out included)."""
        return self.cutter.n_in

    def input_frames(self, final: bool = False) -> int:
        """Frames of the input so far: the model's and those of the silence cut out. ``final``:
        after :meth:`finish`, the count a stream of ``n_samples`` samples has (as for one with no
        cut, also when nearly all of it was cut)."""
        if final:
            return self.bundle.front_end.n_frames(self.n_samples) // 2
        step = self.frame_map.step   # silence held back (its run not yet complete) counts as cut
        return self.n_frames + (self.frame_map.samples_cut + self.cutter.held + step // 2) // step

    def reset(self) -> None:
        """Forget the stream: the next sample is sample 0, the next frame frame 0."""
        self.front_end.reset()
        self.cutter.reset()
        self.frame_map.reset()
        self.energy.reset()
        self._mel = np.zeros((1, self.bundle.front_end.n_mels), np.float32)  # the conv's zero padding frame -1
        self._mel_heard = np.zeros(1, bool)                                     # per row of _mel: not silent
        self._h, self._c = self.bundle.initial_state()
        self.n_frames = 0   # causal frames (= audio embeddings) produced since the stream began
        self._started = False   # a log-mel frame has been heard (see the class docstring)
        self._rows = 0          # before that: log-mel frames received
        self._skip = 0          # log-mel frames still to drop before the restart (see encode_features)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Feed (n,) float samples at the bundle's rate, full scale +-1 (n >= 0); returns the
        (k, H) float32 causal frames they complete (k >= 0, on the model's timeline), (k,) bool:
        heard, and (k,) float32: their energies in dBFS."""
        new, heard = self._kept(*self.cutter(x))
        return new, heard, self.energy.take(self.n_frames)

    def _kept(self, kept: np.ndarray, cuts: list) -> tuple[np.ndarray, np.ndarray]:
        for at, n in cuts:
            self.frame_map.add(at, n)
        self.kept = kept
        self.energy.add(kept)
        feats = self.front_end(kept)
        return self.encode_features(feats, ~silent_frames(feats, self.bundle.front_end))

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """End of the stream: the last run of zeros is complete and the conv's end padding completes
        the last frame; returns the (k, H) frames that completes (k >= 0), heard, energies."""
        new, heard = self._kept(*self.cutter.finish())
        self.frame_map.last = self.input_frames(final=True) - 1
        if not self._started:   # nothing heard: the frames a stream of this length has, all silent
            last, last_heard = self._silent_frames(self._rows // 2 - self.n_frames)
        else:
            last, last_heard = self._encode(np.zeros((1, self.bundle.front_end.n_mels), np.float32),
                                            np.zeros(1, bool))
        return (np.concatenate([new, last]), np.concatenate([heard, last_heard]),
                self.energy.take(self.n_frames, final=True))

    def _silent_frames(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = max(k, 0)
        self.n_frames += k
        return np.zeros((k, self.bundle.causal_dim), np.float32), np.zeros(k, bool)

    def encode_features(self, feats: np.ndarray, heard: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(t, n_mels) float32 log-mel frames of the stream and (t,) bool (not silent) -> the (k, H)
        causal frames they complete and (k,) bool: some of each one's log-mel frames was heard."""
        if self._started:
            return self._encode(feats, heard)
        if not heard.any():
            self._rows += len(feats)
            return self._silent_frames((self._rows - 1) // 2 - self.n_frames)
        j = self._rows + int(np.argmax(heard))            # the first heard log-mel frame
        j0 = j + j % 2        # the restart: log-mel frame j0, even (the front end's onset rule already makes j even)
        lead, _ = self._silent_frames(j0 // 2 - self.n_frames)
        self._started, self._skip = True, j0 - self._rows
        new, new_heard = self._encode(feats, heard)
        return np.concatenate([lead, new]), np.concatenate([np.zeros(len(lead), bool), new_heard])

    def _encode(self, feats: np.ndarray, heard: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._skip:
            k = min(self._skip, len(feats))
            feats, heard, self._skip = feats[k:], heard[k:], self._skip - k
        mel = np.concatenate([self._mel, feats])
        mel_heard = np.concatenate([self._mel_heard, heard])
        k = (len(mel) - 2) // 2
        if k < 1:
            self._mel, self._mel_heard = mel, mel_heard
            return np.zeros((0, self.bundle.causal_dim), np.float32), np.zeros(0, bool)
        new, self._h, self._c = self.bundle.encode_causal(mel[:2 * k + 2], self._h, self._c)
        # frame n is made of log-mel rows 2n..2n+3 of mel (row 0 = log-mel frame -1)
        new_heard = np.lib.stride_tricks.sliding_window_view(mel_heard[:2 * k + 2], 4)[::2].any(axis=1)
        self._mel, self._mel_heard = mel[2 * k:].copy(), mel_heard[2 * k:].copy()
        self.n_frames += k
        return new, new_heard


@dataclass
class WindowScores:
    """The head's output on one scored window: frames [start, end) of the audio (absolute),
    S (Q,) and aud_att (Q, end - start) float32, in the query set's order, and ``frames`` (Q,)
    int64: each query's localised frame (absolute; :func:`~vpkl.runtime.localise.localise`)."""

    start: int
    end: int
    scores: np.ndarray
    aud_att: np.ndarray
    frames: np.ndarray


def sample_blocks(audio, sample_rate: int, name: str = "audio", block_s: float = BLOCK_S
                  ) -> tuple[float, Iterator[np.ndarray]]:
    """Audio as blocks of mono float32 samples at ``sample_rate``, without holding it whole.

    Args:
        audio: a file path (read block by block with soundfile, resampled with soxr's streaming
            resampler, channels averaged), or (n,) / (n, channels) int or float samples already at
            ``sample_rate`` (cut into blocks of that array).
    Returns:
        (duration in seconds, iterator of (n,) float32 blocks at ``sample_rate``).
    Raises:
        VpklInputError, naming the file (its path) or ``name`` (samples): a file that cannot be
        opened (at once), NaN or infinite samples (when the iterator reaches them).
    """
    if isinstance(audio, (str, os.PathLike)):
        name = os.fspath(audio)  # a file is named by its path, as read_audio names it
        f = open_audio(audio)  # once: a pipe (/dev/stdin) cannot be opened twice
        duration = f.frames / f.samplerate
        blocks = file_chunks(name, sample_rate, block_s, opened=f)
    else:
        x = as_samples(audio, sample_rate, name)
        step = max(1, int(block_s * sample_rate))
        duration = len(x) / sample_rate
        blocks = (x[i:i + step] for i in range(0, len(x), step))
    return duration, _finite(blocks, sample_rate, name)


def _finite(blocks: Iterator[np.ndarray], sample_rate: int, name: str) -> Iterator[np.ndarray]:
    done = 0
    for b in blocks:
        if not np.all(np.isfinite(b)):
            at = done + int(np.flatnonzero(~np.isfinite(b))[0])
            raise VpklInputError(f"{name}: the audio holds NaN or infinite sample(s), the first at "
                                 f"{at / sample_rate:.3f} s")
        done += len(b)
        yield b


def check_window(bundle: Bundle, window_s: float, hop_s: float) -> tuple[int, int]:
    """(W, H): ``window_s`` and ``hop_s`` in whole frames (rounded).

    Raises:
        VpklInputError: either is not a finite number, W < 1 frame, or H outside 1 .. W frames.
    """
    for k, v in (("window_s", window_s), ("hop_s", hop_s)):
        if finite_real(v) is None:
            raise VpklInputError(f"{k}: expected a finite number of seconds, got {shown(v)}")
    w, h = int(round(finite_real(window_s) * bundle.frame_rate)), int(round(finite_real(hop_s) * bundle.frame_rate))
    if w < 1:
        raise VpklInputError(f"window_s: {window_s} s is less than one frame ({1 / bundle.frame_rate:.3f} s)")
    if not 1 <= h <= w:
        raise VpklInputError(f"hop_s: expected 1 to {w} frames ({1 / bundle.frame_rate:.3f} s to window_s = "
                             f"{window_s} s), got {hop_s} s: a larger hop would leave audio unscored")
    return w, h


def scan(bundle: Bundle, audio, queries, window_s: float = WINDOW_S, hop_s: float = HOP_S,
         name: str = "audio", progress: Callable[[float, float], None] | None = None,
         loc_gate_db: float | None = LOC_GATE_DB) -> Iterator[WindowScores]:
    """Score every window of an utterance of any length (see the module docstring for the windows).

    Args:
        audio: a file path or samples (see :func:`sample_blocks`).
        queries: enrolled queries, a :class:`~vpkl.runtime.queries.QuerySet` (prepared for the
            bundle's scorer once), or (Q, M, D) float32 (see :meth:`Bundle.score`).
        window_s, hop_s: window length and distance in seconds (rounded to frames, 50 per second
            for the shipped bundles).
        progress: called as ``progress(seconds_done, seconds_total)`` after each block read.
        loc_gate_db: localise over the window's frames this many dB above its quiet level
            (:mod:`vpkl.runtime.localise`); None: the paper's argmax over all its frames.
    Yields:
        :class:`WindowScores` in order of their end frame, in frames of the input; one window
        when the audio holds at most W frames once its digital silence is cut out (module
        docstring). A window starts at its first frame that is not silence (as
        :class:`~vpkl.runtime.stream.Spotter`'s do); a window of silence alone is not scored;
        audio that is digital silence throughout gives one window (its last W frames) with S = 0
        and aud_att = 0 for every query (nothing was heard, so no keyword was said).
    Raises:
        VpklInputError: at once, bad window_s / hop_s / loc_gate_db; as the windows are iterated,
            unreadable, empty, non-finite or too short audio (named by its path, or ``name`` for
            samples).
    """
    w, h = check_window(bundle, window_s, hop_s)     # checked now, not when iteration starts
    return _scan(bundle, audio, queries, w, h, name, progress, check_loc_gate(loc_gate_db))


def _scan(bundle: Bundle, audio, queries, w: int, h: int, name: str, progress, loc_gate_db) -> Iterator[WindowScores]:
    name = os.fspath(audio) if isinstance(audio, (str, os.PathLike)) else name
    total_s, blocks = sample_blocks(audio, bundle.front_end.sample_rate, name)
    enc = CausalEncoder(bundle)
    frames = np.zeros((0, bundle.causal_dim), np.float32)  # causal frames [enc.n_frames - len, enc.n_frames)
    heard = np.zeros(0, bool)                               # per frame: not digital silence alone
    energy = np.zeros(0, np.float32)                        # per frame: dBFS
    next_end, last_end, scored = w, 0, 0

    def rows(end: int) -> slice:  # the window ending at frame ``end``, as rows of ``frames``
        base = enc.n_frames - len(frames)
        return slice(max(end - w, 0) - base, end - base)

    def window(end: int) -> WindowScores:
        r = rows(end)
        skip = int(np.argmax(heard[r])) if heard[r].any() else 0   # a window starts at its first sound
        s, att, _ = bundle.score(queries, bundle.encode_bidirectional(frames[r][skip:]))
        first = max(end - w, 0) + skip
        placed = enc.frame_map.to_input(first + localise(att, energy[r][skip:], loc_gate_db))
        a, b, att = enc.frame_map.lay_out(first, att)   # frames of the input
        return WindowScores(a, b, s, att, np.atleast_1d(placed))

    def silent(end: int) -> bool:
        return not heard[rows(end)].any()

    sr = bundle.front_end.sample_rate
    for x in blocks:
        new, new_heard, new_energy = enc(x)
        if len(new):
            frames, heard = np.concatenate([frames[-w:], new]), np.concatenate([heard[-w:], new_heard])
            energy = np.concatenate([energy[-w:], new_energy])
        while next_end <= enc.n_frames:
            if not silent(next_end):
                scored += 1
                yield window(next_end)
            last_end, next_end = next_end, next_end + h
        enc.frame_map.forget_before(enc.n_frames - len(frames))   # no window starts before these frames
        if progress is not None:
            progress(enc.n_samples / sr, total_s)
    if progress is not None and enc.n_samples / sr < total_s:
        progress(total_s, total_s)  # all read (resampling can leave a sample's rounding short)
    n = enc.n_samples
    if n == 0:
        raise VpklInputError(f"{name}: the audio is empty (0 samples)")
    _check_length(bundle, n, name)
    new, new_heard, new_energy = enc.finish()
    frames, heard = np.concatenate([frames[-w:], new]), np.concatenate([heard[-w:], new_heard])
    energy = np.concatenate([energy[-w:], new_energy])
    if scored == 0 and silent(enc.n_frames):   # digital silence alone: nothing heard, no keyword said
        total = enc.input_frames(final=True)
        start = max(total - w, 0)
        q = len(queries)
        yield WindowScores(start, total, np.zeros(q, np.float32), np.zeros((q, total - start), np.float32),
                           np.full(q, start, np.int64))
    elif scored == 0 or (last_end < enc.n_frames and not silent(enc.n_frames)):
        yield window(enc.n_frames)  # the last window, or the only one
