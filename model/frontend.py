"""Torch front end for training: the same maths as :mod:`vpkl.runtime.features`, batched.

Adds the training-only augmentations: a frequency warp of the power spectrum (speaker
variation, VTLP-like) and SpecAugment-style time/frequency masks.
"""
from __future__ import annotations

import numpy as np
import torch

from vpkl.runtime.features import FrontEndConfig, mel_filterbank


class FrontEnd(torch.nn.Module):
    """(B, n_samples) float audio -> (B, T, n_mels) normalised log-mel, T per utterance."""

    def __init__(self, cfg: FrontEndConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("fbank", torch.tensor(mel_filterbank(cfg), dtype=torch.float64), persistent=False)
        n = cfg.win_length
        self.register_buffer("window", 0.5 - 0.5 * torch.cos(2 * torch.pi * torch.arange(n, dtype=torch.float64) / n),
                             persistent=False)

    def log_mel(self, audio: torch.Tensor, warp: torch.Tensor | None = None) -> torch.Tensor:
        c = self.cfg
        audio = audio.double()  # float64 like the runtime: near-empty bands (8 kHz sources) stay exact
        y = torch.cat([audio[:, :1], audio[:, 1:] - c.preemphasis * audio[:, :-1]], dim=1)
        frames = y.unfold(1, c.win_length, c.hop_length) * self.window
        spec = torch.fft.rfft(frames, n=c.n_fft, dim=-1)
        # float32 from here on: relative precision is what matters, and it is kept
        power = (spec.real ** 2 + spec.imag ** 2).float()
        if warp is not None:
            power = warp_frequency(power, warp.float())
        return torch.log(power @ self.fbank.float() + c.log_floor)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Causal running mean/variance normalisation over time (dim 1).

        The runtime runs the recursion frame by frame; here it is unrolled: the weights
        a_t depend only on t, so m_t = sum_{s<=t} W[t, s] x_s with
        W[t, s] = a_s prod_{r=s+1..t} (1 - a_r), and likewise for the variance.
        """
        w = torch.from_numpy(running_weights(x.shape[1], self.cfg.norm_alpha)).to(x.dtype)
        m = w @ x
        d = x - m
        v = w @ (d * d).mean(dim=2, keepdim=True)
        return d / torch.sqrt(v + self.cfg.var_floor)

    @torch.no_grad()
    def forward(self, audio: torch.Tensor, lengths: torch.Tensor | None = None,
                warp: torch.Tensor | None = None):
        """Returns (features (B, T, n_mels) float32, frame counts (B,) int64).

        ``lengths`` are valid samples per row (zero padding after them); frames beyond a
        row's count are set to 0, the value the audio branch's conv pads with.
        """
        x = self.normalise(self.log_mel(audio, warp))
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
