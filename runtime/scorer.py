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

Queries scored against many utterances are prepared once: ``scorer.prepare(embeddings)`` gives a
:class:`PreparedQueries` (the native kernel's layout, made once) that ``scorer.score`` then takes
in place of the array; :func:`vpkl.runtime.queries.enrol` returns queries already prepared for
the bundle's scorer. A plain array is prepared afresh on every call.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager

import numpy as np

from .checks import check_choice, check_threads, shown
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


def _check_array(name: str, x, ndim: int, want: str) -> None:
    if not isinstance(x, np.ndarray) or x.ndim != ndim:
        raise VpklInputError(f"{name}: expected {want} float32 array, got {getattr(x, 'shape', type(x))}")
    if x.dtype.kind != "f":
        raise VpklInputError(f"{name}: expected float32 values, got {x.dtype}")
    if 0 in x.shape:
        raise VpklInputError(f"{name}: empty array of shape {x.shape}")


def _check_query(query, expect=None) -> np.ndarray:
    """Validated (Q, M, D) float32 queries; ``expect``: the (M, D) a bundle's model gives."""
    _check_array("query", query, 3, "a (Q, M, D)")
    if expect is not None and query.shape[1:] != tuple(expect):
        raise VpklInputError(f"query: {query.shape[1]} pixels of {query.shape[2]} values, this bundle's model gives "
                             f"M = {expect[0]}, D = {expect[1]}")
    return query.astype(np.float32, copy=False)


def _check(query: np.ndarray, audio: np.ndarray, n_valid) -> tuple[np.ndarray, int]:
    """Validated float32 audio and n_valid for already checked (Q, M, D) queries."""
    _check_array("audio", audio, 2, "an (N, D)")
    if query.shape[2] != audio.shape[1]:
        raise VpklInputError(f"audio: {audio.shape[1]} values per frame, the queries have D = {query.shape[2]}")
    if n_valid is not None and (isinstance(n_valid, bool) or not isinstance(n_valid, (int, np.integer))):
        raise VpklInputError(f"n_valid: {shown(n_valid)}, expected a whole number of frames")
    n = audio.shape[0] if n_valid is None else int(n_valid)
    if not 1 <= n <= audio.shape[0]:
        raise VpklInputError(f"n_valid: {shown(n)}, expected 1 to N = {audio.shape[0]} frames")
    return audio.astype(np.float32, copy=False), n


def frozen(x, name: str = "query") -> np.ndarray:
    """A float32 copy of ``x`` (an array, or a list of equal-shaped arrays) that cannot be written:
    a read-only view of a read-only array (numpy refuses to make such a view writeable again), so
    queries prepared from it stay true to it. Raises VpklInputError naming ``name`` if ``x`` is
    not numeric or is ragged."""
    if isinstance(x, np.ndarray) and x.dtype.kind not in "fiu":
        raise VpklInputError(f"{name}: expected float32 values, got {x.dtype}")
    try:
        owner = np.array(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise VpklInputError(f"{name}: expected float32 values of one shape ({e})") from None
    owner.flags.writeable = False
    view = owner.view()
    view.flags.writeable = False
    return view


class PreparedQueries:
    """Queries prepared once for one scorer and scored against many utterances.

    Made by ``scorer.prepare(embeddings)`` (not directly). Attributes: ``embeddings``: the
    (Q, M, D) float32 values it was prepared from; ``scorer``: the scorer they
    were prepared for (another scorer reads ``embeddings`` and prepares them for that call);
    for the native scorer, the kernel's layout of them (``vpkl._native.Queries``).
    """

    def __init__(self, scorer, embeddings: np.ndarray, handle=None):
        self.scorer, self.embeddings, self._handle = scorer, embeddings, handle

    def __len__(self) -> int:
        return len(self.embeddings)


def _queries_of(query):
    """(PreparedQueries or None, array): what ``score`` was given, as prepared queries when it
    holds some (PreparedQueries itself, or a QuerySet's ``prepared``), and the plain values."""
    prepared = getattr(query, "prepared", query)
    if isinstance(prepared, PreparedQueries):
        return prepared, prepared.embeddings
    return None, getattr(query, "embeddings", query)


def _expected_dims(session):
    """(M, D) fixed by a head.onnx session, or None when the graph leaves them open."""
    dims = tuple(session.get_inputs()[0].shape[1:]) if session is not None else ()
    return dims if len(dims) == 2 and all(isinstance(x, int) for x in dims) else None


@contextmanager
def _kernel_errors(sizes: str):
    """The native kernel's errors as VpklInputError: its argument errors (NaN or Inf) name the
    input already; out of memory or an unsupported size gets the sizes added."""
    try:
        yield
    except ValueError as e:
        raise VpklInputError(str(e)) from None
    except (RuntimeError, MemoryError) as e:
        raise VpklInputError(f"native head, {sizes}: {e}") from None


class OnnxScorer:
    """The bundle's ``head.onnx`` (fp32) in onnxruntime."""

    def __init__(self, session):
        self._session = session
        self._expect = _expected_dims(session)
        self.name = "onnx"

    def prepare(self, query: np.ndarray) -> PreparedQueries:
        """See :meth:`NativeScorer.prepare` (here only checked: the graph reads the array)."""
        return PreparedQueries(self, _check_query(query, self._expect))

    def score(self, query, audio: np.ndarray, n_valid: int | None = None):
        """See :meth:`NativeScorer.score`."""
        _, query = _queries_of(query)
        query = _check_query(query, self._expect)
        audio, n = _check(query, audio, n_valid)
        return tuple(self._session.run(None, {"query": np.ascontiguousarray(query),
                                              "audio": np.ascontiguousarray(audio),
                                              "n_valid": np.array([n], np.int64)}))


class NativeScorer:
    """The fused CPU kernel.

    Queries are converted and laid out for the kernel by :meth:`prepare`, once, into a
    :class:`PreparedQueries` that every later :meth:`score` reuses; a plain array given to
    :meth:`score` is converted on that call only. Safe to call from several threads at once.
    """

    def __init__(self, module, precision: str = "fp32", threads: int = 0, expect=None):
        """Args: module: ``vpkl._native``; precision: "fp32", "bf16" or "int8"; threads: 0 (all
        cores) or how many; expect: the (M, D) queries must have, or None.
        Raises: VpklInputError: an unknown precision, a bad thread count, or VPKL_CPU_ISA set to
        something other than avx512, avx2 or portable."""
        check_choice(precision, PRECISIONS, "precision")
        threads = check_threads(threads)
        isa = os.environ.get("VPKL_CPU_ISA", "")
        if isa not in CPU_ISAS:
            raise VpklInputError(f"VPKL_CPU_ISA (environment): {isa!r}, expected avx512, avx2, portable or unset")
        self._m, self.precision, self.threads, self._expect = module, precision, int(threads), expect
        self.kernel = module.cpu_kernel(precision)
        self.name = f"native {precision} ({self.kernel})"

    def _layout(self, query: np.ndarray):
        """The kernel's layout of checked (Q, M, D) float32 queries (vpkl._native.Queries)."""
        with _kernel_errors(f"Q = {query.shape[0]}, M = {query.shape[1]}, D = {query.shape[2]}"):
            return self._m.Queries(query, self.precision, self.threads)

    def prepare(self, query) -> PreparedQueries:
        """Queries laid out for this kernel once, to score against many utterances.

        Args:
            query: (Q, M, D) float32 pixel embeddings. They must not change while the result is
                used (the kernel reads them for the contexts): pass a :func:`frozen` array, as
                :class:`~vpkl.runtime.queries.QuerySet` does.
        Returns:
            :class:`PreparedQueries` for :meth:`score`.
        Raises:
            VpklInputError: wrong rank, dtype or (M, D), NaN or Inf, int8 with D > 65536, or too
                large to fit in memory.
        """
        query = _check_query(query, self._expect)
        return PreparedQueries(self, query, self._layout(query))

    def score(self, query, audio: np.ndarray, n_valid: int | None = None):
        """Localising attention for Q queries against one utterance.

        Args:
            query: :class:`PreparedQueries` from :meth:`prepare` (or a QuerySet holding them), or
                (Q, M, D) float32 pixel embeddings (any strides; converted for this call only).
            audio: (N, D) float32 frame embeddings (any strides).
            n_valid: valid frames, 1 <= n_valid <= N (default N).
        Returns:
            S (Q,) in [0, 1]; aud_att (Q, N), 0 past n_valid; im_att (Q, M). All float32.
        Raises:
            VpklInputError: wrong rank, dtype or size, n_valid out of range, NaN or Inf in either
                input, int8 with D > 65536, or too large to fit in memory.
        """
        prepared, query = _queries_of(query)
        query = _check_query(query, self._expect)
        audio, n = _check(query, audio, n_valid)
        handle = prepared._handle if prepared is not None and prepared.scorer is self else self._layout(query)
        with _kernel_errors(f"Q = {query.shape[0]}, M = {query.shape[1]}, N = {audio.shape[0]}, D = {query.shape[2]}"):
            return handle.score(audio, n, self.threads)


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
