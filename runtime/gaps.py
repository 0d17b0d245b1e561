"""Digital silence cut out of a stream before the model hears it, and frames mapped back to the input.

Why: a run of digital silence (a padded file, a dropout, an idle or still-starting input device)
carries no sound, yet fed to the model it changed what it heard around it: zeros after an
utterance or inside one of its pauses moved detections the model places on the utterance's
last frames, or tipped a word near the threshold, and a run that was not a whole number of
20 ms steps moved the speech after it against the conv's grid (tests/test_silence.py). So
every run of digital silence at least ``MIN_GAP_S`` long is cut out of the samples, whole,
before the front end: the model hears exactly the audio without it.

Digital silence is a sample of magnitude at most ``SILENCE_LEVEL`` (2^-16, half a 16-bit step,
-96 dBFS): a 16-bit recording's zeros, and what a resampler leaves of them (soxr turns a run of
zeros at 8 or 44.1 kHz into values around 1e-8 at 16 kHz, with a tail of ringing from the sound
beside it that this level cuts but for its loudest few ms). Recorded sound is not that quiet
for 25 ms on end: in white noise at -100 dBFS RMS, far below a microphone's own noise, a
given 25 ms holds no sample above the level with odds of about e^-54.
``MIN_GAP_S`` is the front end's analysis window (25 ms): a shorter run never fills a log-mel
frame, so it reaches the model as a quiet moment inside a frame, not as a silent frame, and is
passed on untouched; it can still tip a word near the threshold as any small change of the
audio can. Recordings and speech synthesisers hold such runs too (up to 46 ms of zeros in a
Speech Commands clip, 26 ms in espeak-ng's output); those of 25 ms or more are cut as well.

Frames are counted on two timelines: the model's (the kept samples) and the input's. A model
frame whose centre lies after a cut is moved on by the samples cut before it, rounded to whole
frames (so a reported time is within half a frame, 10 ms, of the audio's place in the input;
exact when the runs are whole multiples of 20 ms). :class:`FrameMap` turns model frames into
input frames and lays a window's aud_att out on the input's frames, with 0 on the frames of cut
silence (nothing was heard there, as for leading digital silence).
"""
from __future__ import annotations

import numpy as np

MIN_GAP_S = 0.025        # the analysis window: shorter runs never make a log-mel frame silent
SILENCE_LEVEL = 2.0 ** -16  # |sample| at or below this is digital silence: half a 16-bit step (-96 dBFS)


class SilenceCutter:
    """Removes every run of at least ``min_run`` samples of digital silence (|x| <= ``level``),
    whole, from a stream fed in pieces.

    Silence at the end of a piece is held back until the next sound, or :meth:`finish`, tells how
    long its run is; at most ``min_run`` of its samples are kept (a run that long is cut anyway),
    so shorter runs are passed on exactly as they came. Attributes: ``n_in`` samples fed;
    ``n_kept`` samples passed on; ``held`` samples held back.
    """

    def __init__(self, min_run: int, level: float = SILENCE_LEVEL):
        if min_run < 1:
            raise ValueError(f"min_run must be >= 1, got {min_run}")
        self.min_run, self.level = min_run, level
        self.reset()

    def reset(self) -> None:
        self.n_in = 0
        self.n_kept = 0
        self.held = 0                                # silent samples at the end of what was fed
        self._held = np.zeros(0, np.float32)         # their first min_run samples

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, list]:
        """Feed (n,) samples; returns (the samples passed on, [(kept sample position, samples cut), ...])."""
        x = np.asarray(x)
        self.n_in += len(x)
        loud = np.flatnonzero(np.abs(x) > self.level)
        if len(loud) == 0:
            self._hold(x)
            return x[:0], []
        parts, cuts = [], []
        # the run before the first sound: held samples and this piece's leading silence
        self._hold(x[:loud[0]])
        self._run(parts, cuts)
        gaps = np.flatnonzero(np.diff(loud) > self.min_run)     # silent runs of min_run or more inside
        at = int(loud[0])
        for g in gaps:
            end = int(loud[g]) + 1                              # sound up to here, then silence
            parts.append(x[at:end])
            self.n_kept += end - at
            at = int(loud[g + 1])
            cuts.append((self.n_kept, at - end))
        parts.append(x[at:int(loud[-1]) + 1])
        self.n_kept += int(loud[-1]) + 1 - at
        self._hold(x[int(loud[-1]) + 1:])
        return np.concatenate(parts), cuts

    def finish(self) -> tuple[np.ndarray, list]:
        """End of the stream: the held run is complete; returns what ``__call__`` does."""
        parts, cuts = [], []
        self._run(parts, cuts)
        return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), cuts

    def _hold(self, x: np.ndarray) -> None:
        if len(self._held) < self.min_run:
            self._held = np.concatenate([self._held, x[:self.min_run - len(self._held)]]).astype(x.dtype)
        self.held += len(x)

    def _run(self, parts: list, cuts: list) -> None:
        """The held run is complete: cut if long enough, else passed on."""
        if self.held >= self.min_run:
            cuts.append((self.n_kept, self.held))
        elif self.held:
            parts.append(self._held)
            self.n_kept += self.held
        self.held = 0
        self._held = self._held[:0]


class FrameMap:
    """Model frames (of the kept samples) -> input frames, for the cuts of a :class:`SilenceCutter`.

    ``centre0`` and ``step``: the centre, in samples, of embedding frame 0 and the samples per
    frame. A frame whose centre is at or after a cut's kept sample is moved on by that cut's
    samples; the samples moved are rounded to whole frames (half up), and at the end of the
    stream no frame is moved past the input's last (``last``, set by the caller: rounding up
    could otherwise move the final frame one past it). Cuts older than a given
    frame can be folded into a constant (:meth:`forget_before`), so a stream's memory does not
    grow with its idle stretches.
    """

    def __init__(self, centre0: float, step: int):
        self.centre0, self.step = centre0, step
        self.reset()

    def reset(self) -> None:
        self._gaps = []        # [(first model frame after the cut, samples cut)], in order
        self._before = 0       # samples cut before the first remembered gap
        self.samples_cut = 0   # all samples cut so far
        self.last = None       # the input's last frame, once the stream has ended

    @property
    def frames_cut(self) -> int:
        """All the samples cut so far, in whole frames (rounded half up)."""
        return (self.samples_cut + self.step // 2) // self.step

    def add(self, kept_sample: int, samples: int) -> None:
        """Record a cut of ``samples`` at kept sample position ``kept_sample``."""
        p = max(0, int(np.ceil((kept_sample - self.centre0) / self.step)))
        self._gaps.append((p, samples))
        self.samples_cut += samples

    def to_input(self, frame):
        """Model frame(s) (int or int array) -> input frame(s)."""
        f = np.asarray(frame, np.int64)
        moved = np.full(f.shape, self._before, np.int64)
        for p, n in self._gaps:
            moved = moved + np.where(f >= p, n, 0)
        out = f + (moved + self.step // 2) // self.step
        if self.last is not None:
            out = np.minimum(out, self.last)
        return int(out) if out.ndim == 0 else out

    def lay_out(self, start: int, att: np.ndarray) -> tuple[int, int, np.ndarray]:
        """A window's (Q, n) aud_att over model frames [start, start + n) -> (input start, input
        end, (Q, input end - input start) float32 aud_att) with 0 on the frames of cut silence inside."""
        n = att.shape[-1]
        if n == 0:
            s = self.to_input(start)
            return s, s, att
        pos = self.to_input(np.arange(start, start + n))
        a, b = int(pos[0]), int(pos[-1]) + 1
        if b - a == n:
            return a, b, att
        out = np.zeros(att.shape[:-1] + (b - a,), np.float32)
        out[..., pos - a] = att          # frames clamped onto the last one: the later wins
        return a, b, out

    def forget_before(self, frame: int) -> None:
        """Fold the cuts that move every frame >= ``frame`` alike into a constant."""
        while self._gaps and self._gaps[0][0] <= frame:
            self._before += self._gaps.pop(0)[1]
