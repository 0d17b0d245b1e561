"""Offline detection and localisation: one utterance x enrolled queries -> per-keyword results."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import as_samples
from .bundle import Bundle
from .checks import resolve_thresholds
from .errors import VpklInputError
from .features import features
from .localise import LOC_GATE_DB
from .longaudio import HOP_S, WINDOW_S, min_samples, require_one_frame, scan  # noqa: F401 (re-exported)
from .queries import QuerySet


@dataclass
class KeywordResult:
    """One keyword's answer for one utterance.

    score: S in [0, 1]; detected: S >= threshold; frame: localised audio embedding index
    (the argmax of aud_att over the window's speech frames, :mod:`vpkl.runtime.localise`; so
    not always the argmax of ``aud_att``), counted from the start of the audio; time_s: that frame's centre in
    seconds; window: (start, end) frames of the scored window the answer comes from ((0, N) for
    audio no longer than the window, see :mod:`vpkl.runtime.longaudio`); aud_att:
    (end - start,) float32 attention over that window's frames (50 per second), min-max
    normalised to [0, 1]: aud_att[i] is frame start + i.
    """

    keyword: str
    score: float
    detected: bool
    threshold: float
    frame: int
    time_s: float
    aud_att: np.ndarray
    window: tuple = (0, 0)

    def to_dict(self, with_att: bool = False) -> dict:
        d = {"keyword": self.keyword, "score": round(self.score, 6), "detected": self.detected,
             "threshold": self.threshold, "frame": self.frame, "time_s": round(self.time_s, 4),
             "window": list(self.window)}
        if with_att:
            d["aud_att"] = [round(float(v), 5) for v in self.aud_att]
        return d


def embed_audio(bundle: Bundle, audio, name: str = "audio") -> np.ndarray:
    """Audio (path or samples at the bundle's rate) -> (N, D) float32 frame embeddings.

    Raises:
        VpklInputError: unreadable/empty/non-finite audio, or shorter than one embedding frame.
    """
    x = as_samples(audio, bundle.front_end.sample_rate, name)
    return bundle.embed_features(features(require_one_frame(bundle, x, name), bundle.front_end, name))


def detect(bundle: Bundle, audio, queries: QuerySet, threshold=None, name: str = "audio",
           window_s: float = WINDOW_S, hop_s: float = HOP_S, progress=None,
           loc_gate_db: float | None = LOC_GATE_DB) -> list[KeywordResult]:
    """Is each query's keyword spoken in ``audio``, and where?

    Audio of any length is read block by block and scored in memory that does not grow with
    it: up to ``window_s`` (10 s) as one utterance, exactly; longer, over windows ``hop_s``
    apart, each keyword answered by its best-scoring window (:mod:`vpkl.runtime.longaudio`).

    Args:
        audio: a file path, or (n_samples,) int/float samples at the bundle's sample rate.
        queries: enrolled queries (:func:`vpkl.runtime.queries.enrol`).
        threshold: one float, a {keyword: float} dict (others get the bundle's), or None (the
            bundle's); each in [0, 1] (:func:`vpkl.runtime.checks.resolve_thresholds`).
        window_s, hop_s: window length and distance in seconds, for audio longer than window_s.
        progress: called as ``progress(seconds_done, seconds_total)`` as the audio is read.
        loc_gate_db: localise among the frames at least this many dB above the window's quiet
            level (default 3 dB, :mod:`vpkl.runtime.localise`); None: the paper's argmax of
            aud_att over all frames (Sec. 3.2).
    Returns:
        One :class:`KeywordResult` per query, in the query set's order; ``frame`` and ``time_s``
        count from the start of the audio.
    Raises:
        VpklInputError: no queries, a bad threshold, audio that cannot be used (named by its path,
            or ``name`` for samples), window_s / hop_s / loc_gate_db that cannot work.
    """
    if len(queries) == 0:
        raise VpklInputError("queries: no query enrolled")
    thresholds = resolve_thresholds(threshold, queries.keywords, bundle.threshold,
                                    per_keyword=bundle.keyword_thresholds)
    best = None  # per query: (S, window start, aud_att, localised frame) of its best window so far
    for win in scan(bundle, audio, queries, window_s, hop_s, name, progress, loc_gate_db):
        if best is None:
            best = [(float(win.scores[k]), win.start, win.aud_att[k].copy(), int(win.frames[k]))
                    for k in range(len(queries))]
            continue
        for k in np.flatnonzero(win.scores > np.array([b[0] for b in best])):
            # a copy, not a view: a view would keep the whole window alive
            best[k] = (float(win.scores[k]), win.start, win.aud_att[k].copy(), int(win.frames[k]))
    out = []
    for k, kw in enumerate(queries.keywords):
        s, start, att, n = best[k]
        out.append(KeywordResult(kw, s, bool(s >= thresholds[k]), float(thresholds[k]), n,
                                 float(bundle.frame_time(n)), att, (start, start + len(att))))
    return out
