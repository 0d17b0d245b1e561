"""Localisation: the frame of a scored window at which a keyword is placed.

The paper places a keyword at the argmax over frames of aud_att (Nortje & Kamper, SLT 2022,
Sec. 3.2). On voices the model never trained on, that peak often falls in the pause just after
the word: on the leave-one-speaker-out folds a detected "nine" was placed after its word in
84 of 86 detections for one held-out speaker, typically two word lengths after its start,
while on the training voices' validation utterances 98% fall inside the word (README,
*Accuracy*). A keyword is spoken, so vpkl looks for its peak among the window's speech frames
only: the argmax of aud_att over the frames whose energy is at least ``gate_db`` above the
window's quiet level (its 10th-percentile frame energy). Frames near that level (pauses,
the noise bed) cannot be chosen; the scores S and aud_att are unchanged, so detection is too.
The level is the window's: where a window joins recordings with different noise floors (a
long file of clips), the pauses of the noisier one can lie well above it and pass.

Frame energy: the mean power of the samples within half a frame (one log-mel hop, 10 ms) of
the embedding frame's centre (:meth:`~vpkl.runtime.features.FrontEndConfig.embedding_centre`),
in dB relative to full scale, floored at ``FLOOR_DB``; samples past the end of the audio count
as zeros. It is computed on the samples the model hears (digital silence cut out,
:mod:`vpkl.runtime.gaps`), frame by frame as they arrive, so offline detection and the stream
see the same energies whatever the chunking.

``LOC_GATE_DB`` (3 dB) was chosen on the training voices' validation utterances of two folds
(3, 6 and 10 dB above the quiet level and 20 dB below the loudest frame were tried; 10 dB
placed fewer keywords inside their word than no gate at all); the README gives what it changes
on the held-out speakers.
"""
from __future__ import annotations

import numpy as np

from .features import FrontEndConfig

LOC_GATE_DB = 3.0        # dB above the window's quiet level a frame needs to be localised
QUIET_PERCENTILE = 10.0  # the window's quiet level: this percentile of its frame energies
FLOOR_DB = -100.0        # frame energies below this (digital silence: -96 dBFS and under) count as this


def localise(aud_att: np.ndarray, energy_db: np.ndarray, gate_db: float | None = LOC_GATE_DB) -> np.ndarray:
    """The localised frame of each query in one scored window.

    Args:
        aud_att: (Q, n) float attention over the window's n frames (n >= 1).
        energy_db: (n,) float frame energies in dBFS (:class:`FrameEnergy`).
        gate_db: frames at least this far above the window's quiet level (``QUIET_PERCENTILE``
            of ``energy_db``) may be chosen; None: every frame (the paper's argmax).
    Returns:
        (Q,) int64 indices into the window: the argmax of aud_att over the frames the gate lets
        through, or over every frame when it lets none through (a window of even loudness).
    """
    if gate_db is None:
        return np.argmax(aud_att, axis=-1)
    energy_db = np.asarray(energy_db, np.float64)   # float64: a huge gate must not overflow float32
    speech = energy_db >= np.percentile(energy_db, QUIET_PERCENTILE) + gate_db
    if not speech.any():
        return np.argmax(aud_att, axis=-1)
    return np.argmax(np.where(speech, aud_att, -np.inf), axis=-1)


class FrameEnergy:
    """Frame energies (dBFS, (k,) float32) of a stream of samples fed in pieces, one per audio
    embedding frame, in order (see the module docstring for the definition).

    :meth:`add` the samples, then :meth:`take` the energies of the frames up to a given one;
    only the samples frames not yet taken still need are kept.
    """

    def __init__(self, cfg: FrontEndConfig):
        self.half = cfg.hop_length                 # half a frame: the window is one frame (two hops) long
        self.step = 2 * cfg.hop_length             # samples per embedding frame (conv stride 2)
        self.first = int(np.floor(cfg.embedding_centre(0))) - self.half   # frame 0's first sample
        self.reset()

    def reset(self) -> None:
        self._buf = np.zeros(0, np.float64)  # samples from sample self._at on
        self._at = 0
        self.done = 0                        # frames taken so far

    def add(self, x: np.ndarray) -> None:
        """Append (n,) samples, full scale +-1."""
        self._buf = np.concatenate([self._buf, np.asarray(x, np.float64)])

    def take(self, upto: int, final: bool = False) -> np.ndarray:
        """Energies of frames [done, upto). ``final``: the stream has ended, so samples past its
        end count as zeros; otherwise every sample those frames need must have been added.

        Raises:
            RuntimeError: a frame needs samples not added yet (a caller's error, not the user's).
        """
        k = max(upto - self.done, 0)
        if k == 0:
            return np.zeros(0, np.float32)
        a = self.first + self.done * self.step - self._at          # frame `done`'s first sample in _buf
        need = a + (k - 1) * self.step + 2 * self.half
        buf = self._buf
        if need > len(buf):
            if not final:
                raise RuntimeError(f"FrameEnergy: frame {upto - 1} needs samples not added yet")
            buf = np.concatenate([buf, np.zeros(need - len(buf))])
        lead = max(-a, 0)                                          # frame 0 starts before sample 0: zeros
        buf = np.concatenate([np.zeros(lead), buf]) if lead else buf
        idx = (a + lead) + self.step * np.arange(k)[:, None] + np.arange(2 * self.half)[None, :]
        power = np.mean(np.square(buf[idx]), axis=1)
        self.done = upto
        drop = max(0, min(self.first + upto * self.step - self._at, len(self._buf)))
        self._buf, self._at = self._buf[drop:], self._at + drop
        return np.maximum(10.0 * np.log10(np.maximum(power, 1e-30)), FLOOR_DB).astype(np.float32)
