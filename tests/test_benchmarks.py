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
    assert "| audio branch RTF, 1 s |" in md and "| torch (paper-style) |" in md
    h = d["offline"]["head"]
    assert set(h["ms"]) == {"1", "10"} and res["gemm_gflops"]["peak"] > 0
    ways = {"torch (paper-style)", "torch (batched)", "numpy", "onnxruntime"}
    if h["kernels"]:  # the native head was built
        ways |= {"native fp32", "native bf16", "native int8"}
        assert "| native int8 |" in md and "% of peak" in md
    assert set(h["ms"]["10"]) == ways
    assert (tmp_path / "head_vs_queries.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_numpy_head_matches_the_reference():
    """The benchmark's numpy way computes the same head (model/head.py)."""
    import numpy as np
    import torch
    from vpkl.benchmarks.head import numpy_head
    from vpkl.model.head import localising_attention
    rng = np.random.default_rng(0)
    q, a = rng.standard_normal((5, 7, 16)).astype(np.float32), rng.standard_normal((20, 16)).astype(np.float32)
    s, att = numpy_head(q, a)
    rs, ra, _ = localising_attention(torch.from_numpy(q), torch.from_numpy(a)[None], torch.tensor([20]))
    assert np.abs(s - rs[:, 0].numpy()).max() < 1e-5 and np.abs(att - ra[:, 0].numpy()).max() < 1e-5
