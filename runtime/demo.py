"""The shipped assets (the digits bundle, example utterances and queries) and `vpkl demo`, which
runs the one on the others next to the truth.

Examples are made from Free Spoken Digit Dataset recordings (CC BY-SA 4.0, see
assets/examples/ATTRIBUTION.md) that no shipped model trained on (recordings 0-4 of each
speaker; one example also says a Speech Commands word that is no keyword, one has a pause of
digital silence); queries are held-out handwritten digits from scikit-learn's copy of UCI optdigits.
"""
from __future__ import annotations

import json
import os
from importlib.resources import files

from .bundle import Bundle
from .detect import detect
from .queries import enrol, folder_images

# the package data vpkl.assets, found by importlib.resources wherever vpkl is installed (a wheel,
# an editable install); a folder on disk, since bundles are opened by path
ASSETS = os.fspath(files("vpkl.assets"))
SHIPPED_BUNDLE = os.path.join(ASSETS, "digits")
EXAMPLES = os.path.join(ASSETS, "examples")


def run_demo(json_out: bool = False) -> int:
    """Print (or, with ``json_out``, write as JSON) the shipped bundle's detections on the shipped
    examples next to the words said; returns the exit code 0.

    The JSON is a list with one object per example: ``audio``, ``speaker``, ``snr_db``,
    ``peak_dbfs``, ``threshold`` (the bundle's), ``truth`` ([keyword, start_s, end_s]),
    ``other_words`` (words that are no keyword, same form), ``silence`` ([start_s, end_s] of
    digital silence) and ``detections`` ({keyword, time_s, score, correct}), as the text shows."""
    bundle = Bundle.load(SHIPPED_BUNDLE)
    ex = EXAMPLES
    queries = enrol(bundle, folder_images(os.path.join(ex, "queries")))
    with open(os.path.join(ex, "examples.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    report = []
    if not json_out:
        print(f"vpkl demo: {len(queries)} image queries ({', '.join(queries.keywords)}) "
              f"x {len(rows)} utterances, threshold {bundle.threshold:.3f}\n")
    for r in rows:
        res = detect(bundle, os.path.join(ex, r["audio"]), queries)
        found = [x for x in res if x.detected]
        truth = [(w, a, b) for w, a, b in r["words"]]
        hits = [{"keyword": x.keyword, "time_s": round(x.time_s, 2), "score": round(x.score, 3),
                 "correct": any(w == x.keyword and a <= x.time_s <= b for w, a, b in truth)} for x in found]
        report.append({"audio": r["audio"], "speaker": r.get("speaker"), "snr_db": r.get("snr_db"),
                       "peak_dbfs": r.get("peak_dbfs"), "threshold": round(float(bundle.threshold), 6),
                       "truth": truth, "other_words": r.get("other_words", []), "silence": r.get("silence", []),
                       "detections": hits})
        if json_out:
            continue
        spk = f"speaker {r['speaker']}, " if "speaker" in r else ""
        print(f"{r['audio']}  ({spk}SNR {r['snr_db']:.0f} dB, peak {r['peak_dbfs']:.0f} dBFS)")
        said = [(a, f"{w} @ {a:.2f}-{b:.2f}s") for w, a, b in truth]
        said += [(a, f"({w} @ {a:.2f}-{b:.2f}s, no keyword)") for w, a, b in r.get("other_words", [])]
        said += [(a, f"[digital silence {a:.2f}-{b:.2f}s]") for a, b in r.get("silence", [])]
        print("  said:     " + "   ".join(text for _, text in sorted(said)))
        print("  detected: " + ("   ".join(f"{h['keyword']} @ {h['time_s']:.2f}s (S={h['score']:.2f})"
                                        f"{'' if h['correct'] else ' x'}" for h in sorted(hits, key=lambda h: h['time_s']))
                                or "(nothing)"))
        print()
    if json_out:
        print(json.dumps(report, indent=2))
    else:
        print("x = detected but not at a time when that keyword was said")
    return 0
