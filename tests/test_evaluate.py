"""Metrics on hand-computed cases, manifest errors, and `vpkl evaluate` end to end."""
import json

import numpy as np
import pytest

from conftest import EXAMPLES, run_cli
from vpkl.evaluation.manifest import read_manifest
from vpkl.evaluation.metrics import best_threshold, vpkl_metrics
from vpkl.runtime.errors import VpklInputError


def test_metrics_hand_computed():
    # 5 pairs: spoken = T T T F F; scores 0.9 0.8 0.2 0.7 0.1 at threshold 0.5 -> detected T T F T F
    m = vpkl_metrics([0.9, 0.8, 0.2, 0.7, 0.1], [1, 1, 1, 0, 0], [1, 0, 1, 0, 0], 0.5)
    assert m["detection"]["precision"] == pytest.approx(2 / 3)
    assert m["detection"]["recall"] == pytest.approx(2 / 3)
    # correctly localised detections: pair 0 only -> P = 1/3, R = 1/3; accuracy: placed 2 of 3 spoken
    assert m["localisation"]["precision"] == pytest.approx(1 / 3)
    assert m["localisation"]["recall"] == pytest.approx(1 / 3)
    assert m["localisation"]["accuracy"] == pytest.approx(2 / 3)


def test_best_threshold():
    thr, f1 = best_threshold(np.array([0.9, 0.8, 0.3, 0.2]), np.array([1, 1, 0, 0]))
    assert f1 == 1.0 and 0.3 < thr < 0.8


@pytest.mark.parametrize("line,match", [("{not json", "not JSON"), ('{"words": []}', "string \"audio\""),
                                        ('{"audio": "a.wav", "words": [["one", "x"]]}', "keyword, start_s, end_s"),
                                        ('{"audio": "a.wav", "words": [["one", 0.6, 0.1]]}', "start < end"),
                                        ('{"audio": "a.wav", "words": [], "snr_db": "x"}', "snr_db"),
                                        ('{"audio": "a.wav", "snr_db": ' + "9" * 5000 + "}", "over 4300 digits"),
                                        ("[" * 100000, "nested too deeply")],
                         ids=["not json", "no audio", "word", "start", "snr", "5000 digits", "nested"])
def test_manifest_errors_name_the_line(tmp_path, line, match):
    p = tmp_path / "m.jsonl"
    p.write_text('{"audio": "ok.wav", "words": []}\n' + line + "\n")
    with pytest.raises(VpklInputError, match=f"m.jsonl:2: .*{match}"):
        read_manifest(str(p))


def test_evaluate_cli_on_examples(shipped_bundle, tmp_path):
    r = run_cli("evaluate", "--bundle", shipped_bundle, "--manifest", f"{EXAMPLES}/examples.jsonl",
                "--queries", f"{EXAMPLES}/queries", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["utterances"] == 4 and res["overall"]["pairs"] == 40
    assert set(res["by_snr"]) <= {"10-20 dB", "20-30 dB"}
    for m in [res["overall"], *res["by_snr"].values()]:
        assert 0.0 <= m["detection"]["f1"] <= 1.0 and 0.0 <= m["localisation"]["accuracy"] <= 1.0
    assert sum(m["pairs"] for m in res["by_snr"].values()) == 40


def test_evaluate_ignores_digital_silence_in_a_pause(shipped_bundle, tmp_path):
    """example_1 with 1 s of exact zeros put into its first pause (its word times moved on by 1 s)
    gets the same S per keyword and the same localised words as example_1 alone: `vpkl evaluate`
    scores what `vpkl detect` hears, with digital silence cut out."""
    import soundfile as sf
    from vpkl.evaluation.evaluate import score_manifest
    from vpkl.runtime.audio import read_audio
    from vpkl.runtime.bundle import Bundle
    from vpkl.runtime.queries import enrol, folder_images

    entry = json.loads(open(f"{EXAMPLES}/examples.jsonl").readline())
    assert entry["audio"] == "example_1.wav"
    x = read_audio(f"{EXAMPLES}/example_1.wav", 16000)
    cut = int(0.86 * 16000)                       # between "five" (ends 0.674 s) and "one" (starts 1.046 s)
    sf.write(tmp_path / "gap.wav", np.concatenate([x[:cut], np.zeros(16000, np.float32), x[cut:]]), 16000)
    moved = [[w, a + (a > 0.86), b + (b > 0.86)] for w, a, b in entry["words"]]
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "gap.wav", "words": moved}) + "\n")
    b = Bundle.load(shipped_bundle)
    q = enrol(b, folder_images(f"{EXAMPLES}/queries"))
    alone = score_manifest(b, read_manifest(f"{EXAMPLES}/examples.jsonl")[:1], q)
    gap = score_manifest(b, read_manifest(str(tmp_path / "m.jsonl")), q)
    assert np.abs(gap["scores"] - alone["scores"]).max() < 1e-4
    assert list(gap["placed"]) == list(alone["placed"]) and alone["placed"].sum() == 3
