"""Detection and localisation metrics of the VPKL protocol (Nortje & Kamper, SLT 2022, Sec. 5).

Units of evaluation are (utterance, keyword) pairs.

- Detection: a pair is detected when S >= threshold; precision, recall and F1 against
  whether the keyword is spoken in the utterance.
- Localisation: a detected pair is correctly localised when the keyword is spoken and the
  argmax frame of aud_att falls inside one of that keyword's spans. Precision = correctly
  localised / detected; recall = correctly localised / pairs whose keyword is spoken; F1.
  Accuracy = correctly placed / pairs whose keyword is spoken, ignoring the threshold
  (how well the model points, given the word is there).
"""
from __future__ import annotations

import numpy as np


def prf(tp: int, n_pred: int, n_true: int) -> dict:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def best_threshold(scores: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Threshold maximising detection F1: midpoint between neighbouring sorted scores."""
    order = np.argsort(-scores)
    s, y = scores[order], truth[order].astype(bool)
    tp = np.cumsum(y)
    n_pred = np.arange(1, len(s) + 1)
    f1 = 2 * tp / (n_pred + y.sum())
    i = int(np.argmax(f1))
    thr = float((s[i] + s[i + 1]) / 2) if i + 1 < len(s) else float(s[i])
    return thr, float(f1[i])


def vpkl_metrics(scores, spoken, placed, threshold: float) -> dict:
    """Metrics over pairs.

    Args:
        scores: (P,) S per pair.
        spoken: (P,) bool, the keyword is spoken in the utterance.
        placed: (P,) bool, the argmax frame falls inside one of the keyword's spans
            (False when it is not spoken).
        threshold: detection threshold on S: one float, or (P,) one per pair.
    Returns:
        {"pairs", "detection": {precision, recall, f1}, "localisation": {precision, recall, f1, accuracy}}
    """
    scores, spoken, placed = np.asarray(scores), np.asarray(spoken, bool), np.asarray(placed, bool)
    det = scores >= threshold
    loc = prf(int(np.sum(det & placed)), int(det.sum()), int(spoken.sum()))
    loc["accuracy"] = float(placed.sum() / spoken.sum()) if spoken.sum() else 0.0
    return {"pairs": int(len(scores)),
            "detection": prf(int(np.sum(det & spoken)), int(det.sum()), int(spoken.sum())),
            "localisation": loc}
