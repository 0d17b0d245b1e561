"""The benchmark's results as markdown tables (ratios against the PyTorch reference) and a PNG plot."""
from __future__ import annotations


TITLES = {"digits": "the shipped bundles; the torch column is the same architecture with random weights",
          "paper": "the published sizes, random weights: speed and size only"}


def _ratio(ref, x):
    return f"{ref / x:.1f}x" if ref and x else "-"


def markdown(res: dict) -> str:
    """Markdown tables for one run's results (the dict written to results.json)."""
    m = res["machine"]
    lines = [f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores), {m['threads']} threads, "
             f"torch {m['torch']}, onnxruntime {m['onnxruntime']}. Offline rows: "
             + (f"medians of {res['config']['repeats']} runs" if res["config"]["repeats"] > 1 else
                "one run each (--quick: it checks the code runs; do not compare these)")
             + " after a warm-up; streaming rows: every chunk of one "
             f"{res['config']['stream_s']:g} s pass after a 5 s warm-up. `x`: how many times faster than the "
             "PyTorch reference in the same run.", ""]
    for preset, r in res["presets"].items():
        lines += [f"**`{preset}` preset** ({TITLES.get(preset, '')})", ""]
        off = r["offline"]
        backs = list(off["enrol_ms"])
        lines += ["| | " + " | ".join(backs) + " |", "|---" * (len(backs) + 1) + "|"]
        for length, row in off["audio_rtf"].items():
            lines.append(f"| audio branch RTF, {length} | " + " | ".join(
                f"{row[b]:.4f}" + ("" if b == "torch" else f" ({_ratio(row['torch'], row[b])})") for b in backs) + " |")
        e = off["enrol_ms"]
        lines.append("| enrolment, ms per query | " + " | ".join(
            f"{e[b]:.2f}" + ("" if b == "torch" else f" ({_ratio(e['torch'], e[b])})") for b in backs) + " |")
        d = off["detect_ms"]
        lines.append("| detect, 10 s against 10 enrolled queries, ms | " + " | ".join(
            f"{d[b]:.1f}" + ("" if b == "torch" else f" ({_ratio(d['torch'], d[b])})") for b in backs) + " |")
        if r.get("rss_mb"):
            lines.append("| peak RSS, MB | " + " | ".join(
                "-" if r["rss_mb"].get(b) is None else f"{r['rss_mb'][b]:.0f}" for b in backs) + " |")
        lines.append("| bundle size, MB | - | " + " | ".join(f"{r['size_mb'][b]:.2f}" for b in backs[1:]) + " |")
        if r.get("accuracy"):
            a = r["accuracy"]
            lines.append("| validation det F1 / loc F1 | - | " + " | ".join(
                f"{a[b]['det_f1']:.3f} / {a[b]['loc_f1']:.3f}" for b in backs[1:]) + " |")
            lines.append("| max / mean abs(S - S_fp32) | - | " + " | ".join(
                f"{a[b]['max_abs_dS']:.4f} / {a[b]['mean_abs_dS']:.4f}" for b in backs[1:]) + " |")
        lines += [""] + head_table(off["head"], res.get("gemm_gflops", {}))
        st = r["streaming"]
        lines += ["", "| streaming | " + " | ".join(st) + " |", "|---" * (len(st) + 1) + "|"]
        for ck in res["config"]["chunks_ms"]:
            lines.append(f"| {ck} ms chunks: latency p50 / p95 / p99 / max ms, RTF | " + " | ".join(
                "{p50_ms:.2f} / {p95_ms:.2f} / {p99_ms:.2f} / {max_ms:.2f}, {rtf:.4f}".format(**st[b][f"{ck} ms"])
                for b in st) + " |")
        if all("after_word_end_s" in st[b] for b in st):
            lines.append("| detection after the word's end, median / max s | " + " | ".join(
                "{median:.2f} / {max:.2f}".format(**st[b]["after_word_end_s"]) if st[b]["after_word_end_s"]["words"]
                else "-" for b in st) + " |")
        lines.append("")
    return "\n".join(lines)


def head_table(h: dict, gemm: dict) -> list:
    """Markdown lines: the scoring head against Q, ms and GFLOP/s, ratio against the paper-style
    reference; native fp32 also as a share of the measured fp32 GEMM peak."""
    from .head import gflops
    qs = list(h["ms"])
    m, d = h["shape"]["M"], h["shape"]["D"]
    peak = gemm.get("peak")
    out = ["Scoring head against Q queries, 10 s of audio (N = 500 frames)"
           + (f", M = {m}, D = {d}" if m else "")
           + (f"; peak = the fp32 GEMM rate PyTorch reaches on this CPU in the same run: {peak:.0f} GFLOP/s"
              if peak else "")
           + (". Native kernels: " + ", ".join(f"{p} {k}" for p, k in h["kernels"].items()) if h["kernels"] else "")
           + ". Cells: ms, GFLOP/s (2 Q M N D / time), `x` faster than torch (paper-style).", "",
           "| way \\ Q | " + " | ".join(str(q) for q in qs) + " |", "|---" * (len(qs) + 1) + "|"]
    for name in h["ms"][qs[0]]:
        cells = []
        for q in qs:
            ms = h["ms"][q][name]
            cell = f"{ms:.2f}"
            if m:
                rate = gflops(int(q), m, d, ms)
                cell += f", {rate:.0f}" + (f" ({100 * rate / peak:.0f}% of peak)" if peak and name == "native fp32" else "")
            if name != "torch (paper-style)":
                cell += f", {_ratio(h['ms'][q]['torch (paper-style)'], ms)}"
            cells.append(cell)
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    if h.get("enrol_ms"):
        out += ["", f"Native enrolment of {qs[-1]} queries (once per query set), ms: "
                + ", ".join(f"{p} {v:.2f}" for p, v in h["enrol_ms"].items())]
    return out


def plot(res: dict, path: str) -> None:
    """PNG: scoring-head time against Q, one line per backend and preset (log-log)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for preset, r in res["presets"].items():
        h = r["offline"]["head"]["ms"]
        qs = [int(q) for q in h]
        for name in next(iter(h.values())):
            ax.plot(qs, [v[name] for v in h.values()], marker="o", label=f"{preset}: {name}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("queries Q (10 s of audio, N = 500 frames)")
    ax.set_ylabel("scoring head, ms")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
