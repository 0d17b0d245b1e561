"""`vpkl evaluate --streamed`: counting of streamed detections against the manifest (a stub stream
with hand-chosen detections), and the CLI against `vpkl stream` run on the same files."""
import json
import os
from types import SimpleNamespace

import numpy as np

from vpkl.evaluation import streamed
from vpkl.evaluation.manifest import Entry
from vpkl.runtime.queries import QuerySet

from conftest import EXAMPLES, run_cli


def test_counts_by_hand(monkeypatch, tmp_path):
    """Utterance A says seven (0.5-0.9 s) and two (1.2-1.5 s); B says two (0.1-0.4 s). The stub stream
    reports seven at 0.7 s and nine at 1.3 s on A, two at 1.0 s on B: detection TP 2 (seven on A,
    two on B) of 3 predicted and 3 said; localisation 1 (two on B lies outside its span)."""
    import soundfile as sf
    for name in ("a.wav", "b.wav"):
        sf.write(tmp_path / name, np.zeros(32000, np.float32), 16000)
    entries = [Entry(str(tmp_path / "a.wav"), [("seven", 0.5, 0.9), ("two", 1.2, 1.5)], None),
               Entry(str(tmp_path / "b.wav"), [("two", 0.1, 0.4)], None)]
    said = {str(tmp_path / "a.wav"): [("seven", 0.7), ("nine", 1.3)], str(tmp_path / "b.wav"): [("two", 1.0)]}
    order = iter(e.audio for e in entries)

    class Stub:
        def __init__(self, *a, **k):
            self.dets, self.windows_scored = said[next(order)], 3

        def run(self, x, chunk_s):
            return iter([SimpleNamespace(keyword=k, time_s=t) for k, t in self.dets])

    monkeypatch.setattr(streamed, "Spotter", Stub)
    bundle = SimpleNamespace(front_end=SimpleNamespace(sample_rate=16000))
    q = QuerySet(["seven", "two", "nine"], np.zeros((3, 1, 4), np.float32))
    r = streamed.streamed_metrics(bundle, entries, q, 0.5)
    assert r["detection"] == {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3}
    assert r["localisation"]["recall"] == 1 / 3 and r["windows_scored"] == 6 and r["seconds"] == 4.0


def test_cli_matches_vpkl_stream_on_the_examples():
    """--streamed on the examples against the detections `vpkl stream --jsonl` prints for each file."""
    rows = [json.loads(l) for l in open(os.path.join(EXAMPLES, "examples.jsonl"))]
    queries = os.path.join(EXAMPLES, "queries")
    tp = n_pred = 0
    for r in rows:
        out = run_cli("stream", "--file", os.path.join(EXAMPLES, r["audio"]), "--queries", queries, "--jsonl")
        found = {json.loads(l)["keyword"] for l in out.stdout.splitlines()}
        n_pred += len(found)
        tp += len(found & {w for w, _, _ in r["words"]})
    n_true = sum(len({w for w, _, _ in r["words"]}) for r in rows)
    res = run_cli("evaluate", "--manifest", os.path.join(EXAMPLES, "examples.jsonl"), "--queries", queries,
                  "--streamed", "--json")
    d = json.loads(res.stdout)["streamed"]["detection"]
    assert abs(d["precision"] - tp / n_pred) < 1e-9 and abs(d["recall"] - tp / n_true) < 1e-9


def test_running_joins_the_utterances_and_counts_by_hand(monkeypatch, tmp_path):
    """--running: A (2 s, says seven 0.5-0.9 s and two 1.2-1.5 s) and B (1 s, says two 0.1-0.4 s)
    become one stream A, 0.5 s gap, B, 0.5 s gap (3.0 + 1.0 s in all), fed to one Spotter. The stub
    reports seven at 0.7 s (A), nine at 2.2 s (A's gap: A's), two at 2.6 s (B at 0.1 s: placed):
    detection TP 2 of 3 predicted and 3 said; localisation 2."""
    import soundfile as sf
    a = np.full(32000, 0.25, np.float32)
    b = np.full(16000, -0.5, np.float32)
    sf.write(tmp_path / "a.wav", a, 16000, subtype="FLOAT")
    sf.write(tmp_path / "b.wav", b, 16000, subtype="FLOAT")
    entries = [Entry(str(tmp_path / "a.wav"), [("seven", 0.5, 0.9), ("two", 1.2, 1.5)], None),
               Entry(str(tmp_path / "b.wav"), [("two", 0.1, 0.4)], None)]
    fed = []

    class Stub:
        windows_scored = 7

        def __init__(self, *a, **k):
            fed.append("new Spotter")

        def run(self, x, chunk_s):
            fed.append(x)
            return iter([SimpleNamespace(keyword=k, time_s=t) for k, t in (("seven", 0.7), ("nine", 2.2), ("two", 2.6))])

    monkeypatch.setattr(streamed, "Spotter", Stub)
    bundle = SimpleNamespace(front_end=SimpleNamespace(sample_rate=16000))
    q = QuerySet(["seven", "two", "nine"], np.zeros((3, 1, 4), np.float32))
    r = streamed.running_metrics(bundle, entries, q, 0.5)
    assert fed[0] == "new Spotter" and len(fed) == 2        # one stream for both utterances
    x = fed[1]
    assert len(x) == 32000 + 8000 + 16000 + 8000
    assert np.array_equal(x[:32000], a) and np.array_equal(x[40000:56000], b)
    for gap in (x[32000:40000], x[56000:]):
        assert abs(20 * np.log10(np.sqrt(np.mean(gap.astype(np.float64) ** 2))) + 60) < 0.5
    assert r["detection"] == {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3}
    assert r["localisation"]["recall"] == 2 / 3 and r["windows_scored"] == 7 and r["seconds"] == 4.0


def test_running_equals_vpkl_stream_on_the_examples_joined(tmp_path, shipped_bundle):
    """--running with no gap on the four examples against `vpkl stream --file` on the four files
    joined end to end (written here): each streamed detection, assigned to the example whose
    stretch holds its time, gives the same detection and localisation counts."""
    import soundfile as sf
    from vpkl.evaluation.manifest import read_manifest
    from vpkl.runtime.bundle import Bundle
    from vpkl.runtime.queries import enrol, folder_images
    manifest = os.path.join(EXAMPLES, "examples.jsonl")
    entries = read_manifest(manifest)
    parts = [sf.read(e.audio, dtype="float32")[0] for e in entries]
    sf.write(tmp_path / "joined.wav", np.concatenate(parts), 16000, subtype="FLOAT")
    queries = os.path.join(EXAMPLES, "queries")
    out = run_cli("stream", "--file", str(tmp_path / "joined.wav"), "--queries", queries, "--jsonl")
    starts = np.cumsum([0] + [len(p) / 16000 for p in parts[:-1]])
    times = [{} for _ in entries]                    # per example: keyword -> times from its start
    for line in out.stdout.splitlines():
        d = json.loads(line)
        i = int(np.searchsorted(starts, d["time_s"], side="right")) - 1
        times[i].setdefault(d["keyword"], []).append(d["time_s"] - starts[i])
    said = [{w for w, _, _ in e.words} for e in entries]
    tp = sum(len(set(g) & s) for g, s in zip(times, said))
    placed = sum(any(w == k and a <= t <= b for t in ts for w, a, b in e.words)
                 for g, e in zip(times, entries) for k, ts in g.items())
    bundle = Bundle.load(shipped_bundle)
    q = enrol(bundle, folder_images(queries))
    r = streamed.running_metrics(bundle, entries, q, bundle.threshold, gap_s=0.0)
    d = r["detection"]
    assert tp > 0 and abs(d["precision"] - tp / sum(map(len, times))) < 1e-9
    assert abs(d["recall"] - tp / sum(map(len, said))) < 1e-9
    assert abs(r["localisation"]["recall"] - placed / sum(map(len, said))) < 1e-9
    assert r["seconds"] == sum(len(p) for p in parts) / 16000
