"""DET curve image: miss rate against false alarms per hour, per keyword and pooled, log axes (matplotlib)."""
from __future__ import annotations

import numpy as np

from vpkl.runtime.errors import VpklInputError


def plot_det(fa: dict, misses: dict, path: str, threshold: float | None = None) -> None:
    """Write the DET curve of :func:`~vpkl.evaluation.false_alarms.false_alarms` and
    :func:`~vpkl.evaluation.false_alarms.miss_rates` (same thresholds) to a PNG.

    Zero false alarms cannot sit on a log axis: they are drawn at half of one false alarm in
    the measured time, and no miss at half of one miss (the axis labels say so). ``threshold``: a
    point to mark (the bundle's).
    Raises:
        VpklInputError: matplotlib is not installed (one line naming the extra that brings it).
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise VpklInputError("--det: needs matplotlib: pip install 'vpkl[plot]'") from None
    floor = 0.5 / fa["hours"]
    miss_floor = 0.5 / max(int(misses["spoken"].sum()), 1)
    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    for q, kw in enumerate(fa["keywords"]):
        if misses["spoken"][q] == 0:
            continue
        ax.plot(np.maximum(fa["fa_per_hour"][:, q], floor), np.maximum(misses["per_keyword"][:, q], miss_floor),
                lw=0.8, alpha=0.6, label=kw)
    pooled = fa["fa_per_hour"].sum(axis=1)
    ax.plot(np.maximum(pooled, floor), np.maximum(misses["pooled"], miss_floor), "k-", lw=2.2,
            label="pooled (all keywords)")
    if threshold is not None:
        grid = np.asarray(fa["thresholds"], np.float64)
        t = int(np.argmin(np.abs(grid - threshold)))
        ax.plot(max(pooled[t], floor), max(misses["pooled"][t], miss_floor), "ko", ms=8, mfc="none")
        ax.annotate(f"threshold {grid[t]:.3f}", (max(pooled[t], floor), max(misses["pooled"][t], miss_floor)),
                    textcoords="offset points", xytext=(8, 8))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"false alarms per hour ({fa['hours'] * 60:.1f} min keyword-free audio; 0 drawn at {floor:.2g})")
    ax.set_ylabel(f"miss rate (0 drawn at {miss_floor:.2g})")
    ax.set_title("DET: miss rate against false alarms per hour")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
