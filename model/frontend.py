"""Torch front end for training: the same maths as :mod:`vpkl.runtime.features`, batched.

Adds the training-only augmentations: a frequency warp of the power spectrum (speaker
variation, VTLP-like) and SpecAugment-style time/frequency masks.
"""
from __future__ import annotations

import numpy as np
import torch

from vpkl.runtime.features import FrontEndConfig, mel_filterbank, mute_onset, silence_bands, silence_power


class FrontEnd(torch.nn.Module):
    """(B, n_samples) float audio -> (B, T, n_mels) normalised log-mel, T per utterance."""

    def __init__(self, cfg: FrontEndConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("fbank", torch.tensor(mel_filterbank(cfg), dtype=torch.float64), persistent=False)
        n = cfg.win_length
        self.register_buffer("window", 0.5 - 0.5 * torch.cos(2 * torch.pi * torch.arange(n, dtype=torch.float64) / n),
                             persistent=False)

    def log_mel(self, audio: torch.Tensor, warp: torch.Tensor | None = None) -> tuple:
        """(B, n_samples) audio -> ((B, T, n_mels) float32 log-mel, (B, T) bool silent frames)."""
        c = self.cfg
        audio = audio.double()  # float64 like the runtime: near-empty bands (8 kHz sources) stay exact
        y = torch.cat([audio[:, :1], audio[:, 1:] - c.preemphasis * audio[:, :-1]], dim=1)
        frames = y.unfold(1, c.win_length, c.hop_length) * self.window
        spec = torch.fft.rfft(frames, n=c.n_fft, dim=-1)
        # float32 from here on: relative precision is what matters, and it is kept
        power = (spec.real ** 2 + spec.imag ** 2).float()
        if warp is not None:
            power = warp_frequency(power, warp.float())
        mel = power @ self.fbank.float()
        silent = mel[..., silence_bands(c)].double().sum(dim=2) < silence_power(c, self.fbank.numpy())
        silent = torch.from_numpy(mute_onset(silent.cpu().numpy())).to(silent.device)
        return torch.log(mel + c.log_floor), silent

    def normalise(self, x: torch.Tensor, silent: torch.Tensor | None = None) -> torch.Tensor:
        """Causal running mean/variance normalisation over time (dim 1).

        The runtime runs the recursion frame by frame; here it is unrolled: m_t =
        sum_{s<=t} W[t, s] x_s with W[t, s] = a_s prod_{r=s+1..t} (1 - a_r), and likewise
        for the variance. Without silent frames a_t depends only on t and one W serves every
        row; a silent frame has a_t = 0 and does not advance the warm-up count, so rows with
        silent frames get their own W (``silent``: (B, T) bool), and those frames the
        constant ``cfg.silence_feature`` (see :mod:`vpkl.runtime.features`).
        """
        c = self.cfg
        if silent is None or not bool(silent.any()):
            w = torch.from_numpy(running_weights(x.shape[1], c.norm_alpha)).to(x.dtype)
        else:
            w = torch.from_numpy(running_weights_gated(silent.cpu().numpy(), c.norm_alpha)).to(x.dtype)
        m = w @ x
        d = x - m
        v = w @ (d * d).mean(dim=2, keepdim=True)
        y = d / torch.sqrt(v + c.var_floor)
        if silent is not None:
            y = torch.where(silent[..., None], torch.full_like(y, c.silence_feature), y)
        return y

    @torch.no_grad()
    def forward(self, audio: torch.Tensor, lengths: torch.Tensor | None = None,
                warp: torch.Tensor | None = None):
        """Returns (features (B, T, n_mels) float32, frame counts (B,) int64).

        ``lengths`` are valid samples per row (zero padding after them); frames beyond a
        row's count are set to 0, the value the audio branch's conv pads with.
        """
        x = self.normalise(*self.log_mel(audio, warp))
        if lengths is None:
            lengths = torch.full((audio.shape[0],), audio.shape[1])
        t = torch.tensor([self.cfg.n_frames(int(n)) for n in lengths])
        mask = torch.arange(x.shape[1])[None, :] < t[:, None]
        return x * mask[..., None], t


def running_weights(t: int, alpha: float) -> np.ndarray:
    """(t, t) lower-triangular float64 W of the causal running mean (see ``FrontEnd.normalise``)."""
    a = np.maximum(1.0 / np.arange(1, t + 1), alpha)
    logp = np.concatenate([[0.0], np.cumsum(np.log1p(-a[1:]))])  # sum_{r=1..t} ln(1 - a_r)
    w = a[None, :] * np.exp(np.minimum(logp[:, None] - logp[None, :], 0.0))
    return np.tril(w)


def running_weights_gated(silent: np.ndarray, alpha: float) -> np.ndarray:
    """(B, T, T) float64 W per row when some frames are silent (``silent``: (B, T) bool).

    A silent frame has a_t = 0 (its factor 1 - a_t is 1) and does not count towards the
    warm-up, so a_t = max(1 / (k + 1), alpha) for the k-th non-silent frame (k from 0).
    The first non-silent frame has a = 1, whose factor 1 - a = 0 only multiplies weights of
    earlier frames, all silent (a_s = 0); it is replaced by 1 so the logs stay finite.
    """
    live = ~silent
    k = np.cumsum(live, axis=1) - 1                              # warm-up count of each live frame
    a = np.where(live, np.maximum(1.0 / (np.maximum(k, 0) + 1.0), alpha), 0.0)
    logp = np.cumsum(np.log1p(-np.where(a >= 1.0, 0.0, a)), axis=1)
    w = a[:, None, :] * np.exp(np.minimum(logp[:, :, None] - logp[:, None, :], 0.0))
    return np.tril(w)


def warp_frequency(power: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Stretch each row's spectrum along frequency: out[f] = in[f / factor] (linear interp).

    power: (B, T, F); factor: (B,) around 1 (e.g. 0.85-1.15).
    """
    f = power.shape[-1]
    src = torch.arange(f, dtype=power.dtype)[None, :] / factor[:, None]
    src = src.clamp(0, f - 1)
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=f - 1)
    w = (src - lo)[:, None, :]
    idx = lambda i: i[:, None, :].expand(-1, power.shape[1], -1)
    return power.gather(2, idx(lo)) * (1 - w) + power.gather(2, idx(hi)) * w


def spec_augment(x: torch.Tensor, t: torch.Tensor, rng: np.random.Generator,
                 n_freq: int = 2, max_freq: int = 6, n_time: int = 2, max_time: int = 12) -> torch.Tensor:
    """SpecAugment-style masks (set to 0) on normalised features (B, T, n_mels), in place."""
    for b in range(x.shape[0]):
        for _ in range(n_freq):
            w = int(rng.integers(0, max_freq + 1))
            f0 = int(rng.integers(0, x.shape[2] - w + 1))
            x[b, :, f0:f0 + w] = 0
        for _ in range(n_time):
            w = int(rng.integers(0, max_time + 1))
            t0 = int(rng.integers(0, max(1, int(t[b]) - w + 1)))
            x[b, t0:t0 + w] = 0
    return x
