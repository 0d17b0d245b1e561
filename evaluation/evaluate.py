"""`vpkl evaluate`: the paper's detection and localisation protocol on a manifest (no torch)."""
from __future__ import annotations

import math

import numpy as np

from vpkl.runtime.audio import as_samples
from vpkl.runtime.bundle import Bundle
from vpkl.runtime.detect import detect
from vpkl.runtime.errors import VpklInputError
from vpkl.runtime.queries import QuerySet

from .manifest import Entry
from .metrics import vpkl_metrics


END_SLACK_S = 0.01  # a word may end this much after the audio (rounding in hand-made manifests)


def snr_bucket(snr: float, width: float = 10.0) -> str:
    lo = math.floor(snr / width) * width
    return f"{lo:g}-{lo + width:g} dB"


def score_manifest(bundle: Bundle, entries: list[Entry], queries: QuerySet, progress=None) -> dict:
    """Score every (utterance, keyword) pair, as `vpkl detect` scores it (:func:`vpkl.runtime.detect.detect`:
    digital silence cut out, utterances longer than its window scored over windows).

    Raises VpklInputError when the manifest places a word after the end of its audio (by more
    than ``END_SLACK_S``), naming the audio's real duration.
    Returns arrays over pairs: ``scores`` (P,), ``spoken`` (P,) bool, ``placed`` (P,) bool
    (argmax frame centre inside one of the keyword's spans), ``snr`` (P,) float (NaN if absent).
    """
    scores, spoken, placed, snr = [], [], [], []
    for e in (progress(entries) if progress else entries):
        x = as_samples(e.audio, bundle.front_end.sample_rate, e.audio)
        duration = len(x) / bundle.front_end.sample_rate
        late = [(w, b) for w, _, b in e.words if b > duration + END_SLACK_S]
        if late:
            raise VpklInputError(f"{e.audio}: the manifest has {late[0][0]!r} ending at {late[0][1]} s, after "
                                 f"the end of the audio ({duration:.3f} s)")
        for r in detect(bundle, x, queries, name=e.audio):
            spans = [(a, b) for w, a, b in e.words if w == r.keyword]
            scores.append(r.score)
            spoken.append(bool(spans))
            placed.append(any(a <= r.time_s <= b for a, b in spans))
            snr.append(np.nan if e.snr_db is None else e.snr_db)
    return {k: np.asarray(v) for k, v in
            {"scores": scores, "spoken": spoken, "placed": placed, "snr": snr}.items()}


def evaluate(bundle: Bundle, entries: list[Entry], queries: QuerySet, threshold, progress=None,
             scored: dict | None = None) -> dict:
    """Overall metrics plus ``by_snr`` buckets (10 dB wide) when the manifest has ``snr_db``.

    ``threshold``: one float, or (K,) floats, one per query (a bundle's ``keyword_thresholds``);
    reported as a float, or as {keyword: threshold} when they differ. ``scored``:
    :func:`score_manifest`'s result for these entries and queries, when the caller already has
    it (it is computed otherwise)."""
    r = scored if scored is not None else score_manifest(bundle, entries, queries, progress)
    per_query = np.broadcast_to(np.asarray(threshold, np.float64), (len(queries),))
    threshold = np.tile(per_query, len(entries))          # per (utterance, keyword) pair, keyword-major
    shown = float(per_query[0]) if np.all(per_query == per_query[0]) else dict(zip(queries.keywords,
                                                                                   map(float, per_query)))
    out = {"threshold": shown, "utterances": len(entries), "keywords": list(queries.keywords),
           "overall": vpkl_metrics(r["scores"], r["spoken"], r["placed"], threshold)}
    has = ~np.isnan(r["snr"])
    if has.any():
        buckets = {}
        for b in sorted({snr_bucket(v) for v in r["snr"][has]}, key=lambda s: float(s.split("-")[0])):
            sel = np.array([h and snr_bucket(v) == b for h, v in zip(has, r["snr"])])
            buckets[b] = vpkl_metrics(r["scores"][sel], r["spoken"][sel], r["placed"][sel], threshold[sel])
        out["by_snr"] = buckets
    return out
