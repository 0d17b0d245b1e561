"""The scoring head against the number of queries Q: every way vpkl can score, in one run.

Ways: the PyTorch reference done the paper's way (one query at a time, the frames repeated
for it), PyTorch batched, numpy (batched matmul), the bundle's ONNX head in onnxruntime, and
the native fused kernel (vpkl._native) in fp32, bf16 and int8 with the queries enrolled
beforehand (as the runtime does: :class:`vpkl.runtime.scorer.NativeScorer`). Rates are
2 Q M N D / time (the matchmap's multiply-adds, which dominate), against this CPU's fp32 GEMM
peak measured in the same run with PyTorch. The head's equations: Nortje & Kamper (SLT 2022,
Sec. 3.2), :mod:`vpkl.model.head`.
"""
from __future__ import annotations

import time

import numpy as np

from .timing import median_time

SETTLE_S = 0.3  # before each way: other libraries' worker threads stop spinning and free the cores

N_FRAMES = 500  # 10 s at 50 frames per second


def paper_style_head(query, audio):
    """The reference head as the paper's code scores queries: one query at a time, the frame
    embeddings repeated for it. query (Q, M, D), audio (N, D) torch tensors -> S (Q,)."""
    import torch
    from vpkl.model.head import localising_attention
    n = torch.tensor([audio.shape[0]])
    return torch.stack([localising_attention(q[None], audio[None].clone(), n)[0][0, 0] for q in query])


def numpy_head(query: np.ndarray, audio: np.ndarray):
    """The head in numpy, all queries in one matmul (the Q x M x N matchmap is materialised).
    query (Q, M, D), audio (N, D) float32 -> S (Q,), aud_att (Q, N); all N frames valid."""
    mm = query @ audio.T                                       # (Q, M, N)

    def minmax(x):
        lo, hi = x.min(-1, keepdims=True), x.max(-1, keepdims=True)
        rng = hi - lo
        return np.where(rng > 0, (x - lo) / np.where(rng > 0, rng, 1), 1).astype(np.float32)

    aud = minmax(mm.max(1))
    im = minmax(mm.max(2))
    actx = aud @ audio / audio.shape[0]
    ictx = np.einsum("qm,qmd->qd", im, query) / query.shape[1]
    cos = (actx * ictx).sum(1) / (np.maximum(np.linalg.norm(actx, axis=1), 1e-8)
                                  * np.maximum(np.linalg.norm(ictx, axis=1), 1e-8))
    return (1 + cos) / 2, aud


def gemm_peak(threads: int, repeats: int) -> dict:
    """fp32 GEMM rate of this CPU with PyTorch, GFLOP/s: the best of a square 2048^3 product
    and of the head's own product at Q = 340 (16660 x 2048 by 2048 x 500)."""
    import torch
    torch.set_num_threads(threads)
    out = {}
    for name, (m, k, n) in {"square 2048": (2048, 2048, 2048), "head, Q = 340": (340 * 49, 2048, N_FRAMES)}.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        out[name] = 2 * m * k * n / median_time(lambda: a @ b, repeats) / 1e9
    out["peak"] = max(out.values())
    return out


def sweep(m: int, d: int, queries: list, onnx, threads: int, repeats: int) -> dict:
    """Time every way at Q in ``queries`` (M = m pixels, D = d, N = 500 frames); ``onnx`` is
    an :class:`vpkl.runtime.scorer.OnnxScorer` of a bundle's head.onnx.

    Returns {"shape": {"M", "D", "N"}, "ms": {Q: {way: ms}}, "enrol_ms": {precision: ms to enrol
    max(Q) queries}, "kernels": {precision: CPU kernel name}}.
    """
    import torch
    from vpkl.model.head import localising_attention
    from vpkl.runtime.scorer import NativeScorer, native_module
    native, _ = native_module()
    rng = np.random.default_rng(1)
    audio = rng.standard_normal((N_FRAMES, d)).astype(np.float32)
    res = {"shape": {"M": m, "D": d, "N": N_FRAMES}, "ms": {}, "enrol_ms": {}, "kernels": {}}
    for q in queries:
        query = rng.standard_normal((q, m, d)).astype(np.float32)
        query.flags.writeable = False  # enrolled: laid out once by the native scorer
        qt, at, n = torch.from_numpy(np.array(query)), torch.from_numpy(audio), torch.tensor([N_FRAMES])
        ways = {"torch (paper-style)": lambda: paper_style_head(qt, at),
                "torch (batched)": lambda: localising_attention(qt, at[None], n),
                "numpy": lambda: numpy_head(query, audio),
                "onnxruntime": lambda: onnx.score(query, audio)}
        if native is not None:
            for p in ("fp32", "bf16", "int8"):
                s = NativeScorer(native, p, threads)
                if q == max(queries):
                    res["enrol_ms"][p] = 1000 * median_time(lambda: native.Queries(query, p, threads), 1)
                res["kernels"][p] = s.kernel
                ways[f"native {p}"] = lambda s=s: s.score(query, audio)
        row = {}
        for name, fn in ways.items():
            time.sleep(SETTLE_S)
            row[name] = 1000 * median_time(fn, repeats)
        res["ms"][q] = row
    return res


def gflops(q: int, m: int, d: int, ms: float) -> float:
    """2 Q M N D multiply-adds' worth of GFLOP/s at N = 500 frames in ``ms`` milliseconds."""
    return 2 * q * m * N_FRAMES * d / (ms / 1000) / 1e9
