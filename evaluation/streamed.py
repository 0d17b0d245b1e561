"""`vpkl evaluate --streamed`: the manifest's utterances streamed as `vpkl stream` runs them.

The paper's protocol (:mod:`vpkl.evaluation.evaluate`) scores each utterance whole. A live
user gets the stream's detections instead (windows, lookahead, confirmation: see
:mod:`vpkl.runtime.stream`), and options that act only on the stream (the speech gate,
``vad``) can only be judged there. Each utterance is its own stream, fed in 100 ms chunks;
per (utterance, keyword) pair, the keyword counts as detected when the stream reports it at
least once, and as correctly placed when one of its detections falls inside one of that
keyword's spans (the localisation rule of the paper's protocol, applied to the time reported).
"""
from __future__ import annotations

import time

import numpy as np

from vpkl.runtime.audio import as_samples
from vpkl.runtime.bundle import Bundle
from vpkl.runtime.queries import QuerySet
from vpkl.runtime.stream import Spotter

from .false_alarms import CHUNK_S
from .manifest import Entry
from .metrics import prf


def streamed_metrics(bundle: Bundle, entries: list[Entry], queries: QuerySet, threshold, vad=False,
                     progress=None) -> dict:
    """Detection and localisation precision / recall / F1 of streamed detections.

    Args:
        entries: manifest entries (:func:`~vpkl.evaluation.manifest.read_manifest`), words in seconds.
        threshold: (K,) float per query, or one float.
        vad: the streams' speech gate (see :class:`~vpkl.runtime.stream.Spotter`).
    Returns:
        {"detection": prf, "localisation": prf, "windows_scored": int, "seconds": audio seconds,
        "compute_s": wall seconds spent feeding, "rtf": compute_s / seconds}.
    Raises:
        VpklInputError: unreadable audio (named by its path), or as :class:`Spotter`.
    """
    kws = list(queries.keywords)
    thr = np.broadcast_to(np.asarray(threshold, np.float64), (len(kws),))
    sr = bundle.front_end.sample_rate
    tp = n_pred = n_true = placed = 0
    windows, seconds, compute = 0, 0.0, 0.0
    for e in (progress(entries) if progress else entries):
        x = as_samples(e.audio, sr, e.audio)
        sp = Spotter(bundle, queries, threshold=dict(zip(kws, map(float, thr))), vad=vad)
        t0 = time.perf_counter()
        dets = list(sp.run(x, chunk_s=CHUNK_S))
        compute += time.perf_counter() - t0
        windows += sp.windows_scored
        seconds += len(x) / sr
        spans = {}
        for w, a, b in e.words:
            spans.setdefault(w, []).append((a, b))
        found = {}
        for d in dets:
            found.setdefault(d.keyword, []).append(d.time_s)
        for k in kws:
            said, got = k in spans, k in found
            n_true += said
            n_pred += got
            tp += said and got
            placed += said and got and any(a <= t <= b for t in found[k] for a, b in spans[k])
    return {"detection": prf(tp, n_pred, n_true), "localisation": prf(placed, n_pred, n_true),
            "windows_scored": windows, "seconds": seconds, "compute_s": compute,
            "rtf": compute / seconds if seconds else float("nan")}
