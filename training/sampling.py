"""Which image-utterance pairs a training step scores, and with what target.

Targets are +1 (the image's keyword is spoken in the utterance) and -1 (it is not), for
the MSE loss on the cosine (Nortje & Kamper, SLT 2022, Sec. 3.3). Word boundaries are
never used: only the set of keywords in each utterance.

- ``all_pairs``: every image in the batch against every utterance (B x B targets). One
  image per utterance, of a keyword spoken in it. Trains in minutes on a CPU.
- ``paper``: the paper's per-anchor sampling: for each anchor utterance, one positive
  image (a keyword it contains) and one negative image (a keyword it does not), and for
  each positive image one negative utterance (not containing its keyword).
"""
from __future__ import annotations

import numpy as np

SAMPLINGS = ("all_pairs", "paper")


def all_pairs_targets(image_labels: np.ndarray, utt_keywords: list[set]) -> np.ndarray:
    """(Q,) labels, B keyword sets -> (Q, B) float32 targets in {+1, -1}."""
    return np.array([[1.0 if int(q) in kw else -1.0 for kw in utt_keywords] for q in image_labels],
                    dtype=np.float32)


def pick_positive(rng: np.random.Generator, utt_keywords: list[set]) -> np.ndarray:
    """One keyword spoken in each utterance, uniformly: (B,) int."""
    return np.array([rng.choice(sorted(kw)) for kw in utt_keywords])


def pick_negative(rng: np.random.Generator, utt_keywords: list[set], n_keywords: int) -> np.ndarray:
    """One keyword absent from each utterance (an utterance holds at most 5 of 10): (B,) int."""
    return np.array([rng.choice([k for k in range(n_keywords) if k not in kw]) for kw in utt_keywords])
