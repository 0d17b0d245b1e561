"""One place that checks the settings a user gives the runtime: thread counts, choices such as a
precision, and detection thresholds.

``detect``, :class:`~vpkl.runtime.stream.Spotter`, :meth:`Bundle.load
<vpkl.runtime.bundle.Bundle.load>` and the CLI all call these, so one rule holds everywhere and
every refusal is a :class:`~vpkl.runtime.errors.VpklInputError` naming the setting as the caller
knows it (``threshold``, ``--threshold``, ``config.json: threshold``).
"""
from __future__ import annotations

import math
import numbers
import os

import numpy as np

from .errors import VpklInputError


def _is_real(v) -> bool:
    """A real number, not a bool (``True`` is an int in Python, never a meant threshold or count)."""
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def shown(v, limit: int = 60) -> str:
    """A short, safe rendering of a value a user gave, for a refusal message.

    ``repr`` of an int of more than 4300 digits raises ValueError in Python 3.11 (its
    integer-to-string limit), and a huge value would fill the message; an integer of 19 or more
    digits is therefore described by its approximate size, and any other repr longer than
    ``limit`` characters is cut with "...". Never raises.
    """
    if isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)):
        n = int(v)
        if abs(n) >= 10 ** 18:
            return f"{'-' if n < 0 else ''}an integer of about {int(abs(n).bit_length() * math.log10(2)) + 1} digits"
    try:
        r = repr(v)
    except Exception:  # a user's object whose repr fails must not hide the refusal
        r = f"a {type(v).__name__}"
    return r if len(r) <= limit else r[:limit - 3] + "..."


def finite_real(v) -> float | None:
    """``v`` as a float if it is a real number (not a bool) that is finite as a float, else None.

    Python ints beyond the float range (10**400) and NaN/inf give None rather than OverflowError
    or a numpy TypeError, so every caller can refuse them in its own words."""
    if not _is_real(v):
        return None
    try:
        f = float(v)
    except (OverflowError, TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def check_threads(threads, name: str = "threads") -> int:
    """A thread count: 0 (every core) or a whole number >= 1, capped at this machine's cores.

    Returns:
        int in 0 .. os.cpu_count() (a larger count is capped: more threads than cores only
        contend, and a huge one made onnxruntime hang).
    Raises:
        VpklInputError: a bool, a non-integer, or a negative number.
    """
    if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, numbers.Integral) or threads < 0:
        raise VpklInputError(f"{name}: {shown(threads)}, expected 0 (every core) or a positive whole number")
    return min(int(threads), os.cpu_count() or 1)


def check_choice(value, choices, name: str) -> str:
    """``value`` if it is one of ``choices`` (strings, e.g. precisions), else VpklInputError naming ``name``."""
    if not isinstance(value, str) or value not in choices:
        raise VpklInputError(f"{name}: {value!r}, expected one of {', '.join(choices)}")
    return value


def check_threshold(value, name: str = "threshold") -> float:
    """A detection threshold on S: a finite real number in [0, 1] (S = (1 + cos) / 2 lies there).

    A threshold above 1 would never detect anything, one below 0 everything, and NaN compares
    false with every score: each would silently give a useless answer, so each is refused.

    Returns:
        the threshold as a float.
    Raises:
        VpklInputError naming ``name``: a string, a bool, None, NaN, or a number outside [0, 1].
    """
    f = finite_real(value)
    if f is None or not 0.0 <= f <= 1.0:
        raise VpklInputError(f"{name}: expected a score in [0, 1], got {shown(value)}")
    return f


def check_loc_gate(gate_db, name: str = "loc_gate_db") -> float | None:
    """The localisation gate (:mod:`vpkl.runtime.localise`): None (the paper's argmax over all
    frames) or a finite number of dB >= 0, returned as a float.

    Raises:
        VpklInputError: naming ``name``, for anything else.
    """
    if gate_db is None:
        return None
    f = finite_real(gate_db)
    if f is None or f < 0:
        raise VpklInputError(f"{name}: expected None or a finite number of dB >= 0, got {shown(gate_db)}")
    return f


def resolve_thresholds(threshold, keywords, default: float, name: str = "threshold",
                       per_keyword: dict | None = None) -> np.ndarray:
    """The threshold of each enrolled keyword, by the one rule ``detect`` and ``Spotter`` share.

    Args:
        threshold: None (every keyword gets ``default``), one number (every keyword), or a
            {keyword: number} dict (the keywords it leaves out get ``default``).
        keywords: the enrolled keywords, in the query set's order.
        default: the bundle's threshold (checked when the bundle was loaded).
        name: how the caller names the setting in errors.
        per_keyword: the bundle's own {keyword: threshold} (``keyword_thresholds`` in its
            config.json, chosen by ``vpkl evaluate --target-fa-per-hour --per-keyword``), used
            instead of ``default`` for the keywords it names when ``threshold`` is None.
    Returns:
        (len(keywords),) float64, each in [0, 1].
    Raises:
        VpklInputError: a value :func:`check_threshold` refuses (named with its keyword for a
            dict), a dict naming a keyword that has no query, or another type.
    """
    keywords = list(keywords)
    if threshold is None:
        own = per_keyword or {}
        return np.array([float(own.get(k, default)) for k in keywords])
    if isinstance(threshold, dict):
        unknown = sorted(str(k) for k in set(threshold) - set(keywords))
        if unknown:
            raise VpklInputError(f"{name}: keywords {unknown} have no query (enrolled: {keywords})")
        return np.array([check_threshold(threshold[k], f"{name} for {k!r}") if k in threshold else float(default)
                         for k in keywords])
    return np.full(len(keywords), check_threshold(threshold, name))
