"""Localising attention scoring head (Nortje & Kamper, SLT 2022, Sec. 3.2), batched.

For query pixel embeddings I (M x D) and audio frame embeddings A (N x D, n valid frames):

    matchmap  = I A^T                                  (M x N)
    aud_att_n = max_m matchmap[m, n], min-max normalised over the n valid frames
    aud_ctx   = (1/n) sum_n aud_att_n A_n              (D)
    im_att_m  = max_{n valid} matchmap[m, n], min-max normalised over the M pixels
    im_ctx    = (1/M) sum_m im_att_m I_m               (D)
    S         = (1 + cos(aud_ctx, im_ctx)) / 2         in [0, 1]

The paper's score is the cosine; vpkl reports it mapped to [0, 1] so thresholds read as
probabilities would (training targets +1/-1 on the cosine are 1/0 on S).
Localisation is argmax_n aud_att. Invalid frames get aud_att = 0.

Min = max (silence, one frame, identical frames): the paper's code divides by zero and
gives NaN. vpkl defines the normalised attention as 1 everywhere (every frame/pixel equally
attended), so the context is the plain mean and S stays finite; the localised frame is
then the first valid frame.
"""
from __future__ import annotations

import torch
from torch import nn


def _minmax(x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    if valid is None:
        lo, hi = x.amin(-1, keepdim=True), x.amax(-1, keepdim=True)
    else:
        big = torch.finfo(x.dtype).max
        lo = torch.where(valid, x, big).amin(-1, keepdim=True)
        hi = torch.where(valid, x, -big).amax(-1, keepdim=True)
    rng = hi - lo
    ok = rng > 0
    out = torch.where(ok, (x - lo) / torch.where(ok, rng, torch.ones_like(rng)), torch.ones_like(x))
    return out if valid is None else out * valid


def localising_attention(query: torch.Tensor, audio: torch.Tensor, n_valid: torch.Tensor):
    """Score Q queries against B utterances.

    Args:
        query: (Q, M, D) float pixel embeddings.
        audio: (B, N, D) float frame embeddings.
        n_valid: (B,) int64 valid frames per utterance, 1 <= n_valid <= N.
    Returns:
        S (Q, B) in [0, 1]; aud_att (Q, B, N), 0 on invalid frames; im_att (Q, B, M).
    """
    n = audio.shape[1]
    valid = (torch.arange(n, device=audio.device)[None, :] < n_valid[:, None])  # (B, N)
    mm = torch.einsum("qmd,bnd->qbmn", query, audio)
    aud_att = _minmax(mm.amax(dim=2), valid[None])
    big = torch.finfo(mm.dtype).max
    im_att = _minmax(torch.where(valid[None, :, None, :], mm, -big).amax(dim=3), None)
    aud_ctx = torch.einsum("qbn,bnd->qbd", aud_att, audio) / n_valid[None, :, None].to(audio.dtype)
    im_ctx = torch.einsum("qbm,qmd->qbd", im_att, query) / query.shape[1]
    cos = torch.nn.functional.cosine_similarity(aud_ctx, im_ctx, dim=-1, eps=1e-8)
    return (1 + cos) / 2, aud_att, im_att


class ScoringHead(nn.Module):
    """ONNX-exportable head for one utterance: (Q,M,D), (N,D), n_valid (1,) -> S (Q,), aud_att (Q,N), im_att (Q,M)."""

    def forward(self, query, audio, n_valid):
        s, a, i = localising_attention(query, audio[None], n_valid)
        return s[:, 0], a[:, 0], i[:, 0]
