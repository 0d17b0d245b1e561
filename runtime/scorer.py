"""Which scoring head runs: the fused native kernel (vpkl._native) or the bundle's ONNX head.

Both compute the localising attention head of Nortje & Kamper (SLT 2022, Sec. 3.2) for Q
queries against one utterance; the equations are in :mod:`vpkl.model.head` and
``native/include/vpkl/head.h``. The native kernel never materialises the Q x M x N
matchmap and is the default when it was built (``pip install .`` builds it where a C++
compiler is found); otherwise, or when asked, the ONNX head runs.

Choice: ``scorer`` = "auto" (native if importable, else ONNX), "native" or "onnx"; the
environment variable ``VPKL_SCORER`` sets the default. ``precision`` of the native kernel:
"fp32" (default; equal to the ONNX head within 1e-5), "bf16" or "int8" (faster matchmap;
|delta S| <= 0.01 and the same localised frame for >= 99% of queries on real embeddings, see
the README's benchmark section). ``vpkl info`` prints what was chosen and why.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from .errors import VpklInputError

SCORERS = ("auto", "native", "onnx")
PRECISIONS = ("fp32", "bf16", "int8")
log = logging.getLogger("vpkl")


def native_module():
    """(module, None) if the native head is importable, else (None, why not)."""
    try:
        from vpkl import _native
    except ImportError as e:
        return None, f"vpkl._native not importable ({e}); reinstall with a C++ compiler: pip install ."
    return _native, None


def _check(query: np.ndarray, audio: np.ndarray, n_valid) -> tuple[np.ndarray, np.ndarray, int]:
    if not isinstance(query, np.ndarray) or query.ndim != 3:
        raise VpklInputError(f"query: expected a (Q, M, D) float32 array, got {getattr(query, 'shape', type(query))}")
    if not isinstance(audio, np.ndarray) or audio.ndim != 2:
        raise VpklInputError(f"audio: expected an (N, D) float32 array, got {getattr(audio, 'shape', type(audio))}")
    for name, x in (("query", query), ("audio", audio)):
        if x.dtype.kind != "f":
            raise VpklInputError(f"{name}: expected float32 values, got {x.dtype}")
        if 0 in x.shape:
            raise VpklInputError(f"{name}: empty array of shape {x.shape}")
    if query.shape[2] != audio.shape[1]:
        raise VpklInputError(f"audio: {audio.shape[1]} values per frame, the queries have D = {query.shape[2]}")
    n = audio.shape[0] if n_valid is None else int(n_valid)
    if not 1 <= n <= audio.shape[0]:
        raise VpklInputError(f"n_valid: {n}, expected 1 to N = {audio.shape[0]} frames")
    return query.astype(np.float32, copy=False), audio.astype(np.float32, copy=False), n


class OnnxScorer:
    """The bundle's ``head.onnx`` (fp32) in onnxruntime."""

    def __init__(self, session):
        self._session = session
        self.name = "onnx"

    def score(self, query: np.ndarray, audio: np.ndarray, n_valid: int | None = None):
        """See :meth:`NativeScorer.score`."""
        query, audio, n = _check(query, audio, n_valid)
        m, d = self._session.get_inputs()[0].shape[1:]  # fixed by the bundle's model
        if isinstance(m, int) and isinstance(d, int) and query.shape[1:] != (m, d):
            raise VpklInputError(f"query: {query.shape[1]} pixels of {query.shape[2]} values, this bundle's head "
                                 f"expects M = {m}, D = {d}")
        return tuple(self._session.run(None, {"query": np.ascontiguousarray(query),
                                              "audio": np.ascontiguousarray(audio),
                                              "n_valid": np.array([n], np.int64)}))


class NativeScorer:
    """The fused CPU kernel. Queries in a read-only array (as :func:`vpkl.runtime.queries.enrol`
    makes them) are converted and laid out once and reused while the same array comes back;
    a writeable array is converted on every call (it could change between calls)."""

    def __init__(self, module, precision: str = "fp32", threads: int = 0):
        if precision not in PRECISIONS:
            raise VpklInputError(f"precision: {precision!r}, expected one of {', '.join(PRECISIONS)}")
        self._m, self.precision, self.threads = module, precision, int(threads)
        self.kernel = module.cpu_kernel(precision)
        self.name = f"native {precision} ({self.kernel})"
        self._enrolled = None  # (query array, vpkl._native.Queries)

    def _queries(self, query: np.ndarray):
        if self._enrolled is not None and self._enrolled[0] is query:
            return self._enrolled[1]
        try:
            handle = self._m.Queries(query, self.precision, self.threads)
        except ValueError as e:
            raise VpklInputError(str(e)) from None
        if not query.flags.writeable:
            self._enrolled = (query, handle)
        return handle

    def score(self, query: np.ndarray, audio: np.ndarray, n_valid: int | None = None):
        """Localising attention for Q queries against one utterance.

        Args:
            query: (Q, M, D) float32 pixel embeddings (any strides).
            audio: (N, D) float32 frame embeddings (any strides).
            n_valid: valid frames, 1 <= n_valid <= N (default N).
        Returns:
            S (Q,) in [0, 1]; aud_att (Q, N), 0 past n_valid; im_att (Q, M). All float32.
        Raises:
            VpklInputError: wrong rank, dtype or size, NaN or Inf in either input.
        """
        query, audio, n = _check(query, audio, n_valid)
        try:
            return self._queries(query).score(audio, n, self.threads)
        except ValueError as e:  # the kernel's argument errors (NaN or Inf) name the input
            raise VpklInputError(str(e)) from None


def make_scorer(session, scorer: str | None = None, precision: str = "fp32", threads: int = 0):
    """The scoring head to use.

    Args:
        session: the bundle's onnxruntime session of ``head.onnx`` (the fallback).
        scorer: "auto", "native" or "onnx"; None reads ``VPKL_SCORER`` (default "auto").
        precision: native kernel precision, "fp32", "bf16" or "int8" (the ONNX head is fp32).
        threads: native kernel threads (0: all cores).
    Raises:
        VpklInputError: an unknown scorer or precision; "native" when it is not importable;
            a reduced precision with the ONNX head.
    """
    choice = scorer if scorer is not None else os.environ.get("VPKL_SCORER", "auto") or "auto"
    if choice not in SCORERS:
        source = "scorer" if scorer is not None else "VPKL_SCORER (environment)"
        raise VpklInputError(f"{source}: {choice!r}, expected one of {', '.join(SCORERS)}")
    if precision not in PRECISIONS:
        raise VpklInputError(f"precision: {precision!r}, expected one of {', '.join(PRECISIONS)}")
    module, why = native_module() if choice != "onnx" else (None, "scorer 'onnx' was asked for")
    if module is None and choice == "native":
        raise VpklInputError(f"scorer 'native': {why}")
    if module is None:
        if precision != "fp32":
            raise VpklInputError(f"head precision {precision}: only the native scorer has it ({why})")
        log.info("vpkl scorer: onnx (%s)", why)
        return OnnxScorer(session)
    s = NativeScorer(module, precision, threads)
    log.info("vpkl scorer: %s", s.name)
    return s
