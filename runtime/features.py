"""Front end: audio samples -> causally normalised 40-bin log-mel frames (numpy, no torch).

Front end of Nortje & Kamper (SLT 2022, Sec. 4, after DAVEnet): pre-emphasis 0.97,
25 ms Hann windows every 10 ms, 512-point FFT power spectrum, 40 HTK-mel triangles,
natural log. Unlike the paper's per-utterance normalisation (which needs the whole
utterance and so rules out streaming), vpkl normalises causally:

    a_t  = max(1 / (t + 1), alpha)               (cumulative mean while warming up)
    m_t  = m_{t-1} + a_t (x_t - m_{t-1})          (per-bin running mean, m_{-1} = 0)
    v_t  = v_{t-1} + a_t (mean_k (x_t - m_t)^2 - v_{t-1})   (running variance, v_{-1} = 0)
    y_t  = (x_t - m_t) / sqrt(v_t + var_floor)

A gain g on the waveform adds 2 ln g to every log-mel value and so cancels in
``x_t - m_t``: the features do not depend on the absolute level (up to the log floor).

Silent frames. A frame whose mel power above ``silence_fmin`` (190 Hz) is below that of white
noise at ``silence_db`` (dB relative to unit-variance white noise, i.e. full scale) is
*silent*: digital zeros, a padded file, a microphone that is idle or still warming up, or
outputs a constant offset instead of zeros (below 190 Hz lie that offset's leakage through
the window and pure mains hum, which carry no word). A silent frame leaves the statistics
untouched (no update of m, v or the warm-up count t) and is given the constant feature
``silence_feature`` in every bin: a quiet pause, ``-silence_feature`` standard deviations
below the running mean. Without this, the log floor of exact zeros (ln 1e-12) dragged the
running mean down and shrank the features of the speech after it for seconds, and every
keyword of a file with 0.3 s of leading zeros was missed. Why these values:

- ``silence_db = -110``: below the quietest frame of the digits recipe's utterances (-107.6
  over its 400 validation utterances: speech peaks down to -30 dBFS and SNRs up to 35 dB put
  their pauses' noise far below a room's -60 to -80), so the rule never touches audio like
  what the model learnt from; at -85, 7% of those frames were silent and validation
  detection F1 fell from 0.950 to 0.935. Digital zeros and 24-bit audio that toggles by one
  step (about -138) lie below it; 16-bit one-step noise (about -90) is heard.
- ``silence_feature = -3``: about where the low bands of a frame at that level fall after the
  normaliser has seen speech (mean over 200 training-speaker utterances: -2.1 to -4.0); -2,
  -3 and -4 kept the same detections equally often when zeros were put before, inside and
  after validation utterances (the training speakers' held-out recordings).

The stream's first sound. The first frame heard after leading silence, j > 0, straddles the
onset (25 ms windows every 10 ms): frame j + 2 starts within 5 ms of the first sample that is not
silent. Frames j up to the even frame j + 2 - j mod 2 are therefore also treated as silent
(:func:`mute_onset`), so the stream's statistics begin with a frame that starts at the sound,
on the even frame grid of the conv (k4, s2) that follows: speech after a multiple of 20 ms of
zeros gives exactly the features of the same speech without them (shifted), and the audio
branch, which starts afresh at the first heard frame (:class:`~vpkl.runtime.longaudio.CausalEncoder`),
gives the same embeddings. A stream that starts with sound (j = 0) is not touched.

Runs of digital silence (25 ms or more at or below -96 dBFS) never reach the front end in
the runtime: they are cut out before it (:mod:`vpkl.runtime.gaps`). The rules above meet what
is left: shorter runs, near-silence above that level, and the front end used on its own.

Non-silent frames are normalised exactly as before, so models trained before the rule
behave as before on audio without silence.
The same maths is implemented in torch for training (``vpkl.model.frontend``); the tests
hold the two to 1e-4 on real speech.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .errors import VpklInputError


@dataclass(frozen=True)
class FrontEndConfig:
    """Front-end parameters; stored in a bundle's ``config.json`` under ``front_end``.

    Units: ``sample_rate`` in Hz, ``win_length``/``hop_length``/``n_fft`` in samples,
    ``fmin``/``fmax`` in Hz, ``norm_alpha`` per frame (1/alpha frames is the time
    constant of the running normalisation; 0.005 -> 2 s), ``silence_db`` in dB relative to
    unit-variance white noise, ``silence_feature`` in standard deviations (see the module
    docstring: silent frames).
    """

    sample_rate: int = 16000
    n_mels: int = 40
    win_length: int = 400
    hop_length: int = 160
    n_fft: int = 512
    preemphasis: float = 0.97
    fmin: float = 0.0
    fmax: float = 8000.0
    log_floor: float = 1e-12
    norm_alpha: float = 0.005
    var_floor: float = 1.0
    silence_db: float = -110.0
    silence_feature: float = -3.0
    silence_fmin: float = 190.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FrontEndConfig":
        return cls(**d)

    def n_frames(self, n_samples: int) -> int:
        """Number of log-mel frames for ``n_samples`` samples (no padding): 0 if too short."""
        if n_samples < self.win_length:
            return 0
        return 1 + (n_samples - self.win_length) // self.hop_length

    def embedding_centre(self, frame):
        """Centre, in samples, of audio embedding ``frame`` (0-based; int or array).

        Embedding n comes from log-mel frames 2n-1 .. 2n+2 (conv k4, s2, p1); its centre is
        log-mel frame 2n + 0.5, whose window centre is at (2n + 0.5) hop + win / 2 samples.
        """
        return (2 * np.asarray(frame) + 0.5) * self.hop_length + self.win_length / 2

    def nearest_embedding(self, sample: float) -> int:
        """The audio embedding whose centre (see :meth:`embedding_centre`) is nearest ``sample``."""
        return int(round((sample - self.embedding_centre(0)) / (2 * self.hop_length)))


def hz_to_mel(f):
    """HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(cfg: FrontEndConfig) -> np.ndarray:
    """Triangular HTK-mel filterbank, shape (n_fft // 2 + 1, n_mels), float64, peaks of 1.

    Centre frequencies are ``n_mels + 2`` points evenly spaced in mel between ``fmin`` and
    ``fmax``; filter k rises from point k to point k+1 and falls to point k+2.
    """
    edges = mel_to_hz(np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(cfg.fmax), cfg.n_mels + 2))
    freqs = np.arange(cfg.n_fft // 2 + 1) * cfg.sample_rate / cfg.n_fft
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lo) / (mid - lo)
    down = (hi - freqs[None, :]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).T


def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window of ``n`` samples (float64)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def silence_bands(cfg: FrontEndConfig) -> slice:
    """The mel bands that tell silence from sound: those starting at ``cfg.silence_fmin`` Hz or above.

    Below it lie a constant offset (what many idle devices output instead of zeros) and its
    leakage through the window, and pure mains hum: none of them carries a word.
    """
    edges = mel_to_hz(np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(cfg.fmax), cfg.n_mels + 2))
    return slice(int(np.searchsorted(edges[:-2], cfg.silence_fmin)), cfg.n_mels)


def silence_power(cfg: FrontEndConfig, fbank: np.ndarray | None = None) -> float:
    """Mel power, summed over :func:`silence_bands`, below which a frame is silent: that of white
    noise at ``cfg.silence_db``.

    White noise of variance s^2 gives an expected power of s^2 sum(w^2) in every bin of the
    Hann-windowed rfft, so mel band j gets s^2 sum(w^2) sum_f fbank[f, j].
    """
    fbank = mel_filterbank(cfg) if fbank is None else fbank
    return float(10.0 ** (cfg.silence_db / 10.0) * np.sum(hann_window(cfg.win_length) ** 2)
                 * fbank[:, silence_bands(cfg)].sum())


def mel_power(frames: np.ndarray, cfg: FrontEndConfig, fbank: np.ndarray | None = None) -> np.ndarray:
    """Mel-band power of pre-emphasised frames: (T, win_length) float -> (T, n_mels) float64."""
    fbank = mel_filterbank(cfg) if fbank is None else fbank
    spec = np.fft.rfft(frames * hann_window(cfg.win_length), n=cfg.n_fft, axis=-1)
    return (spec.real ** 2 + spec.imag ** 2) @ fbank


def log_mel(frames: np.ndarray, cfg: FrontEndConfig, fbank: np.ndarray | None = None) -> np.ndarray:
    """Log-mel energies of pre-emphasised frames.

    Args:
        frames: (T, win_length) float pre-emphasised samples.
    Returns:
        (T, n_mels) float64 natural-log mel energies, ``ln(mel + log_floor)``.
    """
    return np.log(mel_power(frames, cfg, fbank) + cfg.log_floor)


class CausalNormaliser:
    """Running mean / variance normalisation of log-mel frames (see module docstring).

    Stateful so a stream can be fed in pieces: feeding frames in any split gives exactly
    the frames of one call on the whole.
    """

    def __init__(self, cfg: FrontEndConfig):
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.mean = np.zeros(self.cfg.n_mels)
        self.var = 0.0

    def __call__(self, x: np.ndarray, silent: np.ndarray | None = None) -> np.ndarray:
        """Normalise (T, n_mels) log-mel frames; returns (T, n_mels) float64.

        ``silent``: (T,) bool, frames that leave the statistics alone and get
        ``cfg.silence_feature`` (module docstring); None: no frame is silent.
        """
        out = np.empty_like(x, dtype=np.float64)
        alpha, floor = self.cfg.norm_alpha, self.cfg.var_floor
        m, v, c = self.mean, self.var, self.count
        for t in range(x.shape[0]):
            if silent is not None and silent[t]:
                out[t] = self.cfg.silence_feature
                continue
            a = max(1.0 / (c + 1), alpha)
            m = m + a * (x[t] - m)
            d = x[t] - m
            v = v + a * (float(np.mean(d * d)) - v)
            out[t] = d / np.sqrt(v + floor)
            c += 1
        self.mean, self.var, self.count = m, v, c
        return out


def mute_onset(silent: np.ndarray) -> np.ndarray:
    """(..., T) bool silent frames of whole utterances -> the same with the onset frames after
    leading silence also silent: frames j to j + 2 - j mod 2 (exclusive) for the first heard
    frame j > 0 of each utterance (module docstring, *The stream's first sound*)."""
    silent = np.array(silent, bool, copy=True)
    heard = ~silent
    j = np.argmax(heard, axis=-1)
    some = heard.any(axis=-1) & (j > 0)
    t = np.arange(silent.shape[-1])
    mute = (t >= j[..., None]) & (t < (j + 2 - j % 2)[..., None]) & some[..., None]
    return silent | mute


def silent_frames(feats: np.ndarray, cfg: FrontEndConfig) -> np.ndarray:
    """(T, n_mels) normalised features -> (T,) bool: the frames the front end found silent.

    Those are the frames equal to ``cfg.silence_feature`` in every band; a frame that was heard
    cannot be, as its bands are centred on the running mean (module docstring).
    """
    return np.all(np.asarray(feats) == np.float32(cfg.silence_feature), axis=-1)


def preemphasis(x: np.ndarray, coef: float, prev: float = 0.0) -> np.ndarray:
    """y[n] = x[n] - coef * x[n-1], with x[-1] = ``prev`` (0 at the start of a stream)."""
    y = np.empty(len(x), dtype=np.float64)
    if len(x):
        y[0] = x[0] - coef * prev
        y[1:] = x[1:] - coef * x[:-1]
    return y


class StreamingFrontEnd:
    """The front end, incremental: feed samples in pieces of any size, get the frames as they complete.

    Carries the last sample (pre-emphasis), the samples of the next, incomplete window and the
    normaliser's state, so the frames of a stream are those of :func:`features` on the whole of it,
    however it is split (to float rounding; tested to 1e-5 with pieces of 1 to 16000 samples).
    Memory is constant: at most ``win_length`` samples are held back.
    """

    def __init__(self, cfg: FrontEndConfig):
        self.cfg = cfg
        self.fbank = mel_filterbank(cfg)
        self.silence = silence_power(cfg, self.fbank)
        self.silence_bands = silence_bands(cfg)
        self.normaliser = CausalNormaliser(cfg)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next sample is sample 0."""
        self.normaliser.reset()
        self._last = 0.0
        self._pending = np.zeros(0)
        self.n_samples = 0   # samples fed since the stream began
        self.n_frames = 0    # log-mel frames emitted since the stream began
        self._mute = None    # before the first heard frame: None; then onset frames still to mute

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Feed (n,) float samples (n >= 0, full scale +-1); returns the (t, n_mels) float32 frames they complete."""
        c = self.cfg
        x = np.asarray(x, dtype=np.float64)
        if len(x):
            y = preemphasis(x, c.preemphasis, self._last)
            self._last = float(x[-1])
            self.n_samples += len(x)
            buf = np.concatenate([self._pending, y]) if len(self._pending) else y
        else:
            buf = self._pending
        t = c.n_frames(len(buf))
        if t == 0:
            self._pending = buf
            return np.zeros((0, c.n_mels), np.float32)
        idx = np.arange(c.win_length)[None, :] + c.hop_length * np.arange(t)[:, None]
        power = mel_power(buf[idx], c, self.fbank)
        silent = self._mute_onset(power[:, self.silence_bands].sum(axis=1) < self.silence)
        out = self.normaliser(np.log(power + c.log_floor), silent).astype(np.float32)
        self._pending = buf[t * c.hop_length:].copy()
        self.n_frames += t
        return out


    def _mute_onset(self, silent: np.ndarray) -> np.ndarray:
        """:func:`mute_onset` for the stream's frames arriving in pieces (``silent``: this piece's)."""
        start = 0
        if self._mute is None:
            heard = np.flatnonzero(~silent)
            if not len(heard):
                return silent
            start = int(heard[0])
            j = self.n_frames + start
            self._mute = 2 - j % 2 if j > 0 else 0
        k = min(self._mute, len(silent) - start)
        if k > 0:
            silent = silent.copy()
            silent[start:start + k] = True
            self._mute -= k
        return silent


def features(audio: np.ndarray, cfg: FrontEndConfig, name: str = "audio") -> np.ndarray:
    """Normalised log-mel features of a whole utterance (one piece of a :class:`StreamingFrontEnd`).

    Args:
        audio: (n_samples,) float mono samples at ``cfg.sample_rate`` Hz, full scale +-1.
        name: how to name the input in error messages (a file path, say).
    Returns:
        (T, n_mels) float32, T = 1 + (n_samples - win_length) // hop_length.
    Raises:
        VpklInputError: the audio is not 1-D, or is shorter than one frame.
    """
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise VpklInputError(f"{name}: expected 1-D mono samples, got shape {audio.shape}")
    if cfg.n_frames(len(audio)) == 0:
        raise VpklInputError(
            f"{name}: {len(audio)} samples is shorter than one frame "
            f"({cfg.win_length} samples = {1000 * cfg.win_length / cfg.sample_rate:.0f} ms)")
    return StreamingFrontEnd(cfg)(audio)
