"""What the runtime commands share: the bundle and provider flags, the threshold, query enrolment,
and turning the runtime's argument names into the flags a user typed."""
from __future__ import annotations

import argparse

import json
import os
import re
import sys
import textwrap
from contextlib import contextmanager

from vpkl.runtime.errors import VpklInputError

SHIPPED_BUNDLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "digits")

AUDIO_HELP = textwrap.fill(
    "Audio: any file libsndfile reads (WAV, FLAC, OGG/Vorbis, MP3 with libsndfile 1.1 or later as in soundfile's "
    "wheels, AIFF, ...), any sample rate (resampled to the bundle's 16 kHz with soxr), channels averaged. Audio "
    "recorded below 16 kHz (8 kHz telephone speech, say) has no energy in the upper mel bands (above 4 kHz at "
    "8 kHz): a model trained on 16 kHz speech loses accuracy on it, the shipped digits model too (it learnt from "
    "8 kHz speech resampled to 16 kHz, but with noise over the whole band).", 100)


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser, but a usage error is one line (``vpkl detect: error: ...``; ``--help``
    still shows the usage), exit code 2, like every other refusal of vpkl's."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _shipped_threshold() -> str:
    try:
        with open(os.path.join(SHIPPED_BUNDLE, "config.json")) as f:
            return f"{float(json.load(f)['threshold']):.3f}"
    except (OSError, ValueError, KeyError, TypeError):
        return "?"


THRESHOLD_HELP = (f"detection threshold on S, a score in [0, 1]; a keyword is detected when S >= it "
                  f"(default: the bundle's own, {_shipped_threshold()} for the shipped digits bundle)")


@contextmanager
def flags(mapping: dict):
    """Re-raise a VpklInputError about one of the runtime's arguments (its message starts with the
    name, ``hop_s: ...``) with the names replaced by the flags the user typed (``--hop-ms``): all
    of them before the first colon, and in the rest only names with an underscore (``window_s``),
    which no plain word has. Other errors (a file, a bundle) pass unchanged."""
    try:
        yield
    except VpklInputError as e:
        msg = str(e)
        names = "|".join(re.escape(f) for f in mapping)
        if not re.match(rf"({names})[ :]", msg):
            raise
        head, colon, body = msg.partition(":")
        for field, flag in mapping.items():
            word = rf"(?<![\w-]){re.escape(field)}(?![\w-])"
            head = re.sub(word, flag, head)
            if "_" in field:
                body = re.sub(word, flag, body)
        raise VpklInputError(head + colon + body) from None


def add_scorer_args(p) -> None:
    """--scorer and --head-precision (the scoring head)."""
    from vpkl.runtime.scorer import PRECISIONS, SCORERS
    p.add_argument("--scorer", choices=SCORERS, default=None,
                   help="scoring head: the fused native kernel or the bundle's head.onnx (default: $VPKL_SCORER, "
                        "else auto = native when built); `vpkl info` shows which runs")
    p.add_argument("--head-precision", choices=PRECISIONS, default="fp32",
                   help="native head precision (default fp32; bf16/int8: faster with many queries)")


def add_provider_args(p) -> None:
    """--provider and its options (onnxruntime execution providers, :mod:`vpkl.runtime.providers`)."""
    from vpkl.runtime.providers import PROVIDERS
    p.add_argument("--provider", choices=list(PROVIDERS), default="cpu",
                   help="onnxruntime execution provider for the graphs (default cpu); cuda and tensorrt need the "
                        "onnxruntime-gpu package, tensorrt-rtx onnxruntime-trt-rtx; the native head stays on the CPU")
    p.add_argument("--fp16", action="store_true", help="with --provider tensorrt: let TensorRT use fp16 kernels")
    p.add_argument("--engine-cache", metavar="DIR", default=None,
                   help="with --provider tensorrt or tensorrt-rtx: keep built engines in DIR and reuse them")


def add_bundle_args(p) -> None:
    """--bundle (default: the shipped digits bundle), the scoring head and the execution provider."""
    p.add_argument("--bundle", default=SHIPPED_BUNDLE, metavar="DIR",
                   help="model bundle folder (vpkl-export; default: the shipped digits bundle)")
    add_scorer_args(p)
    add_provider_args(p)


def providers(a) -> list:
    """onnxruntime's provider list for --provider, --fp16 and --engine-cache, checked against this
    onnxruntime (:mod:`vpkl.runtime.providers`); errors name the flags."""
    from vpkl.runtime.providers import provider_list, session_providers
    name = getattr(a, "provider", "cpu")
    with flags({"provider": "--provider", "fp16": "--fp16", "cache_dir": "--engine-cache",
                "providers": f"--provider {name}"}):
        return session_providers(provider_list(name, getattr(a, "fp16", False), getattr(a, "engine_cache", None)))


def load_bundle(a):
    """The bundle of ``a.bundle`` with the scorer and provider flags (defaults where a command has none)."""
    from vpkl.runtime.bundle import Bundle
    chosen = providers(a)
    with flags({"providers": f"--provider {getattr(a, 'provider', 'cpu')}"}):  # a provider that did not start
        return Bundle.load(a.bundle, scorer=getattr(a, "scorer", None),
                           head_precision=getattr(a, "head_precision", "fp32"), providers=chosen)


def threshold(a, bundle) -> float | None:
    """``--threshold`` checked by the runtime's one rule (:mod:`vpkl.runtime.checks`), or None: the
    bundle's own, per keyword where its config.json has ``keyword_thresholds`` (the runtime
    resolves it). Raises VpklInputError naming the flag."""
    from vpkl.runtime.checks import check_threshold
    return None if a.threshold is None else check_threshold(a.threshold, "--threshold")


def add_query_args(p) -> None:
    p.add_argument("--query", action="append", metavar="IMAGE",
                   help="query image, repeat for several; {keyword}_{anything}.png files of one keyword are "
                        "averaged, other names use the whole stem as the keyword (give --query or --queries)")
    p.add_argument("--queries", metavar="DIR",
                   help="folder of {keyword}_{anything}.png/.jpg/.jpeg images; other files are skipped and listed "
                        "on stderr")


def query_images(a) -> dict:
    """{keyword: [image paths]} from --query or --queries.

    Raises:
        VpklInputError: neither or both flags, or what :func:`folder_images` refuses.
    """
    from vpkl.runtime.queries import folder_images, group_by_keyword
    if (a.query is None) == (a.queries is None):
        raise VpklInputError("--query/--queries: give --query IMAGE (repeatable) or --queries DIR, one of the two")
    return group_by_keyword(a.query, strict=False) if a.query else folder_images(a.queries)


def enrolled(command: str, groups: dict) -> str:
    """The stderr line saying what was enrolled: keywords, and images per keyword."""
    n = sum(len(v) for v in groups.values())
    return (f"vpkl {command}: {len(groups)} keyword{'s' * (len(groups) != 1)} from {n} image{'s' * (n != 1)}: "
            + ", ".join(f"{k} ({len(v)})" for k, v in groups.items()))


def skipped(command: str, a, groups: dict) -> str | None:
    """The stderr line naming the files of a --queries folder that are not query images, or None."""
    if a.queries is None:
        return None
    used = {os.path.basename(p) for v in groups.values() for p in v}
    names = [f + "/" * os.path.isdir(os.path.join(a.queries, f)) for f in sorted(os.listdir(a.queries))
             if f not in used]
    return (f"vpkl {command}: skipped in {a.queries} (not {{keyword}}_{{anything}}.png/.jpg/.jpeg images): "
            f"{', '.join(names)}") if names else None
