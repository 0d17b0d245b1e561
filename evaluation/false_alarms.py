"""False alarms per hour on keyword-free audio, misses per keyword, and the DET curve between them.

A keyword spotter's users first ask how often it fires when no keyword is said. vpkl measures it
as they would meet it: keyword-free audio (long recordings, folders of clips, or manifest lines
with no words) is streamed through :class:`~vpkl.runtime.stream.Spotter` in 100 ms chunks, and
every detection is a false alarm. Misses come from the manifest's utterances with keywords in
them, by the paper's protocol (Nortje & Kamper, SLT 2022, Sec. 5): a spoken (utterance, keyword)
pair is missed when S is below the threshold.

The Spotter's firing rule (confirmation over windows, refractory time) depends on the threshold,
so the negatives are streamed once per threshold of the grid rather than read off one run's
scores: the curve is what a user running `vpkl stream --threshold T` would see at each T.
"""
from __future__ import annotations

import os

import numpy as np

from vpkl.runtime.audio import as_samples
from vpkl.runtime.bundle import Bundle
from vpkl.runtime.errors import VpklInputError
from vpkl.runtime.queries import QuerySet
from vpkl.runtime.stream import Spotter

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
CHUNK_S = 0.1
THRESHOLDS = np.round(np.arange(0.50, 0.951, 0.025), 3)  # S in [0, 1]; the shipped threshold is near 0.63


def negative_files(path: str) -> list[str]:
    """An audio file, or a folder of them (searched recursively, sorted) -> file paths.

    Raises:
        VpklInputError: the path does not exist, or the folder holds no audio file.
    """
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise VpklInputError(f"--negatives {path}: no such file or folder")
    out = sorted(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs
                 if f.lower().endswith(AUDIO_SUFFIXES) and not f.startswith("."))
    if not out:
        raise VpklInputError(f"--negatives {path}: no audio files in it (expected {', '.join(AUDIO_SUFFIXES)})")
    return out


def stream_detections(bundle: Bundle, queries: QuerySet, audio: np.ndarray, threshold, vad=False) -> np.ndarray:
    """Stream (n,) float32 samples at the bundle's rate through a fresh Spotter in 100 ms chunks.

    ``threshold``: one float, or {keyword: float} (as :class:`~vpkl.runtime.stream.Spotter` takes it);
    ``vad``: the Spotter's speech gate (False: none).

    Returns:
        (Q,) int64 detections per query (each one a false alarm when no keyword is said).
    """
    sp = Spotter(bundle, queries, threshold=threshold if isinstance(threshold, dict) else float(threshold), vad=vad)
    dets = list(sp.run(audio, chunk_s=CHUNK_S))
    index = {k: i for i, k in enumerate(queries.keywords)}
    counts = np.zeros(len(queries), np.int64)
    for d in dets:
        counts[index[d.keyword]] += 1
    return counts


def false_alarms(bundle: Bundle, queries: QuerySet, sources: list, thresholds=THRESHOLDS,
                 progress=None, vad=False) -> dict:
    """False alarms of each keyword at each threshold on keyword-free audio.

    Args:
        sources: audio file paths or (n,) sample arrays at the bundle's rate, none of which
            holds a keyword (each is its own stream).
        thresholds: T thresholds on S, each a float in [0, 1] or a {keyword: float} dict.
        progress: optional wrapper of an iterable (a progress bar).
        vad: the streams' speech gate (see :class:`~vpkl.runtime.stream.Spotter`).
    Returns:
        {"hours": float, "thresholds": as given, "counts": (T, Q) int64 false alarms,
        "fa_per_hour": (T, Q) float64, "keywords": [Q names]}.
    Raises:
        VpklInputError: no source, an unreadable file, no audio at all.
    """
    if not sources:
        raise VpklInputError("negatives: no keyword-free audio given")
    from vpkl.runtime.checks import resolve_thresholds
    from vpkl.runtime.stream import replay
    thresholds = list(thresholds)
    per_query = [resolve_thresholds(thr if isinstance(thr, dict) else float(thr), queries.keywords, bundle.threshold,
                                    per_keyword=bundle.keyword_thresholds) for thr in thresholds]
    sr = bundle.front_end.sample_rate
    counts = np.zeros((len(thresholds), len(queries)), np.int64)
    seconds = 0.0
    for src in (progress(sources) if progress else sources):
        name = src if isinstance(src, str) else "negative audio"
        x = as_samples(src, sr, name)
        seconds += len(x) / sr
        # one pass of the model; the firing rules are replayed at each threshold (same detections
        # as a stream at that threshold: the scores do not depend on it)
        sp = Spotter(bundle, queries, vad=vad)
        sp.window_log = []
        for _ in sp.run(x, chunk_s=CHUNK_S):
            pass
        for t, thr in enumerate(per_query):
            counts[t] += replay(sp.window_log, sp.firing_rules(), thr)
    hours = seconds / 3600.0
    return {"hours": hours, "thresholds": thresholds, "counts": counts,
            "fa_per_hour": counts / hours, "keywords": list(queries.keywords)}


def miss_rates(scores: np.ndarray, spoken: np.ndarray, n_keywords: int, thresholds=THRESHOLDS) -> dict:
    """Miss rates by the paper's protocol from :func:`~vpkl.evaluation.evaluate.score_manifest`.

    Args:
        scores, spoken: (P,) over (utterance, keyword) pairs, keyword-major within an
            utterance (pair p is keyword p % n_keywords).
    Returns:
        {"thresholds": (T,), "per_keyword": (T, Q) misses / spoken (NaN for a keyword never
        spoken), "pooled": (T,) all misses / all spoken pairs, "spoken": (Q,) int64}.
    """
    thresholds = np.asarray(thresholds, np.float64)
    s = np.asarray(scores).reshape(-1, n_keywords)
    y = np.asarray(spoken, bool).reshape(-1, n_keywords)
    missed = (s[None] < thresholds[:, None, None]) & y[None]       # (T, U, Q)
    n = y.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per = missed.sum(axis=1) / n
    return {"thresholds": thresholds, "per_keyword": per,
            "pooled": missed.sum(axis=(1, 2)) / max(int(n.sum()), 1), "spoken": n}


def threshold_for_target(fa_per_hour: np.ndarray, thresholds: np.ndarray, target: float) -> int | None:
    """Index of the lowest threshold from which on false alarms per hour are at most ``target``.

    The lowest such threshold misses the fewest keywords; "from which on" keeps a dip of the
    measured curve below the target, followed by a rise above it, from being chosen.
    ``fa_per_hour``: (T,) over increasing ``thresholds``; None when no threshold of the grid
    meets the target.
    """
    meets = np.asarray(fa_per_hour) <= target
    from_here = np.logical_and.accumulate(meets[::-1])[::-1]
    ok = np.flatnonzero(from_here)
    return int(ok[0]) if len(ok) else None


def keyword_thresholds_for_target(counts: np.ndarray, errors: np.ndarray, budget: int) -> np.ndarray | None:
    """Per-keyword threshold indices with the fewest errors within a false-alarm budget (exact).

    Args:
        counts: (T, Q) int false alarms of each keyword at each of T thresholds (keyword-free audio).
        errors: (T, Q) int errors of each keyword at each threshold on utterances with keywords:
            misses (said, S below it) plus false detections (not said, S at or above it).
        budget: the most false alarms allowed, all keywords together (target per hour x hours).
    Returns:
        (Q,) int64 indices into the T thresholds that minimise the summed errors subject to the
        summed false alarms being at most ``budget`` (ties in errors: fewer false alarms; among
        combinations equal in both, the first found); None when even each keyword's fewest false alarms exceed the budget.

    The choice of one threshold per keyword is a multiple-choice knapsack over whole false alarms;
    with Q keywords, T thresholds and a budget of B it is solved exactly in O(Q T B). Keywords
    that give no false alarms keep the threshold that suits their own utterances best; the
    budget goes to keywords whose thresholds must rise, where rising costs the fewest errors.
    (A per-keyword rule that instead took each keyword's lowest threshold under target / Q ignored
    the false detections among the keywords, and let thresholds fall to the bottom of the grid.)
    """
    counts, errors = np.asarray(counts, np.int64), np.asarray(errors, np.int64)
    best = {0: (0, ())}                       # false alarms used -> (errors, indices so far)
    for q in range(counts.shape[1]):
        nxt = {}
        for used, (e, picks) in best.items():
            for t in range(counts.shape[0]):
                u = used + int(counts[t, q])
                if u > budget:
                    continue
                cand = (e + int(errors[t, q]), picks + (t,))
                if u not in nxt or cand[0] < nxt[u][0]:
                    nxt[u] = cand
        if not nxt:
            return None
        best = nxt
    used = min(best, key=lambda u: (best[u][0], u))
    return np.array(best[used][1], np.int64)


def write_thresholds(bundle_path: str, out: str, threshold: float, per_keyword: dict | None, force: bool) -> None:
    """Copy the bundle at ``bundle_path`` to ``out`` with a new threshold in its config.json.

    ``threshold`` becomes ``threshold`` (every keyword's default); ``per_keyword`` (or None)
    becomes ``keyword_thresholds``. The graphs are copied unchanged (their SHA-256 stays valid).
    Raises:
        VpklInputError: ``out`` exists and is not a bundle folder, or exists without ``force``
            (:func:`vpkl.export.folders.check_out_dir`).
    """
    import json
    import shutil

    from vpkl.export.folders import building, check_out_dir
    from vpkl.runtime.bundle import BUNDLE_FILES, CALIBRATION_FILES
    check_out_dir(out, [bundle_path], force)
    with open(os.path.join(bundle_path, "config.json")) as f:
        config = json.load(f)
    config["threshold"] = float(threshold)
    config.pop("keyword_thresholds", None)
    if per_keyword:
        config["keyword_thresholds"] = {k: float(v) for k, v in per_keyword.items()}
    with building(out, ".vpkl-thresholds-") as tmp:
        for name in BUNDLE_FILES + CALIBRATION_FILES:
            if name != "config.json" and os.path.exists(os.path.join(bundle_path, name)):
                shutil.copy2(os.path.join(bundle_path, name), os.path.join(tmp, name))
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(config, f, indent=2)


def false_alarm_report(bundle: Bundle, queries: QuerySet, negatives: list, scored: dict, thr: np.ndarray,
                       det: str | None = None, target: float | None = None, per_keyword: bool = False,
                       progress=None, vad=False) -> dict:
    """What ``vpkl evaluate`` reports on keyword-free audio.

    False alarms per hour (streamed) and misses per keyword at the thresholds in use (``thr``:
    (K,) per query; ``scored``: :func:`~vpkl.evaluation.evaluate.score_manifest`'s pairs), and
    with ``det`` (a PNG path) or ``target`` (false alarms per hour) the curve over one threshold
    for all keywords (:data:`THRESHOLDS`), its image, and the threshold meeting the target: the
    lowest for all keywords, or with ``per_keyword`` one per keyword, those with the fewest errors
    on the manifest's utterances (:func:`keyword_thresholds_for_target`). ``vad``: stream with
    the speech gate (the misses, scored offline, do not change with it).
    Raises:
        VpklInputError: no threshold of the grid meets the target (naming the keyword).
    """
    kws = list(queries.keywords)
    uniform = bool(np.all(thr == thr[0]))
    now = false_alarms(bundle, queries, negatives, [float(thr[0]) if uniform else dict(zip(kws, map(float, thr)))],
                       progress, vad)
    spoken = np.asarray(scored["spoken"], bool).reshape(-1, len(kws))
    scores = np.asarray(scored["scores"]).reshape(-1, len(kws))
    missed = (scores < thr[None]) & spoken
    per_kw = {k: {"threshold": float(thr[q]), "false_alarms": int(now["counts"][0, q]),
                  "per_hour": float(now["fa_per_hour"][0, q]), "spoken": int(spoken[:, q].sum()),
                  "misses": int(missed[:, q].sum())} for q, k in enumerate(kws)}
    out = {"negative_files": len(negatives), "hours": now["hours"],
           "threshold": float(thr[0]) if uniform else "per keyword",
           "false_alarms": int(now["counts"][0].sum()), "per_hour": float(now["fa_per_hour"][0].sum()),
           "miss_rate": float(missed.sum() / max(int(spoken.sum()), 1)), "per_keyword": per_kw}
    if not (det or target is not None):
        return out
    grid = np.unique(np.append(THRESHOLDS, thr))
    fa = false_alarms(bundle, queries, negatives, grid, progress, vad)
    ms = miss_rates(scored["scores"], scored["spoken"], len(kws), grid)
    if det:
        from .det_plot import plot_det
        plot_det(fa, ms, det, float(thr[0]) if uniform else None)
        out["det"] = det
    if target is not None:
        x = float(target)
        chosen = {}
        if per_keyword:
            hit = scores[None] >= grid[:, None, None]                                   # (T, U, Q)
            errors = (~hit & spoken[None]).sum(axis=1) + (hit & ~spoken[None]).sum(axis=1)
            # whole false alarms; no more than all of them (an infinite target is no constraint)
            budget = int(min(np.floor(x * fa["hours"] + 1e-9), fa["counts"].max(axis=0).sum()))
            rows = keyword_thresholds_for_target(fa["counts"], errors, budget)
            if rows is None:
                worst = kws[int(np.argmax(fa["counts"].min(axis=0)))]
                raise VpklInputError(f"--target-fa-per-hour {x:g}: no thresholds up to {grid[-1]:.3f} get there "
                                     f"(at {grid[-1]:.3f}: {fa['fa_per_hour'][-1].sum():.1f} per hour, most from {worst})")
            chosen = {k: float(grid[rows[q]]) for q, k in enumerate(kws)}
            thr_new = float(np.median(list(chosen.values())))
            fa_new = float(sum(fa["fa_per_hour"][i, q] for q, i in enumerate(rows)))
            miss_new = float(sum(np.nan_to_num(ms["per_keyword"][i, q]) * ms["spoken"][q] for q, i in enumerate(rows))
                             / max(int(ms["spoken"].sum()), 1))
        else:
            pooled = fa["fa_per_hour"].sum(axis=1)
            i = threshold_for_target(pooled, grid, x)
            if i is None:
                raise VpklInputError(f"--target-fa-per-hour {x:g}: no threshold up to {grid[-1]:.3f} gets there "
                                     f"(at {grid[-1]:.3f}: {pooled[-1]:.1f} per hour)")
            thr_new, fa_new, miss_new = float(grid[i]), float(pooled[i]), float(ms["pooled"][i])
        out["target"] = {"per_hour": x, "threshold": thr_new, "keyword_thresholds": chosen or None,
                         "expected_per_hour": fa_new, "expected_miss_rate": miss_new}
    return out
