"""Streaming keyword spotting: audio chunks in, detections with frame positions and latency out.

Why: offline :func:`~vpkl.runtime.detect.detect` needs the whole utterance before it answers; a
live source (a microphone, a pipe, an hour-long file) needs answers while the audio arrives, in
constant memory. A :class:`Spotter` is one such stream over a bundle and enrolled queries (which
any number of Spotters may share). Between chunks it keeps only what the next frames need:

- the front end's state (:class:`~vpkl.runtime.features.StreamingFrontEnd`: under one window of
  samples, the last sample, the running normaliser);
- two log-mel frames (the conv's overlap; k4, s2) and the four unidirectional LSTMs' states, so
  the causal part of the audio branch (``audio_causal.onnx``) encodes every sample once;
- the last ``window_s`` seconds of causal frames.

Every ``hop_s`` seconds of stream (at fixed stream positions, whatever the chunking) the
bidirectional part (``audio_bidir.onnx``: the two BiLSTMs) runs over that window and the
localising attention head (Nortje & Kamper, SLT 2022, Sec. 3.2) scores every query against it:
S, and the localised frame = the argmax of aud_att over the window's speech frames
(:mod:`vpkl.runtime.localise`), exactly as offline but over the window rather than the whole
utterance. A keyword fires when

- S >= its threshold,
- the peak of its aud_att (the argmax over all the window's frames) has at least
  ``lookahead_s`` of audio after it in the window (the backward LSTMs have then heard the end
  of the word; at :meth:`Spotter.flush` the end of the stream counts as enough),
- ``confirm`` consecutive scored windows have put the peak there (within 2 frames) above
  threshold (the final window at :meth:`Spotter.flush` needs no confirmation), and
- no detection of that keyword had its peak within ``refractory_s`` of it (one spoken word
  gives one detection, not one per window).

The rules wait on the model's own peak, not on the localised frame: on keyword-free speech the
peak of a window that scores above threshold usually sits on the window's last frame (the
model has not settled) and fails the lookahead, which the localised frame, kept out of a quiet
last frame, would often pass; waiting on the localised frame more than doubled the false
alarms per hour of a leave-one-speaker-out model on keyword-free validation audio (README,
*Accuracy*). The detection reports the localised frame.

At the start of a stream, windows shorter than ``min_window_s`` are not scored (except by
:meth:`Spotter.flush`): the model was trained on whole utterances of 1.5-5 s. Each of these
rules removes false detections that scoring every window would give; the README (*Streaming:
what the rules and the window cost*) has their measured precision and recall, and what window
and hop trade in delay, compute and agreement with ``detect``.

Unlike ``detect``, which reports one place per keyword per utterance (the argmax over all of
it), the stream reports every place where a keyword fires: a word the model mistakes for a
keyword is reported even when the keyword itself is said later (offline, the later, stronger
match is the answer and hides it). Each streamed detection is what ``detect`` says of the
audio heard so far (while the stream is shorter than the window, exactly so). The delay of a
detection is about ``lookahead_s`` plus ``confirm`` hops; the compute per second of audio
about (window / hop) times that of the BiLSTMs on one second, plus the causal part once.

Threads: a Spotter refuses to be entered by two threads at once (its state is one stream's, so
two feeders would interleave their audio into a meaningless stream): the second call raises
:class:`~vpkl.runtime.errors.VpklInputError` and changes nothing. Calls from different threads
one after another are fine. Independent streams, each with its own Spotter over the same
bundle and queries, run in parallel safely (onnxruntime sessions and the native head may be
called from several threads at once).

Digital silence (runs of 25 ms or more of samples at or below -96 dBFS: zeros) is cut out of
the stream before the model hears it (:mod:`vpkl.runtime.gaps`): windows, hops and the rules count the audio heard,
so zeros before, inside or after speech change nothing the stream decides; detections give
frames and times of the input. A keyword said just before the input turns to digital silence is
therefore reported when sound returns, or at :meth:`Spotter.flush`.

Speech gating (``vad=True``, off by default): silero-vad (:mod:`vpkl.runtime.vad`) marks each
32 ms of the stream speech or not, and a window with no speech within ``pad_s`` of it is not
scored (as a window of digital silence is not): no compute and no false alarm there. The README
(*False alarms per hour*) gives what it saves and what it costs in misses.
"""
from __future__ import annotations

import numbers
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from collections.abc import Iterable, Iterator

import numpy as np

from .audio import check_layout, to_float, to_mono
from .bundle import Bundle
from .checks import check_loc_gate, finite_real, resolve_thresholds, shown
from .errors import VpklInputError
from .localise import LOC_GATE_DB, localise
from .longaudio import CausalEncoder, WindowScores  # noqa: F401 (WindowScores: part of this module's API)
from .queries import QuerySet
from .sources import file_chunks

_DTYPES = (np.int8, np.int16, np.int32, np.uint8, np.uint16, np.uint32, np.float32, np.float64)


@dataclass(frozen=True)
class StreamConfig:
    """Streaming parameters, in seconds of audio (converted to frames at the bundle's frame rate).

    window_s: audio the BiLSTMs and the head see each hop; hop_s: how often the window is
    scored; min_window_s: mid-stream, a window is scored only once it holds this much audio (at
    the start of a stream); lookahead_s: audio needed after a localised frame before it may fire
    (mid-stream); confirm: mid-stream, consecutive scored windows that must localise the
    keyword at the same frame (within 2) above its threshold before it fires; refractory_s: a
    keyword does not fire again within this distance of its last detection; span_level: a
    detection's span is the run of frames around its frame with aud_att >= this; loc_gate_db:
    localise among the window's frames at least this many dB above its quiet level
    (:mod:`vpkl.runtime.localise`), None for the paper's argmax over all of them.
    """

    window_s: float = 3.0
    hop_s: float = 0.2
    min_window_s: float = 1.5
    lookahead_s: float = 0.3
    confirm: int = 2
    refractory_s: float = 0.6
    span_level: float = 0.5
    loc_gate_db: float | None = LOC_GATE_DB

    def frames(self, frame_rate: float) -> dict:
        """{"window", "hop", "min_window", "lookahead", "refractory"} in whole frames (each value rounded
        to the nearest frame; ``min_window_s`` capped at ``window_s``).

        Raises:
            VpklInputError: a value that is not a finite real number (``confirm``: an integer >= 1),
                or a combination that cannot work, named by field.
        """
        f = {k: getattr(self, k) for k in ("window_s", "hop_s", "min_window_s", "lookahead_s", "refractory_s",
                                           "span_level")}
        for k, v in f.items():
            if finite_real(v) is None:
                raise VpklInputError(f"{k}: expected a finite number, got {shown(v)}")
        out = {k[:-2]: int(round(finite_real(v) * frame_rate)) for k, v in f.items() if k.endswith("_s")}
        out["min_window"] = min(out["min_window"], out["window"])
        if out["window"] < 1 or out["hop"] < 1:
            raise VpklInputError(f"window_s and hop_s: expected at least one frame ({1 / frame_rate:.3f} s) each, "
                                 f"got {self.window_s} s and {self.hop_s} s")
        if out["hop"] > out["window"]:
            raise VpklInputError(f"hop_s: {self.hop_s} s is longer than window_s ({self.window_s} s): "
                                 "audio between windows would never be scored")
        if out["min_window"] < 0:
            raise VpklInputError(f"min_window_s: expected >= 0, got {self.min_window_s}")
        if not 0 <= out["lookahead"] < out["window"]:
            raise VpklInputError(f"lookahead_s: {self.lookahead_s} s is {out['lookahead']} frames; expected 0 to "
                                 f"{out['window'] - 1} (fewer than window_s's {out['window']})")
        if isinstance(self.confirm, (bool, np.bool_)) or not isinstance(self.confirm, numbers.Integral) \
                or self.confirm < 1:
            raise VpklInputError(f"confirm: expected a whole number of windows >= 1, got {shown(self.confirm)}")
        if out["refractory"] < 0:
            raise VpklInputError(f"refractory_s: expected >= 0, got {self.refractory_s}")
        if not 0 < self.span_level <= 1:
            raise VpklInputError(f"span_level: expected 0 < span_level <= 1, got {self.span_level}")
        check_loc_gate(self.loc_gate_db)
        return out


@dataclass
class Detection:
    """One keyword detected in a stream.

    frame: localised audio embedding, counted from the start of the stream (50 per second for
    the shipped bundles); time_s: its centre in seconds since the stream began; span: (first,
    last) frames, inclusive, of the run around ``frame`` with aud_att >= span_level, and span_s
    their centres in seconds; window: (first, last + 1) frames of the window that fired it;
    chunk: 0-based index of the feed() that reported it (flush() counts as the chunk after the
    last); latency_ms: wall-clock ms from the arrival of that chunk (the call) to this
    detection; delay_s: seconds of audio between the localised frame and the end of the audio
    seen when it fired.
    """

    keyword: str
    score: float
    threshold: float
    frame: int
    time_s: float
    span: tuple
    span_s: tuple
    window: tuple
    chunk: int
    latency_ms: float
    delay_s: float

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("score", "threshold", "time_s", "delay_s"):
            d[k] = round(d[k], 4)
        d["latency_ms"] = round(self.latency_ms, 3)
        d["span"], d["span_s"], d["window"] = list(self.span), [round(t, 4) for t in self.span_s], list(self.window)
        return d


def check_chunk(chunk, index: int) -> np.ndarray:
    """A chunk as (n,) float32 at full scale +-1 (n may be 0).

    Accepts integer samples (scaled as :func:`~vpkl.runtime.audio.to_float` does, as ``detect``
    takes them: signed by their full scale, unsigned as offset binary) or float32/float64 ones,
    1-D or (samples, channels) with 1 to 32 channels (averaged to mono: a documented repair;
    :func:`~vpkl.runtime.audio.check_layout`).
    Raises:
        VpklInputError naming the chunk: another dtype, another shape, NaN or inf samples, or
            float64 samples beyond the float32 range.
    """
    x = np.asarray(chunk)
    where = f"chunk {index}"
    if x.dtype not in _DTYPES:
        raise VpklInputError(f"{where}: samples of dtype {x.dtype}, expected int8/16/32, uint8/16/32, float32 "
                             "or float64")
    check_layout(x, where)
    if np.issubdtype(x.dtype, np.integer):
        return to_mono(to_float(x, where), where).astype(np.float32)
    if not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise VpklInputError(f"{where}: holds {bad} NaN or infinite sample(s); the chunk was not used")
    with np.errstate(over="ignore"):
        y = to_mono(x, where).astype(np.float32)
    if not np.all(np.isfinite(y)):
        raise VpklInputError(f"{where}: samples beyond the float32 range (largest {np.abs(x).max():.3g}); "
                             "the chunk was not used")
    return y


class FiringRules:
    """When a scored window makes a keyword fire (module docstring): S >= threshold, lookahead,
    ``confirm`` consecutive windows within 2 frames, refractory distance, all on the peak frame
    of aud_att. State: per query, the pending peak frame and its count, and the peak frame of its
    last detection.

    Kept apart from the scoring so that the same windows can be replayed at many thresholds
    (:func:`replay`: a false-alarm curve from one pass of the model over the audio).
    Lengths are in frames (:meth:`StreamConfig.frames`).
    """

    def __init__(self, lookahead: int, confirm: int, refractory: int):
        self.lookahead, self.confirm, self.refractory = lookahead, confirm, refractory
        self.pending = {}   # query index -> (frame, consecutive windows that put it there)
        self.last = {}      # query index -> frame of its last detection

    def skip(self) -> None:
        """A window that was not scored (silence, no speech): confirmations start again."""
        self.pending.clear()

    def __call__(self, s: np.ndarray, peaks: np.ndarray, end: int, final: bool, thresholds) -> list[int]:
        """The queries that fire on a window ending (exclusive) at frame ``end``: ``s`` (Q,) scores,
        ``peaks`` (Q,) absolute peak frames (argmax of aud_att over the window), ``final``: the
        stream's last window (no lookahead or confirmation needed), ``thresholds`` (Q,)."""
        fired = []
        for q in range(len(s)):
            if s[q] < thresholds[q]:
                self.pending.pop(q, None)
                continue
            frame = int(peaks[q])
            if not final:
                if end - 1 - frame < self.lookahead:
                    self.pending.pop(q, None)
                    continue
                p = self.pending.get(q)
                n = p[1] + 1 if p is not None and abs(frame - p[0]) <= 2 else 1
                self.pending[q] = (frame, n)
                if n < self.confirm:
                    continue
            last = self.last.get(q)
            if last is not None and abs(frame - last) < self.refractory:
                continue
            self.last[q] = frame
            fired.append(q)
        return fired


def replay(log: list, rules: FiringRules, thresholds) -> np.ndarray:
    """(Q,) int64 detections per query that a stream whose ``Spotter.window_log`` is ``log`` makes
    at ``thresholds`` ((Q,) floats), with fresh ``rules``: what a Spotter at those thresholds
    reports on the same audio (the scores do not depend on the thresholds)."""
    counts = None
    for w in log:
        if w is None:
            rules.skip()
            continue
        end, final, s, peaks = w
        counts = np.zeros(len(s), np.int64) if counts is None else counts
        for q in rules(s, peaks, end, final, thresholds):
            counts[q] += 1
    return counts if counts is not None else np.zeros(len(np.atleast_1d(thresholds)), np.int64)


def _speech_gate(vad, sample_rate: int):
    """The Spotter's ``vad`` argument -> a SpeechGate or None (see :class:`Spotter`)."""
    from .vad import SpeechGate
    if isinstance(vad, SpeechGate):
        if vad.sample_rate != sample_rate:
            raise VpklInputError(f"vad: the SpeechGate runs at {vad.sample_rate} Hz, the bundle at {sample_rate} Hz")
        if vad.owner is not None:
            raise VpklInputError("vad: this SpeechGate already serves another Spotter (it holds one stream's "
                                 "decisions); give each Spotter its own")
        return vad
    if isinstance(vad, (bool, np.bool_)):
        return SpeechGate(sample_rate) if vad else None
    if isinstance(vad, (str, os.PathLike)) and str(vad).lower().endswith(".onnx"):
        return SpeechGate(sample_rate, vad)
    got = repr(vad) if isinstance(vad, (str, os.PathLike)) else type(vad).__name__
    raise VpklInputError(f"vad: expected True/False, a path to silero-vad's .onnx file or a SpeechGate, got {got}")


def attention_span(att: np.ndarray, at: int, level: float) -> tuple[int, int]:
    """(first, last) indices of the run of ``att >= level`` that contains ``at`` (the localised frame):
    (at, at) when att[at] itself is below ``level`` (a frame the localisation gate chose over a
    higher peak in a pause)."""
    if att[at] < level:
        return at, at
    low = np.flatnonzero(att < level)
    before, after = low[low < at], low[low > at]
    return (int(before[-1]) + 1 if len(before) else 0, int(after[0]) - 1 if len(after) else len(att) - 1)


class Spotter:
    """Streaming detection and localisation of enrolled keywords (see the module docstring).

    One Spotter is one stream: :meth:`feed` chunks (or :meth:`run` a file or an iterable of
    chunks), :meth:`flush` at the end, :meth:`reset` for another. It refuses concurrent use:
    a call while another thread is inside feed, flush, run's feeding or reset raises
    VpklInputError and leaves the stream as it was (one Spotter per thread, or per stream).

    Args:
        bundle: a loaded :class:`Bundle`; queries: enrolled :class:`QuerySet` (not empty);
        threshold: one float, a {keyword: float} dict (others get the bundle's), or None;
        config: :class:`StreamConfig` (defaults: 3 s window, 0.2 s hop);
        vad: False (default), True (gate scoring on silero-vad's speech decisions, model from the
        installed silero-vad package), a path to its ``.onnx`` file, or a
        :class:`~vpkl.runtime.vad.SpeechGate` (a threshold or pad of your own; one per Spotter).
    Attributes:
        thresholds: (Q,) float64 per query; chunks: chunks fed so far; n_frames: audio
        embeddings encoded so far; audio_s: seconds fed so far; last_window:
        :class:`WindowScores` of the window scored last (None before the first);
        windows_scored: windows scored since the stream began (the compute the stream spent);
        window_log: None, or a list to which each scored window's (end frame, final, (Q,) S,
        (Q,) peak frames of aud_att) is appended, and None for each window skipped (for :func:`replay`).
    Raises:
        VpklInputError: no queries, a threshold that is not a number in [0, 1], impossible config values,
            ``vad`` asked for without silero-vad installed (the message gives the install command).
    """

    def __init__(self, bundle: Bundle, queries: QuerySet, threshold=None, config: StreamConfig | None = None,
                 vad=False):
        if len(queries) == 0:
            raise VpklInputError("queries: no query enrolled")
        self.bundle, self.queries = bundle, queries
        self.config = config or StreamConfig()
        f = self.config.frames(bundle.frame_rate)
        self._window, self._hop, self._min_window = f["window"], f["hop"], f["min_window"]
        self._lookahead, self._refractory = f["lookahead"], f["refractory"]
        self._confirm = self.config.confirm
        self._loc_gate_db = check_loc_gate(self.config.loc_gate_db)   # a float (or None), whatever number was given
        self.thresholds = resolve_thresholds(threshold, queries.keywords, bundle.threshold,
                                             per_keyword=bundle.keyword_thresholds)
        self._enc = CausalEncoder(bundle)
        self._vad = _speech_gate(vad, bundle.front_end.sample_rate)
        if self._vad is not None:
            self._vad.owner = self
        self._busy = threading.Lock()  # held by the one call in progress (see _exclusive)
        self.reset()

    @contextmanager
    def _exclusive(self, call: str):
        """Run ``call`` alone: refuse it (VpklInputError, state untouched) while another thread is inside."""
        if not self._busy.acquire(blocking=False):
            raise VpklInputError(f"stream: {call} called while another thread is using this Spotter; one Spotter "
                                 "is one stream: give each thread its own (Model.stream()), or call it from one "
                                 "thread at a time")
        try:
            yield
        finally:
            self._busy.release()

    def reset(self) -> None:
        """Forget the stream: the next chunk starts a new one at sample 0, frame 0, chunk 0.

        Raises:
            VpklInputError: another thread is using this Spotter.
        """
        with self._exclusive("reset()"):
            self._reset()

    def _reset(self) -> None:
        self._enc.reset()            # front end, the conv's last log-mel frames, the LSTM states
        if self._vad is not None:
            self._vad.reset()
        self._causal = np.zeros((0, self.bundle.causal_dim), np.float32)       # the last <= window causal frames
        self._heard = np.zeros(0, bool)  # per row of _causal: some of its log-mel frames were not silent
        self._energy = np.zeros(0, np.float32)  # per row of _causal: its energy, dBFS (for localisation)
        self._first_heard = None         # the first such frame of the stream
        self._next_score = self._hop  # frame count at which the window is next scored
        self._rules = self.firing_rules()
        self.window_log = None       # a list: every scored window's (end, final, S, frames) is appended, None per skip
        self.last_window = None      # WindowScores of the window scored last (for plots and checks)
        self.windows_scored = 0
        self.chunks = 0
        self._ended = False

    def firing_rules(self) -> "FiringRules":
        """Fresh :class:`FiringRules` with this stream's lookahead, confirmation and refractory
        distance (for :func:`replay` of its ``window_log``)."""
        return FiringRules(self._lookahead, self._confirm, self._refractory)

    @property
    def n_frames(self) -> int:
        """Audio embeddings (frames) of the stream so far, counted on the input (digital silence
        cut out included: :mod:`vpkl.runtime.gaps`)."""
        return self._enc.input_frames(final=self._ended)

    @property
    def audio_s(self) -> float:
        """Seconds of audio fed since the stream began."""
        return self._enc.n_samples / self.bundle.front_end.sample_rate

    def feed(self, chunk) -> list[Detection]:
        """Take the next chunk of the stream; return the detections it completes (often none).

        Detections come in the order they fire (window by window; within a window, by frame).
        One that needed more confirmation can be earlier in the stream than one reported before it.

        Args:
            chunk: (n,) or (n, channels) int16/int32/float32/float64 samples at the bundle's
                rate (16 kHz for the shipped bundles), any n >= 0 (an empty chunk does nothing).
        Raises:
            VpklInputError: a bad chunk (see :func:`check_chunk`; the stream is unchanged and
                may go on), a stream already ended by :meth:`flush`, or another thread inside
                this Spotter (the chunk was not used).
        """
        t0 = time.perf_counter()
        with self._exclusive("feed()"):
            if self._ended:
                raise VpklInputError("stream: already ended by flush(); call reset() to start another")
            x = check_chunk(chunk, self.chunks)
            index = self.chunks
            self.chunks += 1
            if x.size == 0:
                return []
            new, heard, energy = self._enc(x)
            if self._vad is not None:
                self._vad.feed(self._enc.kept)   # what the model hears: digital silence cut out
            return self._advance(new, heard, energy, t0, index, final=False)

    def flush(self) -> list[Detection]:
        """End the stream: encode the last frame (the conv's end padding), score the final window
        with no lookahead or confirmation needed, and return what that completes (a keyword said
        at the very end is often reported only here). Then :meth:`reset` to reuse; a second
        flush() returns []. Raises VpklInputError if another thread is inside this Spotter."""
        t0 = time.perf_counter()
        with self._exclusive("flush()"):
            if self._ended:
                return []
            self._ended = True
            new, heard, energy = self._enc.finish()
            if self._vad is not None:
                self._vad.feed(self._enc.kept)
                self._vad.finish()
            return self._advance(new, heard, energy, t0, self.chunks, final=True)

    def run(self, source, chunk_s: float = 0.1) -> Iterator[Detection]:
        """Feed a whole source, then :meth:`flush`; yield each detection as it fires.

        Args:
            source: an audio file path (str or os.PathLike: any format, rate and channels
                :func:`vpkl.runtime.audio.open_audio` reads, read block by block, resampled to the
                bundle's rate), an array of samples at the bundle's rate ((n,) or (n, channels),
                as for :meth:`feed`), or an iterable of chunks (each as for :meth:`feed`).
            chunk_s: seconds per chunk for a file or an array (default 0.1).
        Returns:
            An iterator of :class:`Detection` in the order they fire, the flush's last (the audio
            is read and fed as it is iterated).
        Raises:
            VpklInputError: at once, a chunk_s that is not 0 < chunk_s <= 60 or a source of another
                kind; while iterating, an unreadable file, a bad chunk (named by its index), and
                as :meth:`feed`.
        """
        if isinstance(chunk_s, (bool, np.bool_)) or not isinstance(chunk_s, numbers.Real) \
                or not 0 < chunk_s <= 60:
            raise VpklInputError(f"chunk_s: expected seconds per chunk, 0 < chunk_s <= 60, got {shown(chunk_s)}")
        sr = self.bundle.front_end.sample_rate
        if isinstance(source, (str, os.PathLike)):
            return self._run(file_chunks(os.fspath(source), sr, float(chunk_s)), own=True)
        if isinstance(source, np.ndarray):
            step = max(1, int(round(chunk_s * sr)))
            return self._run((source[i:i + step] for i in range(0, len(source), step)) if source.ndim
                             else iter([source]), own=True)
        if isinstance(source, Iterable):
            return self._run(source, own=False)
        raise VpklInputError(f"source: got {type(source).__name__}, expected an audio file path, an array of "
                             "samples or an iterable of chunks")

    def _run(self, chunks: Iterable, own: bool) -> Iterator[Detection]:
        """Feed ``chunks``, then flush; ``own``: close them when done or stopped early (a file)."""
        try:
            for x in chunks:
                yield from self.feed(x)
        finally:
            if own:
                chunks.close()  # a file read block by block is closed here, even when the caller stops early
        yield from self.flush()

    def _advance(self, new: np.ndarray, new_heard: np.ndarray, new_energy: np.ndarray, t0: float, chunk: int,
                 final: bool) -> list[Detection]:
        """Take the (k, H) causal frames just encoded, whether each was heard and their energies;
        score the windows they complete."""
        n = self._enc.n_frames                               # on the model's timeline (see _score)
        base = n - len(new) - len(self._causal)  # model frame of frames[0]
        frames = np.concatenate([self._causal, new]) if len(new) else self._causal
        frames_heard = np.concatenate([self._heard, new_heard])
        energy = np.concatenate([self._energy, new_energy])
        if self._first_heard is None and new_heard.any():
            self._first_heard = n - len(new) + int(np.argmax(new_heard))
            # scoring positions count from the stream's first sound, so leading digital silence
            # (a padded file, a device warming up) shifts the windows with the speech
            self._next_score = max(self._next_score, self._first_heard + self._hop)
        out = []
        while self._next_score <= n:
            if self._first_heard is not None and self._next_score - self._first_heard >= self._min_window:
                out += self._score(frames, frames_heard, energy, base, self._next_score, t0, chunk, final=False)
            self._next_score += self._hop
        if final and n > 0:
            out += self._score(frames, frames_heard, energy, base, n, t0, chunk, final=True)
        self._causal = frames[-self._window:].copy()  # a view would keep a long chunk's frames alive
        self._heard = frames_heard[-self._window:].copy()
        self._energy = energy[-self._window:].copy()
        self._enc.frame_map.forget_before(max(n - self._window, 0))
        if self._vad is not None:
            self._vad.forget_before(float(self.bundle.frame_time(max(n - self._window, 0))))
        return out

    def _score(self, frames: np.ndarray, heard: np.ndarray, energy: np.ndarray, base: int, end: int, t0: float,
               chunk: int, final: bool) -> list[Detection]:
        """Score the window of frames ending (exclusive) at model frame ``end``.

        The window starts at its first frame that was not wholly silent (digital silence is
        not scored: a window of it alone scores nothing and resets the confirmations); with a
        speech gate, a window holding no speech is not scored either. Windows, hops and the
        firing rules count the model's frames (the input with digital silence cut out), so
        the zeros change nothing the stream decides; detections and ``last_window`` are given
        in frames and seconds of the input (:class:`~vpkl.runtime.gaps.FrameMap`)."""
        start = max(end - self._window, 0)
        h = heard[start - base:end - base]
        t = self.bundle.frame_time
        if not h.any() or (self._vad is not None and not self._vad.speech_between(
                float(t(start + int(np.argmax(h)))), float(t(end - 1)))):
            self._rules.skip()
            if self.window_log is not None:
                self.window_log.append(None)
            return []
        start += int(np.argmax(h))
        emb = self.bundle.encode_bidirectional(frames[start - base:end - base])
        s, att, _ = self.bundle.score(self.queries, emb)
        # (Q,) model frames: the model's peak, on which the firing rules wait (module docstring), and
        # the localised frame reported (the peak among the speech frames)
        peak = start + np.argmax(att, axis=1)
        placed = start + localise(att, energy[start - base:end - base], self._loc_gate_db)
        fmap = self._enc.frame_map
        first, stop, laid_out = fmap.lay_out(start, att)
        self.last_window = WindowScores(first, stop, s, laid_out, np.atleast_1d(fmap.to_input(placed)))
        self.windows_scored += 1
        if self.window_log is not None:
            self.window_log.append((end, final, s.copy(), peak))
        out = []
        for q in self._rules(s, peak, end, final, self.thresholds):
            a = int(placed[q] - start)
            lo, hi = attention_span(att[q], a, self.config.span_level)
            frame, lo, hi, first, last = (int(v) for v in fmap.to_input(
                np.array([placed[q], start + lo, start + hi, start, end - 1])))
            out.append(Detection(
                keyword=self.queries.keywords[q], score=float(s[q]), threshold=float(self.thresholds[q]),
                frame=frame, time_s=float(t(frame)), span=(lo, hi), span_s=(float(t(lo)), float(t(hi))),
                window=(first, last + 1), chunk=chunk, latency_ms=(time.perf_counter() - t0) * 1000.0,
                delay_s=self.audio_s - float(t(frame))))
        return sorted(out, key=lambda d: d.frame)
