"""``python -m vpkl.benchmarks [--quick] [--out DIR] [--presets digits paper] [--threads N]``.

Writes results.json, results.md and head_vs_queries.png into --out (default: benchmark_results).
Needs the bench extra (torch for the reference, onnx, matplotlib). --quick runs the digits preset
on small sizes in seconds (the tests run it, so this code cannot rot); the full run takes
minutes and adds the paper preset, memory and, where the spoken-digit data is found, accuracy.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

FULL = {"seconds": [1.0, 10.0, 30.0], "queries": [1, 2, 5, 10, 34, 100, 200, 340], "chunks_ms": [20, 80, 160],
        "stream_s": 60.0, "repeats": 5}
QUICK = {"seconds": [1.0, 3.0], "queries": [1, 10], "chunks_ms": [20, 160], "stream_s": 3.0, "repeats": 1}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m vpkl.benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="digits preset, small sizes, seconds")
    p.add_argument("--out", default="benchmark_results", help="folder for results.json, results.md, the plot")
    p.add_argument("--presets", nargs="+", default=None, choices=["digits", "paper"])
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for torch and onnxruntime")
    p.add_argument("--data", default=os.environ.get("VPKL_DATA", os.path.join("..", "shared", "data")),
                   help="spoken-digit data for the accuracy rows (skipped when absent)")
    a = p.parse_args(argv)
    try:
        import matplotlib  # noqa: F401  (report's plot: checked now, not after minutes of work)
        import torch

        from vpkl.model.vpkl_model import build_model

        from . import report, suite
    except ModuleNotFoundError as e:  # the bench extra is not installed: say so in one line
        from vpkl.cli.extras import exit_missing
        return exit_missing("benchmarks", e)
    if a.threads < 1:
        print(f"vpkl benchmarks: error: --threads: expected a positive integer, got {a.threads}", file=sys.stderr)
        return 2
    if os.path.exists(a.out) and not os.path.isdir(a.out):
        print(f"vpkl benchmarks: error: --out {a.out}: exists and is not a folder", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = dict(QUICK if a.quick else FULL, threads=a.threads)
    presets = a.presets or (["digits"] if a.quick else ["digits", "paper"])
    from . import head
    res = {"machine": suite.machine(a.threads), "config": cfg, "presets": {},
           "gemm_gflops": head.gemm_peak(a.threads, cfg["repeats"])}
    os.makedirs(a.out, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vpkl-bench-") as work, torch.no_grad():
        for preset in presets:
            print(f"vpkl benchmarks: {preset} ...", file=sys.stderr)
            model = build_model(preset).eval()
            bundles = suite.make_bundles(preset, work, model, suite.EXAMPLES, os.path.join(suite.EXAMPLES, "queries"))
            r = {"size_mb": {b: suite.bundle_bytes(path) / 1e6 for b, path in bundles.items()},
                 "offline": suite.offline(preset, model, bundles, cfg),
                 "streaming": suite.streaming(bundles, cfg, with_words=preset == "digits")}
            if not a.quick:
                r["rss_mb"] = suite.peak_rss_mb(preset, bundles, a.threads)
                if preset == "digits" and os.path.isdir(os.path.join(a.data, "fsdd", "recordings")):
                    r["accuracy"] = suite.accuracy(bundles, a.data, work, a.threads)
                elif preset == "digits":
                    print(f"vpkl benchmarks: accuracy rows skipped: no spoken-digit data at {a.data} "
                          "(give --data or set VPKL_DATA)", file=sys.stderr)
            res["presets"][preset] = r
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(res, f, indent=2)
    md = report.markdown(res)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(md)
    report.plot(res, os.path.join(a.out, "head_vs_queries.png"))
    print(md)
    print(f"vpkl benchmarks: wrote {a.out}/results.json, results.md, head_vs_queries.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
