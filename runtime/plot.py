"""A picture of one utterance's detections: the log-mel features, each keyword's aud_att under them.

``vpkl detect --plot OUT.png`` draws it. matplotlib is optional (``pip install 'vpkl[plot]'``)
and imported only when a plot is made.

Layout (time in seconds on a shared axis):
- top: the features the model sees (log-mel, 40 bands, causally normalised; one column per
  10 ms frame, drawn at the frame's window centre), with the true words shaded and named when
  a manifest gives them;
- one row per keyword: its aud_att over the audio embedding frames (drawn at each frame's
  centre, :meth:`FrontEndConfig.embedding_centre`), a vertical line at the localised frame
  (solid red when detected, dashed grey when not), the keyword's true spans shaded;
- beside each row: S as a bar on [0, 1] with the keyword's threshold as a black tick.
"""
from __future__ import annotations

import numpy as np

from .errors import VpklInputError
from .features import features


def figure_class():
    """matplotlib's ``Figure`` class (no pyplot, so no display backend is needed).

    Raises:
        VpklInputError (named ``plot``): matplotlib is not installed; the line names the plot extra.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise VpklInputError("plot: needs matplotlib, which the plot extra brings: pip install 'vpkl[plot]'") from None
    return Figure


def file_formats() -> list:
    """The file suffixes matplotlib can write a figure to (png, pdf, svg, ...), without the dot.

    Raises:
        VpklInputError: matplotlib is not installed (see :func:`figure_class`).
    """
    figure_class()
    from matplotlib.backend_bases import FigureCanvasBase
    return sorted(FigureCanvasBase.get_supported_filetypes())


def plot_detections(bundle, samples: np.ndarray, results: list, words=None, title: str = ""):
    """Draw one utterance's detections.

    Args:
        bundle: the :class:`vpkl.runtime.bundle.Bundle` that scored it (front end, frame times).
        samples: (n,) float32 mono samples at the bundle's rate (what ``detect`` scored).
        results: the :class:`vpkl.runtime.detect.KeywordResult` list ``detect`` returned.
        words: true words [(keyword, start_s, end_s), ...] (a manifest's), or None.
        title: the figure's title (the audio file's name, say).
    Returns:
        A matplotlib ``Figure`` (``fig.savefig(path)`` writes it; the format follows the suffix).
        Its axes: ``fig.axes[0]`` the features, ``fig.axes[1]`` the key, then for keyword k
        ``fig.axes[2 + 2k]`` its aud_att and ``fig.axes[3 + 2k]`` its S bar.
    Raises:
        VpklInputError: matplotlib is not installed (naming the plot extra), no results.
    """
    Figure = figure_class()
    if not results:
        raise VpklInputError("plot: no keyword results to draw")
    fe = bundle.front_end
    feats = features(np.asarray(samples, np.float32), fe)                    # (T, n_mels)
    t_feat = (np.arange(len(feats)) * fe.hop_length + fe.win_length / 2) / fe.sample_rate
    half = fe.hop_length / fe.sample_rate / 2
    words = list(words or [])
    rows = len(results)
    fig = Figure(figsize=(9, 2.2 + 0.75 * rows), layout="constrained")
    grid = fig.add_gridspec(1 + rows, 2, height_ratios=[3] + [1] * rows, width_ratios=[14, 1.2])
    spec = fig.add_subplot(grid[0, 0])
    spec.imshow(feats.T, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                extent=(t_feat[0] - half, t_feat[-1] + half, -0.5, feats.shape[1] - 0.5))
    spec.set_ylabel("mel band")
    spec.set_title(title, loc="left", fontsize=10)
    for w, a, b in words:
        spec.axvspan(a, b, ymin=0.9, ymax=1.0, color="white", alpha=0.6, lw=0)
        spec.text((a + b) / 2, feats.shape[1] - 2, w, ha="center", va="top", fontsize=8, color="black")
    legend = fig.add_subplot(grid[0, 1])
    legend.axis("off")
    legend.text(0, 0.5, "bar: S\nblack tick:\n  threshold\nred line:\n  detected at\ngrey dashes:\n  best frame,\n"
                        "  not detected\ngreen: said", fontsize=7, va="center")
    for k, r in enumerate(results):
        t_att = bundle.frame_time(r.window[0] + np.arange(len(r.aud_att)))  # long audio: the best window's frames
        ax = fig.add_subplot(grid[1 + k, 0], sharex=spec)
        for w, a, b in words:
            if w == r.keyword:
                ax.axvspan(a, b, color="tab:green", alpha=0.25, lw=0)
        ax.plot(t_att, r.aud_att, color="tab:blue", lw=1)
        ax.axvline(r.time_s, color="tab:red" if r.detected else "grey", ls="-" if r.detected else "--", lw=1.2)
        ax.set_ylim(-0.05, 1.1)
        ax.set_yticks([0, 1])
        ax.set_ylabel(r.keyword, rotation=0, ha="right", va="center", fontsize=9)
        ax.tick_params(labelbottom=k == rows - 1)
        bar = fig.add_subplot(grid[1 + k, 1])
        bar.barh([0], [r.score], color="tab:red" if r.detected else "lightgrey", height=0.6)
        bar.plot([r.threshold] * 2, [-0.45, 0.45], color="black", lw=1.5)
        bar.set_xlim(0, 1)
        bar.set_ylim(-0.5, 0.5)
        bar.set_yticks([])
        bar.set_xticks([0, 1] if k == rows - 1 else [])
        bar.text(0.02, 0, f"{r.score:.2f}", va="center", fontsize=7)
    fig.axes[-2].set_xlabel("time (s)")
    spec.set_xlim(0, len(samples) / fe.sample_rate)
    return fig
