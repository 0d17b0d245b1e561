"""The front door: :class:`Model`, one object that loads a bundle, enrols queries, detects and streams.

Why: the runtime's pieces (:class:`~vpkl.runtime.bundle.Bundle`,
:func:`~vpkl.runtime.queries.enrol`, :func:`~vpkl.runtime.detect.detect`,
:class:`~vpkl.runtime.stream.Spotter`) take each other as arguments; a user who wants "is this
word in that audio" should not have to wire them. A Model holds one bundle and one enrolled
query set (prepared for the bundle's scoring head once) and hands out any number of
independent streams over them, like faster-whisper's ``WhisperModel`` or openWakeWord's
``Model``. It adds no maths: every answer is the one the functions it calls give.

    import vpkl

    model = vpkl.Model()                                # the shipped digits bundle
    model.enrol("assets/examples/queries")              # a folder, image files, {keyword: [images]}
    for r in model.detect("utterance.wav"):             # one KeywordResult per keyword
        print(r.keyword, r.score, r.detected, r.time_s)
    stream = model.stream(window_s=3.0)                 # a Spotter; one per stream, any number at once
    for d in stream.run("long.wav"):                    # or stream.feed(chunk) ... stream.flush()
        print(d.keyword, d.time_s, d.score)
"""
from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from dataclasses import fields

import numpy as np
from PIL import Image

from .audio import as_samples, check_rate, resample
from .bundle import Bundle
from .demo import SHIPPED_BUNDLE
from .detect import KeywordResult, detect
from .errors import VpklInputError
from .localise import LOC_GATE_DB
from .images import preprocess
from .queries import QuerySet, enrol, folder_images, group_by_keyword
from .stream import Spotter, StreamConfig

_LOAD_OPTIONS = tuple(p for p in inspect.signature(Bundle.load).parameters if p not in ("cls", "path"))
_STREAM_OPTIONS = tuple(f.name for f in fields(StreamConfig))


class Model:
    """A loaded bundle and the queries enrolled on it.

    Args:
        bundle: a bundle folder (str or os.PathLike), a loaded :class:`Bundle`, or None for the
            shipped digits bundle (``vpkl.runtime.demo.SHIPPED_BUNDLE``).
        queries: optional, enrolled at once (anything :meth:`enrol` takes).
        threads, scorer, head_precision, **load_options: given to :meth:`Bundle.load` (threads: 0
            = every core; scorer: "auto", "native" or "onnx"; head_precision: "fp32", "bf16" or
            "int8"); not allowed with an already loaded bundle.
    Attributes:
        bundle: the :class:`Bundle`; queries: the enrolled :class:`QuerySet`, or None.
    Raises:
        VpklInputError: a bundle that does not load (named by path), an option Bundle.load does
            not take, options with a loaded bundle, bad queries.
    """

    def __init__(self, bundle=None, *, queries=None, threads: int = 0, scorer: str | None = None,
                 head_precision: str = "fp32", **load_options):
        if isinstance(bundle, Bundle):
            given = {"threads": threads != 0, "scorer": scorer is not None, "head_precision": head_precision != "fp32",
                     **{k: True for k in load_options}}
            if any(given.values()):
                raise VpklInputError(f"Model: {', '.join(k for k, v in given.items() if v)} given with an already "
                                     "loaded Bundle; pass them to Bundle.load, or pass the bundle's path instead")
            self.bundle = bundle
        else:
            unknown = sorted(set(load_options) - set(_LOAD_OPTIONS))
            if unknown:
                raise VpklInputError(f"Model: {', '.join(unknown)}: not an option of Bundle.load (it takes "
                                     f"{', '.join(_LOAD_OPTIONS)})")
            path = SHIPPED_BUNDLE if bundle is None else bundle
            self.bundle = Bundle.load(path, threads=threads, scorer=scorer, head_precision=head_precision,
                                      **load_options)
        self.queries: QuerySet | None = None
        if queries is not None:
            self.enrol(queries)

    def __repr__(self) -> str:
        kws = self.queries.keywords if self.queries is not None else "none enrolled"
        return f"vpkl.Model({self.bundle.path!r}, scorer {self.bundle.scorer.name}, queries: {kws})"

    @property
    def threshold(self) -> float:
        """The bundle's default detection threshold on S."""
        return self.bundle.threshold

    @property
    def keywords(self) -> list:
        """The enrolled keywords, in order ([] before :meth:`enrol`)."""
        return [] if self.queries is None else list(self.queries.keywords)

    def enrol(self, queries) -> QuerySet:
        """Embed query images (several of one keyword are averaged) and make them this model's queries.

        Args:
            queries: one of
                - a folder of ``{keyword}_{anything}.png|jpg`` images;
                - an image file, or a list of them (``{keyword}_...`` names give the keyword,
                  other names their stem, as ``vpkl detect --query``);
                - a mapping ``{keyword: image or [images]}``, each image a file path, a pillow
                  image, a pixel array ((H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA, uint8
                  0-255; both resized and normalised like a file), or an already preprocessed
                  (C, size, size) float32 network input;
                - a :class:`QuerySet` (prepared for this model's scorer if it is not already).
        Returns:
            The :class:`QuerySet`, prepared for the bundle's scorer once; it replaces the queries
            enrolled before (streams made before keep theirs).
        Raises:
            VpklInputError: a missing or unreadable file or folder, a badly named image in a
                folder, an empty mapping or keyword, an array of another shape or dtype.
        """
        if isinstance(queries, QuerySet):
            qs = queries if queries.prepared is not None and queries.prepared.scorer is self.bundle.scorer \
                else queries.prepare(self.bundle)
        elif isinstance(queries, (str, os.PathLike)):
            path = os.fspath(queries)
            if not os.path.exists(path):
                raise VpklInputError(f"{path}: no such query folder or image file")
            qs = enrol(self.bundle, folder_images(path) if os.path.isdir(path)
                       else group_by_keyword([path], strict=False))
        elif isinstance(queries, Mapping):
            qs = enrol(self.bundle, {str(kw): [self._image(kw, it) for it in _as_list(items)]
                                     for kw, items in queries.items()})
        elif isinstance(queries, (list, tuple)) and queries and all(isinstance(p, (str, os.PathLike)) for p in queries):
            qs = enrol(self.bundle, group_by_keyword([os.fspath(p) for p in queries], strict=False))
        else:
            raise VpklInputError(f"queries: got {type(queries).__name__}, expected a folder, image file(s), "
                                 "{keyword: [images]} or a QuerySet")
        self.queries = qs
        return qs

    def _image(self, keyword, item):
        """A query image as enrol takes it: a path, or a preprocessed (C, size, size) float32 array
        (pillow images and uint8 pixel arrays are resized and normalised as files are)."""
        if isinstance(item, (str, os.PathLike)):
            return os.fspath(item)
        cfg = self.bundle.image
        if isinstance(item, Image.Image):
            return preprocess(item, cfg)
        if not isinstance(item, np.ndarray):
            raise VpklInputError(f"query {keyword!r}: got {type(item).__name__}, expected an image path, a pillow "
                                 "image or an array")
        if item.shape == (cfg.channels, cfg.size, cfg.size) and item.dtype.kind == "f":
            return item.astype(np.float32)
        if item.dtype == np.uint8 and (item.ndim == 2 or (item.ndim == 3 and item.shape[2] in (3, 4))):
            return preprocess(Image.fromarray(item), cfg)
        raise VpklInputError(f"query {keyword!r}: image array of shape {item.shape} and dtype {item.dtype}; expected "
                             f"(H, W), (H, W, 3) or (H, W, 4) uint8, or a preprocessed ({cfg.channels}, {cfg.size}, "
                             f"{cfg.size}) float32")

    def _enrolled(self) -> QuerySet:
        if self.queries is None:
            raise VpklInputError("queries: none enrolled; call model.enrol(folder, files or {keyword: [images]}) "
                                 "first")
        return self.queries

    def detect(self, audio, threshold=None, sample_rate: int | None = None,
               loc_gate_db: float | None = LOC_GATE_DB) -> list[KeywordResult]:
        """Is each enrolled keyword spoken in ``audio``, and where? (:func:`vpkl.runtime.detect.detect`)

        Args:
            audio: a file path or an open binary file (any format, rate and channels soundfile
                reads), or (n,) / (n, channels) samples at ``sample_rate``.
            threshold: one float, a {keyword: float} dict, or None (the bundle's).
            sample_rate: the rate of an array, in Hz (resampled with soxr); None: the bundle's
                (``model.bundle.front_end.sample_rate``, 16 kHz here). Ignored for files, which
                carry their own.
            loc_gate_db: localise among the frames this many dB above the quiet level (3 dB,
                :mod:`vpkl.runtime.localise`); None: the paper's argmax over all frames.
        Returns:
            One :class:`KeywordResult` per enrolled keyword, in enrolment order: S, detected,
            the localised frame (50 per second) and its time in seconds, aud_att over the frames
            of its ``window`` (all N up to 10 s; longer audio: :mod:`vpkl.runtime.longaudio`).
        Raises:
            VpklInputError: nothing enrolled, unreadable or too short audio, a bad loc_gate_db.
        """
        name = os.fspath(audio) if isinstance(audio, (str, os.PathLike)) else "audio"
        sr = self.bundle.front_end.sample_rate
        if sample_rate is not None and not isinstance(audio, (str, os.PathLike)) and not hasattr(audio, "read"):
            x = as_samples(audio, check_rate(sample_rate, "sample_rate"), name)
            audio = resample(x, sample_rate, sr) if sample_rate != sr else x
        elif hasattr(audio, "read"):
            audio = as_samples(audio, sr, name)
        return detect(self.bundle, audio, self._enrolled(), threshold, name=name, loc_gate_db=loc_gate_db)

    def stream(self, threshold=None, vad=False, **stream_options) -> Spotter:
        """A new, independent stream over this model's bundle and queries.

        Any number may run at once (one per thread or per source); each is one stream and
        refuses concurrent use itself (see :class:`Spotter`).

        Args:
            threshold: one float, a {keyword: float} dict, or None (the bundle's).
            vad: speech gating (see :class:`Spotter`): False, True, or silero-vad's .onnx path.
            **stream_options: :class:`StreamConfig` fields (window_s, hop_s, min_window_s,
                lookahead_s, confirm, refractory_s, span_level, loc_gate_db; seconds of audio).
        Returns:
            A :class:`Spotter`: ``feed(chunk)`` / ``flush()``, or ``run(path, array or chunks)``.
        Raises:
            VpklInputError: nothing enrolled, an unknown option, impossible values.
        """
        unknown = sorted(set(stream_options) - set(_STREAM_OPTIONS))
        if unknown:
            raise VpklInputError(f"stream: {', '.join(unknown)}: not a stream option (they are "
                                 f"{', '.join(_STREAM_OPTIONS)})")
        return Spotter(self.bundle, self._enrolled(), threshold, StreamConfig(**stream_options), vad=vad)


def _as_list(items) -> list:
    """One image or a list of them -> a list (an array is one image, not a list of rows)."""
    return list(items) if isinstance(items, (list, tuple)) else [items]
