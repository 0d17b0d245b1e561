"""The ``vpkl`` command: demo, detect, stream, evaluate, info, calibrate, make-dataset, train.

Runtime commands (demo, detect, stream, evaluate, info) never import torch and need no extra.
Bad input ends in one line ``vpkl: error: <what>`` on stderr and exit code 2; so does a command
whose optional extra is not installed (the line names the extra, :mod:`vpkl.cli.extras`).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import warnings

from vpkl.runtime.errors import VpklInputError, VpklWarning

from . import detect
from .common import (AUDIO_HELP, OneLineParser, SHIPPED_BUNDLE, THRESHOLD_HELP, add_bundle_args, add_provider_args, add_query_args,
                     add_scorer_args, enrolled, flags, load_bundle, providers, query_images, skipped, threshold)
from .extras import exit_missing

DEFAULT_DATA = os.environ.get("VPKL_DATA", os.path.join("..", "shared", "data"))


def cmd_train(a) -> int:
    # Idle OpenMP threads sleep instead of spinning: with another job on the same cores,
    # spinning made training steps ~100x slower (measured). Must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from vpkl.training.train import TrainConfig, train
    if a.recipe != "digits":
        raise VpklInputError(f"--recipe: only 'digits' has a training recipe, got {a.recipe!r}")
    if os.path.isdir(a.out):
        raise VpklInputError(f"{a.out}: is a folder, expected a checkpoint file path")
    if os.path.exists(a.out) and not a.force:
        raise VpklInputError(f"{a.out}: already exists; pass --force to overwrite it")
    parent = os.path.dirname(os.path.abspath(a.out))
    if not os.path.isdir(parent):
        raise VpklInputError(f"{a.out}: the folder {parent} does not exist")
    for name, v in (("--steps", a.steps), ("--batch-size", a.batch_size), ("--threads", a.threads)):
        if v < 1:
            raise VpklInputError(f"{name}: expected a positive integer, got {v}")
    if not a.lr > 0:
        raise VpklInputError(f"--lr: expected a positive number, got {a.lr}")
    if not 0.0 <= a.concat <= 1.0:
        raise VpklInputError(f"--concat: expected a probability in [0, 1], got {a.concat}")
    if a.concat > 0 and a.sampling != "all_pairs":
        raise VpklInputError(f"--concat: only works with --sampling all_pairs, got --sampling {a.sampling}")
    for name, v in (("--keyword-free", a.keyword_free), ("--mixed", a.mixed), ("--long-context", a.long_context)):
        if not 0.0 <= v <= 1.0:
            raise VpklInputError(f"{name}: expected a share in [0, 1], got {v}")
    if a.keyword_free + a.mixed > 1.0:
        raise VpklInputError(f"--keyword-free + --mixed: expected at most 1 together, got {a.keyword_free + a.mixed:g}")
    held = held_out_speaker(a.held_out_speaker, allow_none=True)
    if a.synth:
        from vpkl.training.synth_speech import make_speech
        if not os.path.isfile(os.path.join(a.synth, "index.jsonl")):
            print(f"vpkl train: synthesising speech into {a.synth} (once)", file=sys.stderr)
            make_speech(a.synth)
    cfg = TrainConfig(data=a.data, out=a.out, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                      seed=a.seed, sampling=a.sampling, loss=a.loss,
                      prototypes=not a.no_prototypes, threads=a.threads, concat=a.concat,
                      keyword_free=a.keyword_free, mixed=a.mixed, synth=a.synth, held_out_speaker=held,
                      reversed_speech=a.reversed_speech, query_styles=a.query_styles, long_context=a.long_context)
    print(json.dumps(train(cfg), indent=2))
    return 0


def held_out_speaker(name: str, allow_none: bool) -> str | None:
    """--held-out-speaker: an FSDD speaker of the recipe (or 'none', where allowed) -> the name or None."""
    from vpkl.training.digits_data import SPEAKERS
    if allow_none and name == "none":
        return None
    if name not in SPEAKERS:
        raise VpklInputError(f"--held-out-speaker: expected one of {', '.join(SPEAKERS)}"
                             f"{' or none' if allow_none else ''}, got {name!r}")
    return name


def cmd_make_speech(a) -> int:
    from vpkl.training.synth_speech import PROGRAMS, make_speech
    for name, v in (("--digit-repeats", a.digit_repeats), ("--sentences", a.sentences)):
        if v < 0:
            raise VpklInputError(f"{name}: expected a count >= 0, got {v}")
    engines = a.engines.split(",") if a.engines else list(PROGRAMS)
    if os.path.exists(a.out) and not os.path.isdir(a.out):
        raise VpklInputError(f"--out {a.out}: exists and is not a folder")
    progress = None
    if sys.stderr.isatty():
        from vpkl.runtime.progress import progress
    r = make_speech(a.out, engines, a.digit_repeats, a.sentences, a.seed, progress)
    print(json.dumps(r, indent=2))
    return 0


def format_detection(d) -> str:
    """One line per streamed detection: time, keyword, score, frames, latency, stream delay."""
    return (f"{d.time_s:8.2f} s  {d.keyword:<10} S={d.score:.3f}  frames {d.span[0]}-{d.span[1]} (at {d.frame})  "
            f"latency {d.latency_ms:6.1f} ms  delay {d.delay_s:.2f} s")


def _stream_source(a, sample_rate: int, chunk_s: float):
    """The chunks of the one source given: (name, iterator)."""
    from vpkl.runtime import sources
    given = [n for n, on in (("--mic", a.mic), ("--file", a.file is not None), ("-", a.source is not None)) if on]
    if a.source not in (None, "-"):
        raise VpklInputError(f"{a.source}: the only positional source is '-' (raw PCM on standard input); "
                             "use --file AUDIO for a file")
    if len(given) != 1:
        raise VpklInputError("source: give exactly one of --mic, --file AUDIO or - (raw PCM on standard input)"
                             + (f", got {' and '.join(given)}" if given else ""))
    if a.realtime and a.file is None:
        raise VpklInputError("--realtime: only with --file (live sources are real time already)")
    if a.device is not None and not a.mic:
        raise VpklInputError("--device: only with --mic")
    raw = [f for f, v in (("--format", a.format), ("--rate", a.rate), ("--channels", a.channels)) if v is not None]
    if raw and a.source is None:
        raise VpklInputError(f"{raw[0]}: only with - (raw PCM on standard input); files and microphones say their own")
    warn = lambda m: print(f"vpkl stream: warning: {m}", file=sys.stderr)
    if a.mic:
        device = int(a.device) if a.device is not None and a.device.isdigit() else a.device
        drops = []

        def dropped(n: int) -> None:  # called from PortAudio's thread; warn once
            if not drops:
                warn("vpkl falls behind the microphone: audio beyond 10 s of backlog is dropped, "
                     "and times after a drop are early by the audio lost")
            drops.append(n)
        return "microphone", sources.mic_chunks(device, sample_rate, chunk_s, on_drop=dropped)
    if a.file is not None:
        return a.file, sources.file_chunks(a.file, sample_rate, chunk_s, a.realtime)
    return "stdin", sources.raw_chunks(sys.stdin.buffer, a.format or "s16le", 16000 if a.rate is None else a.rate,
                                       1 if a.channels is None else a.channels, sample_rate, chunk_s, warn)


def cmd_stream(a) -> int:
    from vpkl.runtime.latency import LatencyStats
    from vpkl.runtime.queries import enrol
    from vpkl.runtime.stream import Spotter, StreamConfig
    groups = query_images(a)
    if not 0 < a.chunk_ms <= 60000:
        raise VpklInputError(f"--chunk-ms: expected 0 < milliseconds <= 60000 (a minute), got {a.chunk_ms}")
    bundle = load_bundle(a)
    name, chunks = _stream_source(a, bundle.front_end.sample_rate, a.chunk_ms / 1000)
    queries = enrol(bundle, groups)
    notes = [enrolled("stream", groups)] + [n for n in [skipped("stream", a, groups)] if n]
    given = {"window_s": a.window_s, "hop_s": None if a.hop_ms is None else a.hop_ms / 1000,
             "min_window_s": a.min_window_s, "lookahead_s": a.lookahead_s, "confirm": a.confirm,
             "refractory_s": a.refractory_s}
    with flags({"window_s": "--window-s", "hop_s": "--hop-ms", "min_window_s": "--min-window-s",
                "lookahead_s": "--lookahead-s", "refractory_s": "--refractory-s", "confirm": "--confirm"}):
        spotter = Spotter(bundle, queries, threshold(a, bundle),
                          StreamConfig(**{k: v for k, v in given.items() if v is not None}), vad=a.vad)
    stats, found = LatencyStats(), 0

    def emit(dets) -> None:
        nonlocal found
        found += len(dets)
        for d in dets:
            print(json.dumps(d.to_dict()) if a.jsonl else format_detection(d), flush=True)

    stop = []

    def on_sigint(signum, frame):  # first Ctrl-C: finish the chunk in hand, flush, summarise
        if stop:
            raise KeyboardInterrupt
        stop.append(signum)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        for x in chunks:
            for note in notes:  # once the source has opened: what was enrolled and skipped
                print(note, file=sys.stderr, flush=True)
            notes = []
            if x.size:  # a live source yields empty chunks while it waits
                t = time.perf_counter()
                try:
                    dets = spotter.feed(x)
                except VpklInputError as e:
                    raise VpklInputError(f"{name}: {e}") from None
                stats.add((time.perf_counter() - t) * 1000)
                emit(dets)
            if stop:
                break
        t = time.perf_counter()
        emit(spotter.flush())
        stats.add((time.perf_counter() - t) * 1000)
    finally:
        chunks.close()  # a microphone stream closes here
        signal.signal(signal.SIGINT, previous)
    if spotter.n_frames == 0 and not stop:
        raise VpklInputError(f"{name}: no audio received" if spotter.audio_s == 0 else
                             f"{name}: {spotter.audio_s * 1000:.1f} ms of audio is shorter than one frame (35 ms)")
    lat = stats.summary()
    rtf = f"{lat['total_ms'] / 1000 / spotter.audio_s:.3f}" if spotter.audio_s else "-"
    print(f"vpkl stream: {'stopped (Ctrl-C); ' if stop else ''}{spotter.audio_s:.2f} s of audio in "
          f"{spotter.chunks} chunks, {found} detection{'s' * (found != 1)}, RTF {rtf}, chunk latency "
          f"p50 {lat['p50_ms']:.1f} ms, p95 {lat['p95_ms']:.1f} ms", file=sys.stderr)
    return 0


def cmd_calibrate(a) -> int:
    from vpkl.calibration.quantize import TOLERANCE, calibrate_bundle, compare_bundles
    if (a.manifest is None) != (a.queries is None):
        raise VpklInputError("--manifest and --queries: give both (held-out data to measure F1) or neither")
    if a.manifest is not None:  # checked before anything is written
        from vpkl.evaluation.manifest import read_manifest
        from vpkl.runtime.queries import folder_images
        entries, groups = read_manifest(a.manifest), folder_images(a.queries)
    res = calibrate_bundle(a.bundle, a.audio, a.images, a.out, a.force, a.max_utterances, a.calibration_from)
    how = (f"ranges reused from {a.calibration_from}" if a.calibration_from else
           f"calibrated on {res['utterances']} utterances and {res['images']} images")
    print(f"wrote {a.out}: int8, {how}")
    total = [sum(v[i] for v in res["graphs"].values()) for i in (0, 1)]
    for g, (x, y) in list(res["graphs"].items()) + [("all", total)]:
        print(f"  {g:<18} {x / 1e6:6.2f} MB -> {y / 1e6:6.2f} MB")
    from vpkl.runtime.bundle import Bundle
    b32, b8 = Bundle.load(a.bundle), Bundle.load(a.out)
    audio, images = res["held_out_audio"][:50], res["held_out_images"][:20]
    if not audio or not images:
        print("vpkl calibrate: warning: fewer than 5 utterances or images, so none was held out and the cost of "
              "int8 was not measured; compare with vpkl evaluate, or give more files", file=sys.stderr)
        ok = True
    else:
        c = compare_bundles(b32, b8, audio, images)
        frames = ("fp32 detected nothing there" if c["frame_same"] != c["frame_same"] else
                  f"same localised frame for {100 * c['frame_same']:.1f}% of fp32's detections")
        print(f"held out (every fifth file): {c['utterances']} utterances x {len(images)} images, int8 against fp32: "
              f"|dS| max {c['max_abs_dS']:.4f}, mean {c['mean_abs_dS']:.4f}; same decision "
              f"{100 * c['decisions_agree']:.1f}%, {frames}")
        ok = c["max_abs_dS"] <= TOLERANCE["max_abs_dS"] and c["decisions_agree"] >= TOLERANCE["decisions_agree"]
        if not ok:
            print(f"vpkl calibrate: warning: int8 departs from fp32 beyond the tolerance (|dS| <= "
                  f"{TOLERANCE['max_abs_dS']}, >= {100 * TOLERANCE['decisions_agree']:.0f}% same decisions): were "
                  "--audio and --images what the bundle will see?", file=sys.stderr)
    if a.manifest is not None:
        from vpkl.evaluation.evaluate import evaluate
        from vpkl.runtime.queries import enrol
        f1 = {}
        for name, b in (("fp32", b32), ("int8", b8)):
            m = evaluate(b, entries, enrol(b, groups), b32.threshold)["overall"]
            f1[name] = (m["detection"]["f1"], m["localisation"]["f1"])
        print(f"{a.manifest} ({len(entries)} utterances): " + "; ".join(
            f"{what} F1 fp32 {f1['fp32'][i]:.3f}, int8 {f1['int8'][i]:.3f} ({f1['int8'][i] - f1['fp32'][i]:+.3f})"
            for i, what in enumerate(("detection", "localisation"))))
        if any(f1["fp32"][i] - f1["int8"][i] > TOLERANCE["f1_drop"] for i in (0, 1)):
            ok = False
            print(f"vpkl calibrate: warning: int8 loses more than {TOLERANCE['f1_drop']} F1 on {a.manifest}: were "
                  "--audio and --images what the bundle will see?", file=sys.stderr)
    return 0 if ok else 1


def cmd_evaluate(a) -> int:
    from vpkl.evaluation.evaluate import evaluate, score_manifest
    from vpkl.evaluation.manifest import read_manifest
    from vpkl.runtime.queries import enrol, folder_images
    if a.out_bundle and a.target_fa_per_hour is None:
        raise VpklInputError("--out-bundle: only with --target-fa-per-hour (it writes the threshold chosen for it)")
    if a.per_keyword and a.target_fa_per_hour is None:
        raise VpklInputError("--per-keyword: only with --target-fa-per-hour")
    if a.target_fa_per_hour is not None and not (a.target_fa_per_hour >= 0):
        raise VpklInputError(f"--target-fa-per-hour: expected false alarms per hour >= 0, got {a.target_fa_per_hour}")
    if a.det and not a.det.lower().endswith(".png"):
        raise VpklInputError(f"--det {a.det}: expected a .png file name")
    if a.det and os.path.exists(a.det) and not a.force:
        raise VpklInputError(f"--det {a.det}: already exists; pass --force to replace it")
    bundle = load_bundle(a)
    entries = read_manifest(a.manifest)
    queries = enrol(bundle, folder_images(a.queries))
    unqueried = sorted({w for e in entries for w, _, _ in e.words} - set(queries.keywords))
    if unqueried:
        print(f"vpkl evaluate: not scored, no query image in {a.queries}: {', '.join(unqueried)}", file=sys.stderr)
    negatives = keyword_free_audio(a, entries)
    if a.vad and a.out_bundle:
        raise VpklInputError("--vad with --out-bundle: a threshold chosen with the speech gate holds only with it, "
                             "and a bundle does not record the gate; choose it without --vad")
    if a.vad and not (negatives or a.streamed or a.running):
        raise VpklInputError("--vad: only with what is streamed: --streamed, --running, or keyword-free audio (--negatives PATH, "
                             "or manifest lines with no words)")
    progress = None
    if not a.json and sys.stderr.isatty():
        from vpkl.runtime.progress import progress
    from vpkl.runtime.checks import resolve_thresholds
    thr = resolve_thresholds(threshold(a, bundle), queries.keywords, bundle.threshold,
                             per_keyword=bundle.keyword_thresholds)
    scored = score_manifest(bundle, entries, queries, progress)
    res = evaluate(bundle, entries, queries, thr, scored=scored)
    if a.streamed:
        from vpkl.evaluation.streamed import streamed_metrics
        res["streamed"] = streamed_metrics(bundle, [e for e in entries if e.words], queries, thr, a.vad, progress)
        res["streamed"]["vad"] = bool(a.vad)
    if a.running:
        from vpkl.evaluation.streamed import running_metrics
        res["running"] = running_metrics(bundle, [e for e in entries if e.words], queries, thr, a.vad, progress=progress)
        res["running"]["vad"] = bool(a.vad)
    if negatives:
        from vpkl.evaluation.false_alarms import false_alarm_report, write_thresholds
        res["false_alarms"] = false_alarm_report(bundle, queries, negatives, scored, thr, a.det,
                                                 a.target_fa_per_hour, a.per_keyword, progress, a.vad)
        res["false_alarms"]["vad"] = bool(a.vad)
        t = res["false_alarms"].get("target")
        if t and a.out_bundle:
            write_thresholds(a.bundle, a.out_bundle, t["threshold"], t["keyword_thresholds"], a.force)
            t["bundle"] = a.out_bundle
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    n, k = res["utterances"], len(res["keywords"])
    t = res["threshold"]
    shown = f"threshold {t:.3f}" if isinstance(t, float) else "thresholds " + ", ".join(f"{k} {v:.3f}" for k, v in t.items())
    print(f"{n} utterance{'s' * (n != 1)} x {k} keyword{'s' * (k != 1)}, {shown}")
    rows = [("overall", res["overall"])] + list(res.get("by_snr", {}).items())
    print(f"{'':<12} {'pairs':>6} | {'det P':>6} {'det R':>6} {'det F1':>6} | "
          f"{'loc P':>6} {'loc R':>6} {'loc F1':>6} {'loc acc':>7}")
    for name, m in rows:
        d, l = m["detection"], m["localisation"]
        print(f"{name:<12} {m['pairs']:>6} | {d['precision']:6.3f} {d['recall']:6.3f} {d['f1']:6.3f} | "
              f"{l['precision']:6.3f} {l['recall']:6.3f} {l['f1']:6.3f} {l['accuracy']:7.3f}")
    if a.streamed:
        r = res["streamed"]
        d, l = r["detection"], r["localisation"]
        print(f"\nstreamed as `vpkl stream{' --vad' if a.vad else ''}` runs (each utterance one stream, 100 ms chunks): "
              f"det P {d['precision']:.3f} R {d['recall']:.3f} F1 {d['f1']:.3f} | loc P {l['precision']:.3f} "
              f"R {l['recall']:.3f} F1 {l['f1']:.3f} | {r['windows_scored']} windows scored, RTF {r['rtf']:.4f}")
    if a.running:
        r = res["running"]
        d, l = r["detection"], r["localisation"]
        print(f"\nrunning speech (the utterances back to back in one stream, {r['gap_s']:g} s of -60 dBFS noise between, "
              f"{r['seconds'] / 60:.1f} min): det P {d['precision']:.3f} R {d['recall']:.3f} F1 {d['f1']:.3f} | loc P "
              f"{l['precision']:.3f} R {l['recall']:.3f} F1 {l['f1']:.3f} | RTF {r['rtf']:.4f}")
    if negatives:
        print_false_alarms(res["false_alarms"])
    return 0


def keyword_free_audio(a, entries) -> list:
    """The audio of --negatives (files or folders) and of the manifest's lines without words."""
    from vpkl.evaluation.false_alarms import negative_files
    files = [f for p in (a.negatives or []) for f in negative_files(p)]
    files += [e.audio for e in entries if not e.words]
    if not files and (a.det or a.target_fa_per_hour is not None):
        flag = "--det" if a.det else "--target-fa-per-hour"
        raise VpklInputError(f"{flag}: needs keyword-free audio: --negatives PATH, or manifest lines with no words")
    return files


def print_false_alarms(r: dict) -> None:
    thr = r["threshold"]
    gate = " --vad" if r.get("vad") else ""
    print(f"\nkeyword-free audio: {r['negative_files']} file(s), {r['hours'] * 60:.1f} min, streamed as `vpkl stream{gate}` "
          f"runs; threshold {thr if isinstance(thr, str) else f'{thr:.3f}'}")
    print(f"false alarms: {r['false_alarms']} = {r['per_hour']:.1f} per hour (all keywords); "
          f"miss rate {r['miss_rate']:.3f} of spoken keywords (scored offline{', without the gate' if gate else ''})")
    print(f"  {'keyword':<10} {'thr':>6} {'FA':>5} {'FA/h':>8} {'misses':>12}")
    for k, v in r["per_keyword"].items():
        print(f"  {k:<10} {v['threshold']:6.3f} {v['false_alarms']:>5} {v['per_hour']:>8.1f} {v['misses']:>5} of "
              f"{v['spoken']:<5}")
    if "det" in r:
        print(f"DET curve: {r['det']}")
    t = r.get("target")
    if t:
        how = "per keyword (median shown)" if t["keyword_thresholds"] else "for all keywords"
        print(f"target {t['per_hour']:g} false alarms per hour: threshold {t['threshold']:.3f} {how}: "
              f"{t['expected_per_hour']:.1f} per hour and miss rate {t['expected_miss_rate']:.3f} on this data "
              f"(now: {r['per_hour']:.1f} per hour, miss rate {r['miss_rate']:.3f})")
        if t.get("bundle"):
            print(f"written to {t['bundle']}")


def cmd_demo(a) -> int:
    from vpkl.runtime.demo import run_demo
    return run_demo(json_out=a.json)


def cmd_info(a) -> int:
    import platform
    import vpkl
    from vpkl.runtime.scorer import PRECISIONS, make_scorer, native_module
    mod, why = native_module()
    chosen = None if a.bundle else make_scorer(None, a.scorer, a.head_precision).name  # bad settings: error first
    graphs_on = providers(a)
    print(f"vpkl {vpkl.__version__}  python {platform.python_version()}  {platform.machine()}")
    if mod is None:
        print(f"native head: not available: {why}")
    else:
        kernels = ", ".join(f"{p} {mod.cpu_kernel(p)}" for p in PRECISIONS)
        print(f"native head: {mod.__file__}")
        print(f"  CPU kernels: {kernels}")
        print("  CUDA kernel: " + ("built (reached through the C interface and vpkl._native.score(cuda=True); "
                                   "detect, stream and evaluate score on the CPU)" if mod.has_cuda() else "not built"))
    import onnxruntime
    print(f"onnxruntime {onnxruntime.__version__}: execution providers {', '.join(onnxruntime.get_available_providers())}")
    if a.bundle:
        b = load_bundle(a)
        print(f"bundle {a.bundle}: preset {b.preset}, {b.precision} graphs, scorer {b.scorer.name}, "
              f"graphs on {', '.join(b.providers)}")
    else:
        print(f"scorer: {chosen} (--scorer/--head-precision or $VPKL_SCORER choose); graphs would run on "
              f"{', '.join(p if isinstance(p, str) else p[0] for p in graphs_on)} (--provider chooses)")
    return 0


def cmd_make_dataset(a) -> int:
    from vpkl.training.make_dataset import make_dataset, write_examples
    if a.examples:
        print(json.dumps(write_examples(a.data, a.out, a.examples), indent=2))
        return 0
    if a.synth and not a.negatives:
        raise VpklInputError("--synth: only with --negatives (it adds the held-out synthetic voices' sets)")
    if not a.minutes > 0:
        raise VpklInputError(f"--minutes: expected a positive number of minutes, got {a.minutes}")
    held = held_out_speaker(a.held_out_speaker, allow_none=True)
    if held is None and a.test is not None:
        raise VpklInputError("--test: no test split with --held-out-speaker none (every speaker is in validation)")
    res = make_dataset(a.data, a.out, a.val, 500 if a.test is None else a.test, a.per_keyword, a.seed, a.force, held)
    if a.negatives:
        from vpkl.training.negative_sets import write_negative_sets
        if a.synth and not os.path.isfile(os.path.join(a.synth, "index.jsonl")):
            from vpkl.training.synth_speech import make_speech
            print(f"vpkl make-dataset: synthesising speech into {a.synth} (once)", file=sys.stderr)
            make_speech(a.synth)
        res["negatives"] = write_negative_sets(os.path.join(a.out, "negatives"), a.data, a.synth, a.minutes,
                                               min(a.minutes, 10.0), a.seed)
    print(json.dumps(res, indent=2))
    return 0


STREAM_EPILOG = f"""\
Output, one line per detection as soon as the stream allows (--jsonl: one JSON object each, with
the same fields and span_s, window, chunk, threshold):
  time        time_s: the centre of the localised frame, in seconds from the start of the stream
  keyword     the query's keyword; S= its detection score in [0, 1], >= the threshold
  frames a-b  the run of frames around the localised frame with aud_att >= 0.5 (at: the frame)
  latency     compute time from the chunk's arrival to the detection
  delay       audio heard after the localised frame when it fired
Then on stderr a summary: seconds of audio, chunks, detections, RTF (compute time / audio time)
and the chunk latency's p50 and p95. Once the source has opened, stderr first lists the keywords
enrolled (images per keyword) and the files skipped in a --queries folder.

{AUDIO_HELP}"""


EVALUATE_EPILOG = """\
The table (the paper's protocol, Nortje & Kamper SLT 2022), a row overall and per SNR band when the
manifest gives snr_db:
  pairs     (utterance, keyword) pairs scored: utterances x keywords with a query image
  det P/R/F1  detection: a pair is detected when S >= the threshold; right when the keyword is said
  loc P/R/F1  localisation: a detection is right only when its localised frame (the argmax of aud_att
              over the speech frames, 3 dB or more above the quiet level; its centre time) falls
              inside one of that keyword's spoken spans
  loc acc   the share of said keywords whose localised frame falls inside, whatever S
--json gives the same numbers."""


def build_parser() -> argparse.ArgumentParser:
    import vpkl
    p = OneLineParser(prog="vpkl", description="Visually prompted keyword localisation: show an image of "
                                "a keyword, find where it is spoken. Runtime commands need no extra; train, "
                                "make-dataset, calibrate and detect --plot name the extra they need.")
    p.add_argument("--version", action="version", version=f"vpkl {vpkl.__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model with a recipe (needs the train extra: pip install 'vpkl[train]')")
    t.add_argument("--recipe", default="digits")
    t.add_argument("--data", default=DEFAULT_DATA, help="data folder (default: $VPKL_DATA or ../shared/data)")
    t.add_argument("--out", required=True, help="checkpoint to write")
    t.add_argument("--steps", type=int, default=1000)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    t.add_argument("--sampling", choices=["all_pairs", "paper"], default="all_pairs",
                   help="which image-utterance pairs each step scores (paper: per-anchor keyword sampling)")
    t.add_argument("--loss", choices=["bce", "mse"], default="bce",
                   help="bce: sigmoid cross-entropy on a learnt scale of the cosine; mse: the paper's loss")
    t.add_argument("--no-prototypes", action="store_true",
                   help="all_pairs: do not learn keyword prototypes as an extra target")
    t.add_argument("--concat", type=float, default=0.0, metavar="P",
                   help="all_pairs: chance that two utterances are joined into one input of the audio branch "
                        "(default 0, off)")
    t.add_argument("--keyword-free", type=float, default=0.0, metavar="P",
                   help="share of training utterances with no keyword: non-digit words, synthetic speech, "
                        "non-speech (default 0)")
    t.add_argument("--mixed", type=float, default=0.0, metavar="P",
                   help="share of training utterances mixing digits with non-digit words (default 0)")
    t.add_argument("--synth", metavar="DIR", default=None,
                   help="synthetic speech cache (made there first if missing: vpkl make-speech): its voices say the "
                        "digits as extra speakers, its keyword-free text joins the negatives")
    t.add_argument("--long-context", type=float, default=0.0, metavar="P",
                   help="share of training utterances with 0.5-2.5 s of noise before the first word and pauses of "
                        "up to 1 s, as a stream's window has (default 0)")
    t.add_argument("--reversed-speech", action="store_true",
                   help="with --keyword-free/--mixed: real recordings played backwards join the non-keyword pieces")
    t.add_argument("--query-styles", action="store_true",
                   help="train on the digit images also drawn dark on light, resized and photographed "
                        "(the query styles of vpkl make-dataset)")
    t.add_argument("--held-out-speaker", default="george", metavar="NAME",
                   help="FSDD speaker kept out of training and validation (default george; 'none': every speaker)")
    t.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    t.set_defaults(func=cmd_train)

    ms = sub.add_parser("make-speech", help="synthesise training speech with espeak-ng, flite and festival "
                                            "(apt-get install espeak-ng flite festival festvox-kallpc16k "
                                            "festvox-us-slt-hts)")
    ms.add_argument("--out", required=True, metavar="DIR", help="cache folder (files already there are kept)")
    ms.add_argument("--engines", default=None, help="comma-separated: espeak-ng,flite,festival (default all)")
    ms.add_argument("--digit-repeats", type=int, default=3, help="times each voice says each digit (default 3)")
    ms.add_argument("--sentences", type=int, default=12, help="keyword-free sentences per voice (default 12)")
    ms.add_argument("--seed", type=int, default=0)
    ms.set_defaults(func=cmd_make_speech)

    detect.add_parser(sub)

    s = sub.add_parser("stream", help="spot keywords live: a microphone, a file, or raw PCM on standard input",
                       description="Report each detection as soon as the stream allows: one line each (or --jsonl), "
                                   "then a summary on stderr. Ctrl-C stops cleanly.",
                       epilog=STREAM_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bundle_args(s)
    add_query_args(s)
    s.add_argument("source", nargs="?", metavar="-", help="'-': raw PCM on standard input (see --format, --rate, --channels)")
    s.add_argument("--file", metavar="AUDIO", help="an audio file, read block by block (WAV, FLAC, OGG, MP3, ...)")
    s.add_argument("--realtime", action="store_true", help="with --file: pace the chunks at real speed")
    s.add_argument("--mic", action="store_true", help="record from a microphone (pip install 'vpkl[mic]')")
    s.add_argument("--device", default=None, help="with --mic: device index or name (python -m sounddevice lists them)")
    s.add_argument("--format", default=None, help="with -: sample format, s16le (default), s32le or f32le, little-endian")
    s.add_argument("--rate", type=int, default=None,
                   help="with -: sample rate in Hz (default 16000; below 16000 loses accuracy)")
    s.add_argument("--channels", type=int, default=None, help="with -: interleaved channels, averaged (default 1)")
    s.add_argument("--chunk-ms", type=float, default=100.0,
                   help="milliseconds of audio per chunk, more than 0 and at most 60000 (default 100)")
    s.add_argument("--threshold", type=float, default=None, help=THRESHOLD_HELP)
    s.add_argument("--window-s", type=float, default=None, help="seconds of audio scored each hop (default 3)")
    s.add_argument("--hop-ms", type=float, default=None,
                   help="milliseconds between scorings, at most the window (default 200)")
    s.add_argument("--min-window-s", type=float, default=None,
                   help="at the start of a stream, seconds of audio before windows are scored (default 1.5)")
    s.add_argument("--lookahead-s", type=float, default=None,
                   help="audio needed after a word's frame before it is reported, less than the window (default 0.3)")
    s.add_argument("--confirm", type=int, default=None,
                   help="consecutive windows that must agree on a word's place before it is reported (default 2)")
    s.add_argument("--refractory-s", type=float, default=None,
                   help="a keyword is not reported again within this many seconds (default 0.6)")
    s.add_argument("--jsonl", action="store_true", help="one JSON object per detection")
    s.add_argument("--vad", action="store_true", help="score only windows with speech in them, by silero-vad's model "
                                                      "(pip install --no-deps silero-vad)")
    s.set_defaults(func=cmd_stream)

    e = sub.add_parser("evaluate", help="detection and localisation metrics on a JSON-lines manifest",
                       epilog=EVALUATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bundle_args(e)
    e.add_argument("--manifest", required=True,
                   help='JSON lines: {"audio": "relative/path.wav", "words": [["seven", 0.52, 0.91]], "snr_db": 12.5}')
    e.add_argument("--queries", required=True, metavar="DIR", help="folder of {keyword}_{anything}.png/jpg images")
    e.add_argument("--threshold", type=float, default=None, help=THRESHOLD_HELP)
    e.add_argument("--negatives", action="append", metavar="PATH",
                   help="keyword-free audio (a long file or a folder of files; repeatable), streamed as `vpkl "
                        "stream` runs: every detection is a false alarm. Manifest lines with no words count too")
    e.add_argument("--det", metavar="PNG", help="write the DET curve (miss rate against false alarms per hour, per "
                                                "keyword and pooled, log axes; needs the plot extra)")
    e.add_argument("--target-fa-per-hour", type=float, default=None, metavar="X",
                   help="choose the lowest threshold with at most X false alarms per hour (all keywords together) on "
                        "this data; tune it on validation data, not on the data you report")
    e.add_argument("--per-keyword", action="store_true",
                   help="with --target-fa-per-hour: a threshold per keyword, those with the fewest errors (misses "
                        "and false detections) on the manifest's utterances with at most X false alarms per hour, "
                        "all keywords together")
    e.add_argument("--out-bundle", metavar="DIR", help="with --target-fa-per-hour: write a copy of --bundle with the "
                                                       "chosen threshold(s) in its config.json")
    e.add_argument("--streamed", action="store_true",
                   help="also stream each utterance as `vpkl stream` does and report the streamed detections' "
                        "precision, recall and F1, windows scored and RTF")
    e.add_argument("--running", action="store_true",
                   help="also stream the utterances back to back as one stream (0.5 s of -60 dBFS noise between), "
                        "as running speech reaches a microphone, and report the detections' precision, recall and F1")
    e.add_argument("--vad", action="store_true", help="stream (--streamed, --running, --negatives) with the speech gate of "
                                                      "`vpkl stream --vad`")
    e.add_argument("--force", action="store_true", help="replace an existing --det image or --out-bundle bundle")
    e.add_argument("--json", action="store_true", help="the metrics (and false alarms) as one JSON object")
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser("calibrate", help="quantise an fp32 bundle to int8, calibrated on real utterances and images "
                                         "(needs the calibrate extra: pip install 'vpkl[calibrate]')")
    c.add_argument("--bundle", default=SHIPPED_BUNDLE, metavar="DIR",
                   help="an fp32 bundle folder (vpkl-export; default: the shipped digits bundle)")
    c.add_argument("--audio", required=True, metavar="DIR",
                   help="utterances (.wav/.flac/.ogg); every fifth is held out to measure the cost "
                        "(exit 1 with a warning when it is beyond tolerance)")
    c.add_argument("--images", required=True, metavar="DIR", help="query images of the kind the bundle expects")
    c.add_argument("--out", required=True, help="int8 bundle folder to write")
    c.add_argument("--force", action="store_true", help="replace --out if it is a bundle folder")
    c.add_argument("--max-utterances", type=int, default=200, help="utterances used for calibration (default 200)")
    c.add_argument("--calibration-from", metavar="DIR", default=None,
                   help="an int8 bundle calibrated earlier for this --bundle: reuse its ranges instead of running the data")
    c.add_argument("--manifest", default=None, help="held-out manifest: also print detection/localisation F1")
    c.add_argument("--queries", default=None, metavar="DIR", help="with --manifest: its query folder")
    c.set_defaults(func=cmd_calibrate)

    m = sub.add_parser("make-dataset", help="write the digits recipe's evaluation manifests and query folders "
                                            "(needs the dataset extra: pip install 'vpkl[dataset]')")
    m.add_argument("--data", default=DEFAULT_DATA, help="data folder (default: $VPKL_DATA or ../shared/data)")
    m.add_argument("--out", required=True, help="folder to write (manifests, WAVs, query folders)")
    m.add_argument("--val", type=int, default=400, help="validation utterances (default 400)")
    m.add_argument("--test", type=int, default=None, help="test utterances (held-out speaker; default 500)")
    m.add_argument("--held-out-speaker", default="george", metavar="NAME",
                   help="the FSDD speaker of the test split, kept out of validation (default george; for a "
                        "leave-one-speaker-out fold, the one vpkl train --held-out-speaker kept out; none: "
                        "validation holds every speaker and no test split is written)")
    m.add_argument("--per-keyword", type=int, default=5, help="query images per keyword (default 5)")
    m.add_argument("--seed", type=int, default=0, help="seed of the utterances and image styles (default 0)")
    m.add_argument("--force", action="store_true",
                   help="write into --out even when it is not empty (files of the same names are replaced)")
    m.add_argument("--negatives", action="store_true",
                   help="also write negatives/: long keyword-free recordings (held-out real words, non-speech; "
                        "with --synth the held-out synthetic voices) for false alarms per hour")
    m.add_argument("--synth", metavar="DIR", default=None, help="with --negatives: the synthetic speech cache "
                                                                "(vpkl make-speech; made there first if missing)")
    m.add_argument("--minutes", type=float, default=15.0, help="with --negatives: minutes per speech set "
                                                               "(default 15; non-speech sets up to 10)")
    m.add_argument("--examples", type=int, default=0, metavar="N",
                   help="instead, write the demo's N shipped examples (assets/examples layout)")
    m.set_defaults(func=cmd_make_dataset)

    g = sub.add_parser("demo", help="run the shipped digits model on the shipped examples")
    g.add_argument("--json", action="store_true", help="the demo's detections as JSON")
    g.set_defaults(func=cmd_demo)

    i = sub.add_parser("info", help="what this vpkl can run here: the scoring head (native or ONNX), its kernels, "
                                    "onnxruntime's execution providers")
    i.add_argument("--bundle", default=None, help="also open this bundle and show what it would use")
    add_scorer_args(i)
    add_provider_args(i)
    i.set_defaults(func=cmd_info)
    return p


def _one_line_warnings(show):
    """warnings.showwarning that prints vpkl's own warnings (VpklWarning) as one line on stderr."""
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, VpklWarning):
            print(f"vpkl: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)
    return showwarning


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():  # restores showwarning after the command
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
            return args.func(args)
    except VpklInputError as e:
        print(f"vpkl: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:  # an optional extra that is not installed: say which
        return exit_missing(args.command, e)
    except KeyboardInterrupt:
        print("vpkl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `vpkl demo | head -1`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
