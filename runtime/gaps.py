"""Digital silence cut out of a stream before the model hears it, and frames mapped back to the input.

Why: a run of exact zeros (a padded file, a dropout, an idle or still-starting input device)
carries no sound, yet fed to the model it changed what it heard around it: zeros after an
utterance or inside one of its pauses moved detections the model places on the utterance's
last frames, or tipped a word near the threshold, and a run that was not a whole number of
20 ms steps moved the speech after it against the conv's grid (tests/test_silence.py). So
every run of exact zeros at least ``MIN_GAP_S`` long is cut out of the samples, whole, before
the front end: the model hears exactly the audio without it. Shorter runs stay (real audio can
hold a few zeros; the front end's rule for silent frames meets them).

Frames are counted on two timelines: the model's (the kept samples) and the input's. A model
frame whose centre lies after a cut is moved on by the samples cut before it, rounded to whole
frames (so a reported time is within half a frame, 10 ms, of the audio's place in the input;
exact when the runs are whole multiples of 20 ms). :class:`FrameMap` turns model frames into
input frames and lays a window's aud_att out on the input's frames, with 0 on the frames of cut
silence (nothing was heard there, as for leading digital silence).
"""
from __future__ import annotations

import numpy as np

MIN_GAP_S = 0.1   # shorter runs of zeros stay: too short to matter, and real audio can hold a few zeros


class SilenceCutter:
    """Removes every run of at least ``min_run`` exact zeros, whole, from a stream fed in pieces.

    Zeros at the end of a piece are held back (as a count, no memory) until the next sample
    that is not zero, or :meth:`finish`, tells how long their run is. Attributes: ``n_in``
    samples fed; ``n_kept`` samples passed on.
    """

    def __init__(self, min_run: int):
        if min_run < 1:
            raise ValueError(f"min_run must be >= 1, got {min_run}")
        self.min_run = min_run
        self.reset()

    def reset(self) -> None:
        self.n_in = 0
        self.n_kept = 0
        self._held = 0    # zeros at the end of what was fed, not yet passed on

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, list]:
        """Feed (n,) samples; returns (the samples passed on, [(kept sample position, samples cut), ...])."""
        x = np.asarray(x)
        self.n_in += len(x)
        nz = np.flatnonzero(x != 0)
        if len(nz) == 0:
            self._held += len(x)
            return x[:0], []
        parts, cuts = [], []
        # the run before the first sound: held zeros and this piece's leading zeros
        self._run(self._held + int(nz[0]), parts, cuts, x.dtype)
        self._held = len(x) - 1 - int(nz[-1])
        gaps = np.flatnonzero(np.diff(nz) > self.min_run)       # zero runs of more than min_run inside
        at = int(nz[0])
        for g in gaps:
            end = int(nz[g]) + 1                                # sound up to here, then zeros
            parts.append(x[at:end])
            self.n_kept += end - at
            at = int(nz[g + 1])
            self._run(at - end, parts, cuts, x.dtype)
        parts.append(x[at:int(nz[-1]) + 1])
        self.n_kept += int(nz[-1]) + 1 - at
        return np.concatenate(parts), cuts

    def finish(self) -> tuple[np.ndarray, list]:
        """End of the stream: the held zeros' run is complete; returns what ``__call__`` does."""
        parts, cuts = [], []
        self._run(self._held, parts, cuts, np.float32)
        self._held = 0
        return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), cuts

    def _run(self, n: int, parts: list, cuts: list, dtype) -> None:
        """A complete run of ``n`` zeros: cut if long enough, else passed on."""
        if n >= self.min_run:
            cuts.append((self.n_kept, n))
        elif n:
            parts.append(np.zeros(n, dtype))
            self.n_kept += n


class FrameMap:
    """Model frames (of the kept samples) -> input frames, for the cuts of a :class:`SilenceCutter`.

    ``centre0`` and ``step``: the centre, in samples, of embedding frame 0 and the samples per
    frame. A frame whose centre is at or after a cut's kept sample is moved on by that cut's
    samples; the samples moved are rounded to whole frames (half up). Cuts older than a given
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
        out[..., pos - a] = att
        return a, b, out

    def forget_before(self, frame: int) -> None:
        """Fold the cuts that move every frame >= ``frame`` alike into a constant."""
        while self._gaps and self._gaps[0][0] <= frame:
            self._before += self._gaps.pop(0)[1]
