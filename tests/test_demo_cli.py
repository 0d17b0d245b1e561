"""The built-in example: `vpkl demo` and `vpkl detect` on the shipped bundle and examples."""
import json
import os

from conftest import EXAMPLES, run_cli


def test_demo_reports_what_was_said_where(shipped_bundle):
    r = run_cli("demo", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    rows = [json.loads(line) for line in open(os.path.join(EXAMPLES, "examples.jsonl"))]
    assert [e["audio"] for e in report] == [r["audio"] for r in rows]
    for e, row in zip(report, rows):
        assert e["truth"] == row["words"]
        for k in ("speaker", "snr_db", "peak_dbfs"):
            assert e[k] == row[k]
        assert e["other_words"] == row.get("other_words", []) and e["silence"] == row.get("silence", [])
        assert e["threshold"] == json.load(open(os.path.join(shipped_bundle, "config.json")))["threshold"]
        for d in e["detections"]:   # "correct" is recomputed here from the truth, independently
            ok = any(w == d["keyword"] and a <= d["time_s"] <= b for w, a, b in row["words"])
            assert d["correct"] == ok
    text = run_cli("demo")
    assert text.returncode == 0 and "said:" in text.stdout and "example_1.wav" in text.stdout


def test_detect_table_and_json(shipped_bundle):
    q = os.path.join(EXAMPLES, "queries")
    queries = [os.path.join(q, f) for f in sorted(os.listdir(q)) if f.startswith(("five_", "one_"))]
    wav = os.path.join(EXAMPLES, "example_1.wav")       # says "five" then "one"
    args = ["detect", "--bundle", shipped_bundle, *sum([["--query", p] for p in queries], []), wav]
    r = run_cli(*args, "--json", "--attention")
    assert r.returncode == 0, r.stderr
    res = {x["keyword"]: x for x in json.loads(r.stdout)["results"]}
    assert sorted(res) == ["five", "one"]
    import soundfile as sf
    n_frames = (sf.info(wav).frames - 400) // 160 + 1         # log-mel frames; embeddings = half
    for kw in ("five", "one"):
        att = res[kw]["aud_att"]
        assert len(att) == n_frames // 2 and max(att) == 1.0 and min(att) == 0.0
        assert res[kw]["frame"] == att.index(1.0)
        assert res[kw]["time_s"] == round(0.0175 + 0.02 * res[kw]["frame"], 4)
        assert res[kw]["detected"] == (res[kw]["score"] >= res[kw]["threshold"])
    table = run_cli(*args)
    assert table.returncode == 0 and "five" in table.stdout and "one" in table.stdout
