"""`vpkl evaluate --streamed`: the manifest's utterances streamed as `vpkl stream` runs them.

The paper's protocol (:mod:`vpkl.evaluation.evaluate`) scores each utterance whole. A live
user gets the stream's detections instead (windows, lookahead, confirmation: see
:mod:`vpkl.runtime.stream`), and options that act only on the stream (the speech gate,
``vad``) can only be judged there. Each utterance is its own stream, fed in 100 ms chunks;
per (utterance, keyword) pair, the keyword counts as detected when the stream reports it at
least once, and as correctly placed when one of its detections falls inside one of that
keyword's spans (the localisation rule of the paper's protocol, applied to the time reported).

`vpkl evaluate --running` (:func:`running_metrics`) streams the utterances back to back as one
stream instead, as a microphone hears running speech: the model's state then carries over
from the utterances and pauses before, which no per-utterance figure shows.
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
    found, windows, seconds, compute = [], 0, 0.0, 0.0
    for e in (progress(entries) if progress else entries):
        x = as_samples(e.audio, sr, e.audio)
        sp = Spotter(bundle, queries, threshold=dict(zip(kws, map(float, thr))), vad=vad)
        t0 = time.perf_counter()
        dets = list(sp.run(x, chunk_s=CHUNK_S))
        compute += time.perf_counter() - t0
        windows += sp.windows_scored
        seconds += len(x) / sr
        found.append([(d.keyword, d.time_s) for d in dets])
    return {**_tally(entries, found, kws), "windows_scored": windows, "seconds": seconds, "compute_s": compute,
            "rtf": compute / seconds if seconds else float("nan")}


RUNNING_GAP_S = 0.5       # between utterances of a running stream
RUNNING_GAP_DBFS = -60.0  # the gap's white noise: a quiet room through a microphone, not digital silence


def running_metrics(bundle: Bundle, entries: list[Entry], queries: QuerySet, threshold, vad=False,
                    gap_s: float = RUNNING_GAP_S, progress=None) -> dict:
    """Detection and localisation precision / recall / F1 of the utterances streamed back to back.

    The utterances, in manifest order, are joined into one stream with ``gap_s`` seconds of white
    noise at -60 dBFS RMS between them (seeded, so runs repeat) and fed to one
    :class:`~vpkl.runtime.stream.Spotter` in 100 ms chunks. A detection belongs to the utterance
    whose stretch of the stream (its audio and the gap after it) holds its time; then the
    figures are counted as in :func:`streamed_metrics`, per (utterance, keyword) pair, so the two
    compare directly: what running speech costs against each utterance streamed alone.

    Returns:
        as :func:`streamed_metrics`, plus {"gap_s": float}.
    Raises:
        VpklInputError: unreadable audio (named by its path), or as :class:`Spotter`.
    """
    kws = list(queries.keywords)
    thr = np.broadcast_to(np.asarray(threshold, np.float64), (len(kws),))
    sr = bundle.front_end.sample_rate
    rng = np.random.default_rng(0)
    gap = int(round(gap_s * sr))
    parts, starts, t = [], [], 0
    for e in (progress(entries) if progress else entries):
        x = as_samples(e.audio, sr, e.audio)
        starts.append(t / sr)
        parts += [x, (rng.standard_normal(gap) * 10 ** (RUNNING_GAP_DBFS / 20)).astype(np.float32)]
        t += len(x) + gap
    stream = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    sp = Spotter(bundle, queries, threshold=dict(zip(kws, map(float, thr))), vad=vad)
    t0 = time.perf_counter()
    dets = list(sp.run(stream, chunk_s=CHUNK_S))
    compute = time.perf_counter() - t0
    found = [[] for _ in entries]
    for d in dets:
        i = int(np.searchsorted(starts, d.time_s, side="right")) - 1
        if i >= 0:
            found[i].append((d.keyword, d.time_s - starts[i]))
    seconds = len(stream) / sr
    return {**_tally(entries, found, kws), "windows_scored": sp.windows_scored, "seconds": seconds,
            "compute_s": compute, "rtf": compute / seconds if seconds else float("nan"), "gap_s": gap_s}


def _tally(entries: list[Entry], found: list, kws: list) -> dict:
    """Detection and localisation prf over (utterance, keyword) pairs; ``found[i]``: the
    (keyword, time in seconds from the utterance's start) detections of entry i."""
    tp = n_pred = n_true = placed = 0
    for e, dets in zip(entries, found):
        spans, times = {}, {}
        for w, a, b in e.words:
            spans.setdefault(w, []).append((a, b))
        for k, t in dets:
            times.setdefault(k, []).append(t)
        for k in kws:
            said, got = k in spans, k in times
            n_true += said
            n_pred += got
            tp += said and got
            placed += said and got and any(a <= t <= b for t in times[k] for a, b in spans[k])
    return {"detection": prf(tp, n_pred, n_true), "localisation": prf(placed, n_pred, n_true)}
