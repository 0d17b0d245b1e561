"""``vpkl detect``: is each query's keyword spoken in each audio file, and where (offline)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from vpkl.runtime.errors import VpklInputError

from .common import (AUDIO_HELP, THRESHOLD_HELP, add_bundle_args, add_query_args, load_bundle, query_images,
                     skipped)
from .common import threshold as bundle_threshold

DESCRIPTION = "Is the keyword of each query image spoken in each audio file, and where? One answer per keyword."

EPILOG = f"""\
The table, one per audio file, a row per keyword:
  score     S in [0, 1], the detection score: (1 + cos) / 2 of the query and the audio it attends to
  thr       the threshold; detected says YES when S >= thr
  at (s)    time_s: the centre of the localised frame, the argmax of aud_att over the frames of speech
            (those 3 dB or more above the quiet level of the audio scored; frames are 20 ms, 50 per
            second; at 16 kHz frame n is centred at 0.0175 + 0.02 n s)
  frame     n, that frame's index
For a keyword that was not detected, at and frame are in parentheses: where its query matches best,
not a detection. --json gives the same fields (keyword, score, detected, threshold, frame, time_s;
window, the frames [start, end) the answer came from: from the first sound to the end for up to
10 s of audio heard, the best 10 s window of longer audio, digital silence not counted (it is
cut out, aud_att 0 there); aud_att, one value in [0, 1] per frame of that window, with
--attention) in {{"audio", "results"}} per file; a file that cannot be used gives
{{"audio", "error"}} in its place, the others still get their results, and the exit code is 2.

{AUDIO_HELP}"""


def format_table(name: str, results) -> str:
    """Readable table of per-keyword results for one utterance (see EPILOG for the columns)."""
    lines = [name, f"  {'keyword':<10} {'score':>6} {'thr':>6}  {'detected':<8} {'at (s)':>8} {'frame':>6}"]
    for r in results:
        at, frame = (f"{r.time_s:.2f}", f"{r.frame}") if r.detected else (f"({r.time_s:.2f})", f"({r.frame})")
        lines.append(f"  {r.keyword:<10} {r.score:6.3f} {r.threshold:6.3f}  {'YES' if r.detected else 'no':<8} "
                     f"{at:>8} {frame:>6}")
    return "\n".join(lines)


def plot_paths(out: str, audio: list) -> list:
    """--plot OUT for each audio file: OUT itself for one file, OUT's stem + _{audio stem} for several."""
    if len(audio) == 1:
        return [out]
    stem, ext = os.path.splitext(out)
    return [f"{stem}_{os.path.splitext(os.path.basename(p))[0]}{ext}" for p in audio]


def _truth(manifest: str | None) -> dict:
    """{real path of audio: [(keyword, start_s, end_s)]} from a manifest, or {}."""
    if manifest is None:
        return {}
    from vpkl.evaluation.manifest import read_manifest
    return {os.path.realpath(e.audio): e.words for e in read_manifest(manifest)}


def _check_plots(out: str, plots: list, force: bool) -> None:
    """Before any work: matplotlib is there, --plot's suffix is a format it writes, its folder exists,
    the names differ, and nothing is overwritten without --force. Raises VpklInputError naming --plot."""
    from vpkl.runtime.plot import file_formats
    try:
        formats = file_formats()
    except VpklInputError as e:  # matplotlib missing: the line names the plot extra
        raise VpklInputError(f"--plot: {str(e).removeprefix('plot: ')}") from None
    if os.path.splitext(out)[1][1:].lower() not in formats:
        raise VpklInputError(f"--plot {out}: expected a file name ending in one of "
                             f"{', '.join('.' + f for f in formats)} (the image format)")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise VpklInputError(f"--plot {out}: the folder {folder} does not exist")
    if len(set(plots)) < len(plots):
        raise VpklInputError(f"--plot {out}: two audio files have the same name; plot them in separate runs")
    for p in plots:
        if os.path.isdir(p):
            raise VpklInputError(f"--plot {p}: is a folder, expected an image file name")
        if os.path.exists(p) and not force:
            raise VpklInputError(f"--plot {p}: already exists; pass --force to overwrite it")


def cmd_detect(a) -> int:
    from vpkl.runtime.audio import as_samples
    from vpkl.runtime.detect import detect
    from vpkl.runtime.progress import AudioProgress
    from vpkl.runtime.queries import enrol
    if a.attention and not a.json:
        raise VpklInputError("--attention: only with --json (the table has no room for per-frame aud_att)")
    if a.manifest is not None and a.plot is None:
        raise VpklInputError("--manifest: only with --plot (it gives the true words to draw)")
    plots = plot_paths(a.plot, a.audio) if a.plot else [None] * len(a.audio)
    if a.plot:
        _check_plots(a.plot, plots, a.force)
        from vpkl.runtime.plot import plot_detections
    truth = _truth(a.manifest)
    bundle = load_bundle(a)
    groups = query_images(a)
    queries = enrol(bundle, groups)
    note = skipped("detect", a, groups)  # the table names the keywords enrolled
    if note:
        print(note, file=sys.stderr)
    thr = bundle_threshold(a, bundle)
    out, failed = [], 0
    for path, plot in zip(a.audio, plots):
        shown = AudioProgress(f"vpkl detect: {path}")  # on stderr, for audio of a minute or more
        try:
            try:
                res = detect(bundle, path, queries, thr, name=path, progress=shown)
            finally:
                shown.close()
            if plot is not None:
                fig = plot_detections(bundle, as_samples(path, bundle.front_end.sample_rate, path), res,
                                      truth.get(os.path.realpath(path)), title=path)
                try:
                    fig.savefig(plot, dpi=100)
                except OSError as e:
                    raise VpklInputError(f"--plot {plot}: cannot write it ({e.strerror or e})") from None
        except VpklInputError as e:  # this file's error in its place; the others still get their results
            failed += 1
            print(f"vpkl: error: {e}", file=sys.stderr, flush=True)
            out.append({"audio": path, "error": str(e)})
            continue
        if a.json:
            out.append({"audio": path, "results": [r.to_dict(a.attention) for r in res]})
        else:
            print(format_table(path, res), flush=True)
    if a.json:
        print(json.dumps(out if len(out) > 1 else out[0], indent=2))
    return 2 if failed else 0


def add_parser(sub) -> None:
    d = sub.add_parser("detect", help="is the keyword of each query image spoken in the audio, and where?",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bundle_args(d)
    add_query_args(d)
    d.add_argument("audio", nargs="+", help="audio file(s): WAV, FLAC, OGG, MP3, ..., any rate, any channels")
    d.add_argument("--threshold", type=float, default=None, help=THRESHOLD_HELP)
    d.add_argument("--json", action="store_true", help="JSON output (one object per file; a list for several)")
    d.add_argument("--attention", action="store_true", help="with --json: include per-frame aud_att")
    d.add_argument("--plot", metavar="OUT.png", default=None,
                   help="draw the log-mel features with each keyword's aud_att, localised frame and S against the "
                        "threshold; the suffix picks the format (.png, .pdf, .svg, ...); several files: "
                        "OUT_{audio stem}.png; needs the plot extra")
    d.add_argument("--manifest", metavar="FILE", default=None,
                   help="with --plot: a JSON-lines manifest whose true words are drawn for the files it lists")
    d.add_argument("--force", action="store_true", help="overwrite existing --plot files")
    d.set_defaults(func=cmd_detect)
