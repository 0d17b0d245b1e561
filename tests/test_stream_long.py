"""Streaming over long stretches: an hour in constant memory without drift, and agreement with
offline `detect` on the digits recipe's validation utterances."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import DATA, EXAMPLES, ROOT, needs_data

HOUR = r'''
import json, sys
import numpy as np
from vpkl.benchmarks.suite import peak_rss_kb
from vpkl.runtime.audio import read_audio
from vpkl.runtime.bundle import Bundle
from vpkl.runtime.queries import enrol, folder_images
from vpkl.runtime.stream import Spotter

bundle_dir, examples, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
b = Bundle.load(bundle_dir)
q = enrol(b, folder_images(examples + "/queries"))
speech = np.concatenate([read_audio(f"{examples}/example_{i}.wav", 16000) for i in (1, 2, 3)])  # 8.2 s
period = 48 * 3200                                   # 9.6 s: whole scoring hops (0.2 s), so every period is scored alike
noise = np.random.default_rng(0).normal(0, 1e-3, period).astype(np.float32)
x = noise.copy()
x[:len(speech)] += speech
sp, chunk, by_period, rss = Spotter(b, q), 16000, {}, {}
for i in range(int(seconds * 16000) // chunk):
    start = i * chunk
    piece = x[np.arange(start, start + chunk) % period]
    for d in sp.feed(piece):
        by_period.setdefault(d.frame // 480, []).append([d.keyword, d.frame % 480, round(d.score, 4)])
    if start == 300 * 16000:                          # after 5 min: warmed up
        rss["warm_kb"] = peak_rss_kb()
rss["end_kb"] = peak_rss_kb()
last = max(k for k in by_period if (k + 2) * 480 <= sp.n_frames)  # a whole period, well before the end
print(json.dumps({"rss": rss, "first": by_period[3], "last": by_period[last], "periods": last,
                  "audio_s": sp.audio_s}))
'''


def test_an_hour_in_constant_memory_without_drift(shipped_bundle):
    """An hour of audio (a 9.6 s stretch of speech over noise, repeated) fed as fast as possible in
    1 s chunks: peak RSS grows < 20 MB after a 5-minute warm-up, and the last whole period gives the
    same detections (keyword, frame within the period, score to 1e-3) as the fourth (30 s in)."""
    r = subprocess.run([sys.executable, "-c", HOUR, shipped_bundle, EXAMPLES, "3600"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["audio_s"] == 3600.0 and out["periods"] >= 370
    growth_mb = (out["rss"]["end_kb"] - out["rss"]["warm_kb"]) / 1024
    assert growth_mb < 20, out["rss"]
    first, last = out["first"], out["last"]
    assert len(first) >= 5
    assert [d[:2] for d in first] == [d[:2] for d in last]
    assert np.abs(np.array([d[2] for d in first]) - np.array([d[2] for d in last])).max() <= 1e-3


@pytest.fixture(scope="module")
def val_set(tmp_path_factory):
    """The digits recipe's 400 validation utterances and validation queries (`vpkl make-dataset`)."""
    if not os.path.isdir(os.path.join(DATA, "fsdd", "recordings")):
        pytest.skip(f"FSDD not found under {DATA} (set VPKL_DATA)")
    from vpkl.training.make_dataset import write_queries, write_split
    d = tmp_path_factory.mktemp("val")
    write_split(str(d / "val"), DATA, "val", 400, 0)
    write_queries(str(d / "val_queries"), "val", 5)
    return d


@needs_data
def test_streaming_agrees_with_offline_on_validation_utterances(shipped_bundle, val_set):
    """Each validation utterance streamed in 100 ms chunks against `detect` on the whole of it:
    the same decision for >= 95% of (utterance, keyword) pairs, and for >= 95% of the keywords both
    detect, a streamed detection within 2 frames of the offline localised frame."""
    from vpkl.evaluation.manifest import read_manifest
    from vpkl.runtime.audio import read_audio
    from vpkl.runtime.bundle import Bundle
    from vpkl.runtime.detect import detect
    from vpkl.runtime.queries import enrol, folder_images
    from vpkl.runtime.stream import Spotter
    b = Bundle.load(shipped_bundle)
    q = enrol(b, folder_images(str(val_set / "val_queries")))
    same = total = near = shared = 0
    for e in read_manifest(str(val_set / "val" / "manifest.jsonl")):
        x = read_audio(e.audio, 16000)
        offline = {r.keyword: r for r in detect(b, x, q)}
        sp, dets = Spotter(b, q), []
        for i in range(0, len(x), 1600):
            dets += sp.feed(x[i:i + 1600])
        dets += sp.flush()
        for kw, r in offline.items():
            frames = [d.frame for d in dets if d.keyword == kw]
            total += 1
            same += r.detected == bool(frames)
            if r.detected and frames:
                shared += 1
                near += min(abs(f - r.frame) for f in frames) <= 2
    print(f"decisions agree {same}/{total}, localisation within 2 frames {near}/{shared}")
    assert total == 4000 and same / total >= 0.95 and near / shared >= 0.95
