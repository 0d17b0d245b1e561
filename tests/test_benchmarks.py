"""The benchmark suite's quick mode runs and writes what the full run writes (timing targets live
in the benchmark's own output, never in these tests)."""
import json
import os

from conftest import run_cli


def test_quick_benchmark_writes_json_markdown_and_plot(tmp_path):
    r = run_cli("--quick", "--out", str(tmp_path), module="vpkl.benchmarks")
    assert r.returncode == 0, r.stderr
    res = json.load(open(tmp_path / "results.json"))
    d = res["presets"]["digits"]
    assert set(d["offline"]["enrol_ms"]) == {"torch", "fp32", "fp16", "int8"}
    assert d["size_mb"]["int8"] < d["size_mb"]["fp16"] < d["size_mb"]["fp32"]
    assert set(d["streaming"]) == {"fp32", "fp16", "int8"} and d["streaming"]["fp32"]["after_word_end_s"]["words"] > 0
    assert res["machine"]["threads"] >= 1
    md = (tmp_path / "results.md").read_text()
    assert "| audio branch RTF, 1 s |" in md and "head, torch (paper-style)" in md
    assert (tmp_path / "head_vs_queries.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
