"""Offline detection and localisation: one utterance x enrolled queries -> per-keyword results."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import as_samples
from .bundle import Bundle
from .checks import resolve_thresholds
from .errors import VpklInputError
from .features import features
from .queries import QuerySet


@dataclass
class KeywordResult:
    """One keyword's answer for one utterance.

    score: S in [0, 1]; detected: S >= threshold; frame: localised audio embedding index
    (argmax of aud_att); time_s: that frame's centre in seconds; aud_att: (N,) float32
    attention over frames (50 per second), min-max normalised to [0, 1].
    """

    keyword: str
    score: float
    detected: bool
    threshold: float
    frame: int
    time_s: float
    aud_att: np.ndarray

    def to_dict(self, with_att: bool = False) -> dict:
        d = {"keyword": self.keyword, "score": round(self.score, 6), "detected": self.detected,
             "threshold": self.threshold, "frame": self.frame, "time_s": round(self.time_s, 4)}
        if with_att:
            d["aud_att"] = [round(float(v), 5) for v in self.aud_att]
        return d


def min_samples(bundle: Bundle) -> int:
    """Fewest samples that give one audio embedding: two log-mel frames (35 ms at 16 kHz)."""
    fe = bundle.front_end
    return fe.win_length + fe.hop_length


def require_one_frame(bundle: Bundle, x: np.ndarray, name: str) -> np.ndarray:
    """Return ``x`` if it gives at least one audio embedding, else raise VpklInputError naming ``name``."""
    need = min_samples(bundle)
    if len(x) < need:
        sr = bundle.front_end.sample_rate
        raise VpklInputError(f"{name}: {len(x) / sr * 1000:.1f} ms of audio is shorter than one frame "
                             f"(needs at least {need / sr * 1000:.0f} ms: {need} samples at {sr} Hz)")
    return x


def embed_audio(bundle: Bundle, audio, name: str = "audio") -> np.ndarray:
    """Audio (path or samples at the bundle's rate) -> (N, D) float32 frame embeddings.

    Raises:
        VpklInputError: unreadable/empty/non-finite audio, or shorter than one embedding frame.
    """
    x = as_samples(audio, bundle.front_end.sample_rate, name)
    return bundle.embed_features(features(require_one_frame(bundle, x, name), bundle.front_end, name))


def detect(bundle: Bundle, audio, queries: QuerySet, threshold=None, name: str = "audio") -> list[KeywordResult]:
    """Is each query's keyword spoken in ``audio``, and where?

    Args:
        audio: a file path, or (n_samples,) int/float samples at the bundle's sample rate.
        queries: enrolled queries (:func:`vpkl.runtime.queries.enrol`).
        threshold: one float, a {keyword: float} dict (others get the bundle's), or None (the
            bundle's); each in [0, 1] (:func:`vpkl.runtime.checks.resolve_thresholds`).
    Returns:
        One :class:`KeywordResult` per query, in the query set's order.
    Raises:
        VpklInputError: no queries, a bad threshold, or audio that cannot be used.
    """
    if len(queries) == 0:
        raise VpklInputError("queries: no query enrolled")
    thresholds = resolve_thresholds(threshold, queries.keywords, bundle.threshold,
                                    per_keyword=bundle.keyword_thresholds)
    frames = embed_audio(bundle, audio, name)
    s, att, _ = bundle.score(queries, frames)
    out = []
    for k, kw in enumerate(queries.keywords):
        thr = thresholds[k]
        n = int(np.argmax(att[k]))
        out.append(KeywordResult(kw, float(s[k]), bool(s[k] >= thr), float(thr), n,
                                 float(bundle.frame_time(n)), att[k]))
    return out
