"""The measurements of ``python -m vpkl.benchmarks``: speed, memory, size and accuracy per backend.

Backends: ``torch`` (PyTorch eager, the head scored the way the paper's released code scores
queries: one query at a time, the utterance's frame embeddings repeated for each), and vpkl's
onnxruntime bundles in ``fp32``, ``fp16`` and ``int8``. Every time is the median of ``repeats``
runs after one warm-up run, on ``threads`` threads (torch and onnxruntime alike).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from vpkl.runtime.demo import EXAMPLES, SHIPPED_BUNDLE

from .timing import median_time

BACKENDS = ("torch", "fp32", "fp16", "int8")


def speech(seconds: float) -> np.ndarray:
    """(seconds * 16000,) float32: the shipped example utterances, repeated to length."""
    from vpkl.runtime.audio import read_audio
    x = np.concatenate([read_audio(os.path.join(EXAMPLES, f), 16000)
                        for f in sorted(os.listdir(EXAMPLES)) if f.endswith(".wav")])
    return np.tile(x, int(seconds * 16000 // len(x)) + 1)[:int(seconds * 16000)]


def make_bundles(preset: str, work: str, model, calib_audio: str, calib_images: str) -> dict:
    """{precision: bundle folder}: fp32 (the shipped digits bundle, or ``model`` exported), fp16, int8."""
    from vpkl.calibration.quantize import calibrate_bundle
    from vpkl.export.precision import fp16_bundle
    if preset == "digits":
        fp32 = SHIPPED_BUNDLE
    else:
        from vpkl.export.onnx_export import export_bundle
        from vpkl.model.vpkl_model import save_checkpoint
        ckpt = os.path.join(work, f"{preset}.ckpt")
        save_checkpoint(model, ckpt, threshold=0.5, keywords=[])
        fp32 = os.path.join(work, f"{preset}_fp32")
        wav = os.path.join(EXAMPLES, "example_1.wav")
        img = sorted(os.path.join(calib_images, f) for f in os.listdir(calib_images))[:2]
        export_bundle(ckpt, fp32, [wav], img, force=True)
    out = {"fp32": fp32, "fp16": os.path.join(work, f"{preset}_fp16"), "int8": os.path.join(work, f"{preset}_int8")}
    fp16_bundle(fp32, out["fp16"], force=True)
    calibrate_bundle(fp32, calib_audio, calib_images, out["int8"], force=True, max_utterances=40)
    return out


def peak_rss_kb() -> int:
    """This process's peak resident memory in KiB: VmHWM from /proc/self/status where there is one
    (it starts afresh at exec; ``ru_maxrss`` can carry the parent's peak into a child), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def bundle_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.endswith((".onnx", ".json")))


def offline(preset: str, model, bundles: dict, cfg: dict) -> dict:
    """Offline timings, medians of ``cfg["repeats"]`` runs after a warm-up.

    Returns {"audio_rtf": {"<s> s": {backend: seconds of compute per second of audio (front end
    excluded)}}, "enrol_ms": {backend: ms to embed one query image}, "head": the scoring head
    against Q at this preset's M and D (:func:`vpkl.benchmarks.head.sweep`), "detect_ms":
    {backend: ms for one 10 s utterance against 10 queries embedded beforehand: front end,
    audio branch, head (the runtime's default scorer)}}.
    """
    import torch
    from vpkl.runtime.bundle import Bundle

    from . import head
    from vpkl.runtime.features import features
    loaded = {p: Bundle.load(b, threads=cfg["threads"]) for p, b in bundles.items()}
    fe = loaded["fp32"].front_end
    img = loaded["fp32"].image
    res = {"audio_rtf": {}, "enrol_ms": {}, "head": {}, "detect_ms": {}}
    for sec in cfg["seconds"]:
        feats = features(speech(sec), fe)
        ft = torch.from_numpy(feats)[None]
        row = {"torch": median_time(lambda: model.audio(ft), cfg["repeats"]) / sec}
        for p, b in loaded.items():
            row[p] = median_time(lambda: b.embed_features(feats), cfg["repeats"]) / sec
        res["audio_rtf"][f"{sec:g} s"] = row
    one = np.random.default_rng(0).standard_normal((1, img.channels, img.size, img.size)).astype(np.float32)
    res["enrol_ms"] = {"torch": 1000 * median_time(lambda: model.image(torch.from_numpy(one)), cfg["repeats"]),
                       **{p: 1000 * median_time(lambda: b.embed_images(one), cfg["repeats"]) for p, b in loaded.items()}}
    b = loaded["fp32"]
    res["head"] = head.sweep(b.embed_images(one).shape[1], b.embed_dim, cfg["queries"],
                             Bundle.load(bundles["fp32"], threads=cfg["threads"], scorer="onnx").scorer,
                             cfg["threads"], cfg["repeats"])
    x10 = speech(10.0)
    imgs = np.repeat(one, 10, axis=0)

    q_torch = model.image(torch.from_numpy(imgs))  # enrolled beforehand, as on the bundles' side

    def torch_detect():
        with torch.no_grad():
            f = model.front_end(torch.from_numpy(x10)[None])[0]
            return head.paper_style_head(q_torch, model.audio(f)[0])

    from vpkl.runtime.detect import detect
    from vpkl.runtime.queries import QuerySet
    res["detect_ms"] = {"torch": 1000 * median_time(torch_detect, cfg["repeats"])}
    for p, bb in loaded.items():
        qs = QuerySet([f"q{i}" for i in range(10)], bb.embed_images(imgs), scorer=bb.scorer)
        res["detect_ms"][p] = 1000 * median_time(lambda: detect(bb, x10, qs), cfg["repeats"])
    return res


def streaming(bundles: dict, cfg: dict, with_words: bool) -> dict:
    """Per-chunk compute latency percentiles (ms, over every chunk of one ``cfg["stream_s"]`` pass
    after a 5 s warm-up pass) and RTF per chunk size; with_words: delay (s) from the end of each
    spoken keyword of the shipped examples to its detection."""
    from vpkl.runtime.bundle import Bundle
    from vpkl.runtime.latency import LatencyStats
    from vpkl.runtime.queries import enrol, folder_images
    from vpkl.runtime.stream import Spotter
    out = {}
    x = speech(cfg["stream_s"])
    for p, path in bundles.items():
        b = Bundle.load(path, threads=cfg["threads"])
        q = enrol(b, folder_images(os.path.join(EXAMPLES, "queries"))) if b.image.channels == 1 else None
        if q is None:
            from vpkl.runtime.queries import QuerySet
            img = np.zeros((10, b.image.channels, b.image.size, b.image.size), np.float32)
            q = QuerySet([f"q{i}" for i in range(10)], b.embed_images(img), scorer=b.scorer)
        out[p] = {}
        warm = Spotter(b, q)
        for i in range(0, min(len(x), 5 * 16000), 1600):  # warm-up pass: first runs of each graph
            warm.feed(x[i:i + 1600])
        for ms in cfg["chunks_ms"]:
            n = 16 * ms
            sp, stats = Spotter(b, q), LatencyStats()
            t0 = time.perf_counter()
            for i in range(0, len(x), n):
                t = time.perf_counter()
                sp.feed(x[i:i + n])
                stats.add(1000 * (time.perf_counter() - t))
            s = stats.summary()
            out[p][f"{ms} ms"] = {"p50_ms": s["p50_ms"], "p95_ms": s["p95_ms"], "p99_ms": s["p99_ms"],
                                  "max_ms": s["max_ms"], "rtf": (time.perf_counter() - t0) / (len(x) / 16000)}
        if with_words:
            out[p]["after_word_end_s"] = word_delays(b, q)
    return out


def word_delays(bundle, queries) -> dict:
    """Median and max seconds from the end of a spoken keyword to its (correctly placed) detection,
    streaming the shipped examples in 20 ms chunks."""
    from vpkl.runtime.audio import read_audio
    from vpkl.runtime.stream import Spotter
    delays = []
    with open(os.path.join(EXAMPLES, "examples.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for r in rows:
        x = read_audio(os.path.join(EXAMPLES, r["audio"]), 16000)
        sp, dets = Spotter(bundle, queries), []
        for i in range(0, len(x), 320):
            dets += [(d, sp.audio_s) for d in sp.feed(x[i:i + 320])]
        dets += [(d, sp.audio_s) for d in sp.flush()]
        for d, heard in dets:
            for w, a, e in r["words"]:
                if w == d.keyword and a <= d.time_s <= e:
                    delays.append(heard - e)
    return {"median": float(np.median(delays)) if delays else None, "max": max(delays) if delays else None,
            "words": len(delays)}


_RSS = r'''
import sys
import numpy as np
backend, path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
from vpkl.benchmarks.suite import peak_rss_kb, speech
x = speech(10.0)
if backend == "torch":
    import torch
    from vpkl.benchmarks.head import paper_style_head
    from vpkl.model.vpkl_model import build_model
    torch.set_num_threads(threads)
    m = build_model(path).eval()
    c, s = m.preset.image.channels, m.preset.image.size
    with torch.no_grad():
        f = m.front_end(torch.from_numpy(x)[None])[0]
        paper_style_head(m.image(torch.zeros(10, c, s, s)), m.audio(f)[0])
else:
    from vpkl.runtime.bundle import Bundle
    from vpkl.runtime.detect import detect
    from vpkl.runtime.queries import QuerySet
    b = Bundle.load(path, threads=threads)
    img = np.zeros((10, b.image.channels, b.image.size, b.image.size), np.float32)
    detect(b, x, QuerySet([f"q{i}" for i in range(10)], b.embed_images(img)))
print(peak_rss_kb())
'''


def peak_rss_mb(preset: str, bundles: dict, threads: int) -> dict:
    """Peak RSS (MB) of a fresh process that loads each backend and detects 10 queries in 10 s of
    audio; None (with a warning on stderr) where that process failed."""
    out = {}
    for backend in BACKENDS:
        arg = preset if backend == "torch" else bundles[backend]
        r = subprocess.run([sys.executable, "-c", _RSS, backend, arg, str(threads)], capture_output=True, text=True)
        out[backend] = int(r.stdout.strip().splitlines()[-1]) / 1024 if r.returncode == 0 else None
        if r.returncode != 0:
            print(f"vpkl benchmarks: warning: peak RSS of {backend} not measured: {r.stderr.strip()[-300:]}",
                  file=sys.stderr)
    return out


def accuracy(bundles: dict, data: str, work: str, threads: int) -> dict:
    """Detection / localisation F1 per precision on the digits recipe's validation utterances,
    and score agreement with fp32 (max and mean |dS| over every utterance x keyword pair)."""
    from vpkl.evaluation.evaluate import evaluate
    from vpkl.evaluation.manifest import read_manifest
    from vpkl.runtime.bundle import Bundle
    from vpkl.runtime.detect import detect
    from vpkl.runtime.queries import enrol, folder_images
    from vpkl.training.make_dataset import write_queries, write_split
    val = os.path.join(work, "val")
    if not os.path.isfile(os.path.join(val, "manifest.jsonl")):
        write_split(val, data, "val", 400, 0)
        write_queries(os.path.join(work, "val_queries"), "val", 5)
    entries = read_manifest(os.path.join(val, "manifest.jsonl"))
    groups = folder_images(os.path.join(work, "val_queries"))
    out, scores = {}, {}
    threshold = Bundle.load(bundles["fp32"]).threshold
    for p, path in bundles.items():
        b = Bundle.load(path, threads=threads)
        q = enrol(b, groups)
        m = evaluate(b, entries, q, threshold)["overall"]
        scores[p] = np.array([[r.score for r in detect(b, e.audio, q)] for e in entries])
        out[p] = {"det_f1": m["detection"]["f1"], "loc_f1": m["localisation"]["f1"]}
    for p in out:
        d = np.abs(scores[p] - scores["fp32"])
        out[p].update(max_abs_dS=float(d.max()), mean_abs_dS=float(d.mean()))
    return out


def machine(threads: int) -> dict:
    import platform

    import onnxruntime
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "date": time.strftime("%Y-%m-%d")}
