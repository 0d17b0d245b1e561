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
        return None, (f"vpkl._native not importable ({e}): vpkl was installed without it (no C++ compiler, or "
                      "-Ccmake.define.VPKL_NATIVE=OFF); pip install . with a C++ compiler builds it")
    return _native, None


CPU_ISAS = ("", "avx512", "avx2", "portable")  # values of VPKL_CPU_ISA ("": the best this CPU has)


def _check(query: np.ndarray, audio: np.ndarray, n_valid, expect=None) -> tuple[np.ndarray, np.ndarray, int]:
    """Validated float32 (query, audio, n_valid); ``expect``: the (M, D) a bundle's model gives."""
    if not isinstance(query, np.ndarray) or query.ndim != 3:
        raise VpklInputError(f"query: expected a (Q, M, D) float32 array, got {getattr(query, 'shape', type(query))}")
    if not isinstance(audio, np.ndarray) or audio.ndim != 2:
        raise VpklInputError(f"audio: expected an (N, D) float32 array, got {getattr(audio, 'shape', type(audio))}")
    for name, x in (("query", query), ("audio", audio)):
        if x.dtype.kind != "f":
            raise VpklInputError(f"{name}: expected float32 values, got {x.dtype}")
        if 0 in x.shape:
            raise VpklInputError(f"{name}: empty array of shape {x.shape}")
    if expect is not None and query.shape[1:] != tuple(expect):
        raise VpklInputError(f"query: {query.shape[1]} pixels of {query.shape[2]} values, this bundle's model gives "
                             f"M = {expect[0]}, D = {expect[1]}")
    if query.shape[2] != audio.shape[1]:
        raise VpklInputError(f"audio: {audio.shape[1]} values per frame, the queries have D = {query.shape[2]}")
    if n_valid is not None and (isinstance(n_valid, bool) or not isinstance(n_valid, (int, np.integer))):
        raise VpklInputError(f"n_valid: {n_valid!r}, expected a whole number of frames")
    n = audio.shape[0] if n_valid is None else int(n_valid)
    if not 1 <= n <= audio.shape[0]:
        raise VpklInputError(f"n_valid: {n}, expected 1 to N = {audio.shape[0]} frames")
    return query.astype(np.float32, copy=False), audio.astype(np.float32, copy=False), n


def _expected_dims(session):
    """(M, D) fixed by a head.onnx session, or None when the graph leaves them open."""
    dims = tuple(session.get_inputs()[0].shape[1:]) if session is not None else ()
    return dims if len(dims) == 2 and all(isinstance(x, int) for x in dims) else None


class OnnxScorer:
    """The bundle's ``head.onnx`` (fp32) in onnxruntime."""

    def __init__(self, session):
        self._session = session
        self._expect = _expected_dims(session)
        self.name = "onnx"

    def score(self, query: np.ndarray, audio: np.ndarray, n_valid: int | None = None):
        """See :meth:`NativeScorer.score`."""
        query, audio, n = _check(query, audio, n_valid, self._expect)
        return tuple(self._session.run(None, {"query": np.ascontiguousarray(query),
                                              "audio": np.ascontiguousarray(audio),
                                              "n_valid": np.array([n], np.int64)}))


class NativeScorer:
    """The fused CPU kernel.

    Queries in a read-only array that owns its memory (as a :class:`vpkl.runtime.queries.QuerySet`
    holds them) are converted and laid out once and reused while the same array comes back;
    any other array (writeable, or a read-only view of memory that may be written) is converted
    on every call, since it could change between calls.
    """

    def __init__(self, module, precision: str = "fp32", threads: int = 0, expect=None):
        """Args: module: ``vpkl._native``; precision: "fp32", "bf16" or "int8"; threads: 0 (all
        cores) or how many; expect: the (M, D) queries must have, or None.
        Raises: VpklInputError: an unknown precision, a bad thread count, or VPKL_CPU_ISA set to
        something other than avx512, avx2 or portable."""
        if precision not in PRECISIONS:
            raise VpklInputError(f"precision: {precision!r}, expected one of {', '.join(PRECISIONS)}")
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 0 <= threads <= 4096:
            raise VpklInputError(f"threads: {threads!r}, expected 0 (every core) to 4096")
        isa = os.environ.get("VPKL_CPU_ISA", "")
        if isa not in CPU_ISAS:
            raise VpklInputError(f"VPKL_CPU_ISA (environment): {isa!r}, expected avx512, avx2, portable or unset")
        self._m, self.precision, self.threads, self._expect = module, precision, int(threads), expect
        self.kernel = module.cpu_kernel(precision)
        self.name = f"native {precision} ({self.kernel})"
        self._enrolled = None  # (query array, vpkl._native.Queries)

    def _queries(self, query: np.ndarray):
        if self._enrolled is not None and self._enrolled[0] is query and not query.flags.writeable:
            return self._enrolled[1]
        handle = self._m.Queries(query, self.precision, self.threads)
        if not query.flags.writeable and query.base is None:
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
            VpklInputError: wrong rank, dtype or size, n_valid out of range, NaN or Inf in either
                input, int8 with D > 65536, or too large to fit in memory.
        """
        query, audio, n = _check(query, audio, n_valid, self._expect)
        try:
            return self._queries(query).score(audio, n, self.threads)
        except ValueError as e:  # the kernel's argument errors (NaN or Inf) name the input
            raise VpklInputError(str(e)) from None
        except (RuntimeError, MemoryError) as e:  # out of memory, an unsupported size
            raise VpklInputError(f"native head, Q = {query.shape[0]}, M = {query.shape[1]}, N = {audio.shape[0]}, "
                                 f"D = {query.shape[2]}: {e}") from None


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
    s = NativeScorer(module, precision, threads, _expected_dims(session))
    log.info("vpkl scorer: %s", s.name)
    return s
