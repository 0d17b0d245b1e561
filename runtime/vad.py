"""Speech gating for streaming: silero-vad's ONNX model run with onnxruntime (no torch).

A keyword spotter scores every window it is given; on audio with no speech in it (noise, hum,
clicks, a quiet room) each window is a chance of a false alarm and costs a pass of the
BiLSTMs and the head. :class:`SpeechGate` runs silero-vad (Silero Team, MIT licence,
https://github.com/snakers4/silero-vad) over the stream in 32 ms blocks (512 samples at 16 kHz,
256 at 8 kHz) and keeps, per block, whether its speech probability reached a threshold;
:meth:`SpeechGate.speech_between` then says whether a stretch of the stream, widened by a pad
on each side, holds any speech. :class:`vpkl.runtime.stream.Spotter` skips scoring windows
without speech when built with ``vad=True``.

The model file comes from the silero-vad package's data folder, found without importing the
package (its ``__init__`` imports torch): ``pip install --no-deps silero-vad`` provides it,
or give the path of an ``.onnx`` file of the same model.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np

from .checks import finite_real, shown
from .errors import VpklInputError

INSTALL_HINT = "pip install --no-deps silero-vad (its ONNX model; --no-deps keeps torch out)"


def default_model_path() -> str:
    """Path of ``silero_vad/data/silero_vad.onnx`` in the installed silero-vad package.

    Raises:
        VpklInputError: the package (or its model file) is not installed, with the install command.
    """
    spec = importlib.util.find_spec("silero_vad")
    dirs = list(spec.submodule_search_locations or []) if spec else []
    for d in dirs:
        path = os.path.join(d, "data", "silero_vad.onnx")
        if os.path.isfile(path):
            return path
    raise VpklInputError(f"vad: silero-vad's model is not installed; {INSTALL_HINT}")


class SpeechGate:
    """Per-block speech decisions of silero-vad over one stream.

    Args:
        sample_rate: of the samples fed, 16000 or 8000 (the rates the model knows).
        model_path: an ``.onnx`` file of silero-vad (v5 or later: inputs ``input`` (1, context +
            block), ``state`` (2, 1, 128), ``sr``); None: :func:`default_model_path`.
        threshold: speech probability at or above which a block is speech (silero-vad's
            default, 0.5).
        pad_s: seconds of audio on each side of a stretch that also count for it, so that a word's
            quiet onset and coda, which the model scores low, still open the gate.
    Raises:
        VpklInputError: a rate other than 16000 or 8000, a threshold outside [0, 1], a negative
            pad, a model file that is missing or is not that model.
    """

    def __init__(self, sample_rate: int, model_path: str | os.PathLike | None = None,
                 threshold: float = 0.5, pad_s: float = 0.3):
        import onnxruntime as ort
        if isinstance(sample_rate, bool) or sample_rate not in (16000, 8000):
            raise VpklInputError(f"vad sample_rate: silero-vad works at 16000 or 8000 Hz, got {shown(sample_rate)}")
        for name, v, ok in (("threshold", threshold, lambda x: 0.0 <= x <= 1.0),
                            ("pad_s", pad_s, lambda x: 0.0 <= x < 60.0)):
            if finite_real(v) is None or not ok(finite_real(v)):
                want = "a probability in [0, 1]" if name == "threshold" else "seconds, 0 <= pad_s < 60"
                raise VpklInputError(f"vad {name}: expected {want}, got {shown(v)}")
        path = os.fspath(model_path) if model_path is not None else default_model_path()
        if os.path.isdir(path):
            raise VpklInputError(f"vad model {path}: is a folder, expected silero-vad's .onnx file")
        if not os.path.isfile(path):
            raise VpklInputError(f"vad model {path!r}: no such file (expected silero-vad's .onnx file, or vad=True "
                                 "for the installed silero-vad package's)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 (onnxruntime raises several kinds for a bad file)
            raise VpklInputError(f"vad model {path}: not an ONNX model onnxruntime can load "
                                 f"({type(e).__name__})") from None
        names = {i.name for i in self._session.get_inputs()}
        if names != {"input", "state", "sr"}:
            raise VpklInputError(f"vad model {path}: expected silero-vad's inputs input, state, sr; "
                                 f"got {', '.join(sorted(names))}")
        self.sample_rate = sample_rate
        self.block = 512 if sample_rate == 16000 else 256
        self._context_n = 64 if sample_rate == 16000 else 32
        self.threshold, self.pad_s = float(threshold), float(pad_s)
        self.owner = None   # the Spotter this gate serves (one stream's decisions: one gate per Spotter)
        self.reset()

    def reset(self) -> None:
        """Forget the stream (model state, partial block, decisions)."""
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(self._context_n, np.float32)
        self._pending = np.zeros(0, np.float32)
        self._speech = np.zeros(0, bool)   # decisions of blocks _first .. _first + len - 1
        self._first = 0
        self.blocks = 0                   # blocks decided since the stream began

    def _run_block(self, x: np.ndarray) -> float:
        inp = np.concatenate([self._context, x])[None]
        prob, self._state = self._session.run(None, {"input": inp, "state": self._state,
                                                     "sr": np.array(self.sample_rate, np.int64)})
        self._context = inp[0, -self._context_n:]
        return float(prob.reshape(-1)[0])

    def feed(self, x: np.ndarray) -> np.ndarray:
        """Take the next samples ((n,) float32 in [-1, 1], mono, at ``sample_rate``); return the
        speech probabilities (float64) of the blocks they complete (a partial block waits)."""
        buf = np.concatenate([self._pending, np.asarray(x, np.float32)])
        n = len(buf) // self.block
        probs = np.array([self._run_block(buf[i * self.block:(i + 1) * self.block]) for i in range(n)])
        self._pending = buf[n * self.block:]
        self._speech = np.concatenate([self._speech, probs >= self.threshold])
        self.blocks += n
        return probs

    def finish(self) -> np.ndarray:
        """End of stream: decide the partial last block, zero-padded; returns its probability (or none)."""
        if not len(self._pending):
            return np.zeros(0)
        return self.feed(np.zeros(self.block - len(self._pending), np.float32))

    def speech_between(self, t0: float, t1: float) -> bool:
        """Whether any decided block overlapping [t0 - pad_s, t1 + pad_s] (seconds from the stream's
        start) is speech. Blocks not decided yet (beyond the audio fed) do not count."""
        a = max(int(np.floor((t0 - self.pad_s) * self.sample_rate / self.block)), self._first)
        b = min(int(np.floor((t1 + self.pad_s) * self.sample_rate / self.block)), self.blocks - 1)
        return b >= a and bool(self._speech[a - self._first:b - self._first + 1].any())

    def forget_before(self, t: float) -> None:
        """Drop the decisions of blocks wholly before ``t - pad_s`` seconds (bounded memory for long
        streams: call with the start of the earliest window that can still be scored)."""
        k = int(np.floor((t - self.pad_s) * self.sample_rate / self.block)) - 1
        if k > self._first:
            drop = min(k - self._first, len(self._speech))
            self._speech = self._speech[drop:]
            self._first += drop
