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
