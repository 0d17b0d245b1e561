"""A model bundle on disk: config.json + image, audio (causal and bidirectional) and head ONNX graphs.

The graphs and their inputs are described in :mod:`vpkl.export.onnx_export`.
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import warnings

import numpy as np
import onnxruntime as ort

from .audio import MAX_RATE, MIN_RATE
from .checks import check_choice, check_threads, check_threshold, shown
from .errors import VpklInputError
from .features import FrontEndConfig
from .images import ImageConfig
from .scorer import PRECISIONS as HEAD_PRECISIONS
from .providers import check_started, session_providers
from .scorer import make_scorer

FORMAT = "vpkl-bundle"
FORMAT_VERSION = 3  # 2: config.json holds the SHA-256 of each graph; 3: the audio branch split for streaming
GRAPH_FILES = ("image.onnx", "audio_causal.onnx", "audio_bidir.onnx", "head.onnx")
BUNDLE_FILES = ("config.json",) + GRAPH_FILES
OLD_BUNDLE_FILES = ("audio.onnx",)  # formats 1-2 (the whole audio branch in one graph)
CALIBRATION_FILES = ("calibration_image.json", "calibration_audio_causal.json")  # int8 bundles: `vpkl calibrate`
GRAPH_PRECISIONS = ("fp32", "fp16", "int8")  # of the image and audio graphs (config.json "precision")
_CONFIG_KEYS = ("preset", "front_end", "image", "embed_dim", "frame_rate", "threshold", "keywords", "sha256")


def graph_digests(folder: str) -> dict:
    """{graph file name: hex SHA-256 of its bytes} for the graphs in ``folder``."""
    out = {}
    for name in GRAPH_FILES:
        with open(os.path.join(folder, name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def _session(path: str, threads: int, providers: list | None = None) -> ort.InferenceSession:
    """One onnxruntime session for the graph at ``path``.

    ``providers``: a list checked by :func:`vpkl.runtime.providers.session_providers` (None: the
    CPU). Raises VpklInputError naming the graph when onnxruntime cannot load it, or naming
    ``providers`` when a requested execution provider did not start.
    """
    providers = providers or ["CPUExecutionProvider"]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        with warnings.catch_warnings():  # a provider that cannot start: check_started says so in one line
            if providers != ["CPUExecutionProvider"]:
                warnings.simplefilter("ignore")
            session = ort.InferenceSession(path, opts, providers=providers)
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
        raise VpklInputError(f"{path}: not a loadable ONNX graph ({str(e).splitlines()[0][:200]})") from None
    check_started(session, providers, path)
    return session


def _number(cfg_path: str, key: str, v, integer: bool = False, low: float = 0.0, open_low: bool = True,
            high: float = math.inf) -> float:
    """A config.json value that must be a finite (integer) number in (low, high] or [low, high]."""
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v <= high \
        and (v > low if open_low else v >= low) and (not integer or float(v).is_integer())
    if not ok:
        what = "a whole number" if integer else "a number"
        bound = f"{'>' if open_low else '>='} {low:g}" + (f" and <= {high:g}" if high < math.inf else "")
        raise VpklInputError(f"{cfg_path}: {key}: expected {what} {bound}, got {shown(v)}")
    return v


def check_config(config: dict, cfg_path: str) -> None:
    """Check config.json's values, which the graphs' SHA-256 does not cover, against each other
    and against what the model implies.

    The audio graphs take log-mel frames ``hop_length`` samples apart and their conv halves the
    rate (stride 2), so ``frame_rate`` must be ``sample_rate / (2 hop_length)``; the mel bands
    must lie below Nyquist (``fmax <= sample_rate / 2``); the front end and image settings must
    be those the checkpoint was trained with (``model`` repeats them, as export wrote it); the
    threshold must be a score in [0, 1]. An edited value would otherwise be accepted and change
    every result silently (a frame rate of 0 ended in ZeroDivisionError). The graph-facing
    sizes (n_mels, image size and channels, embed_dim) are checked against the graphs once they
    are loaded (:meth:`Bundle._check_graphs`).

    Raises:
        VpklInputError: naming ``cfg_path`` and the key.
    """
    fe, img = config["front_end"], config["image"]
    for key, d in (("front_end", fe), ("image", img)):
        if not isinstance(d, dict):
            raise VpklInputError(f"{cfg_path}: {key}: expected an object of settings, got {d!r}")
    model = config.get("model")
    if isinstance(model, dict):
        for key, d in (("front_end", fe), ("image", img)):
            if key in model and model[key] != d:
                diff = sorted(k for k in set(d) | set(model[key]) if d.get(k) != model[key].get(k))
                raise VpklInputError(f"{cfg_path}: {key}: settings do not match the model's own "
                                     f"(model.{key}) in {', '.join(diff)}; the graphs were trained with model.{key}")
    sr = _number(cfg_path, "front_end.sample_rate", fe.get("sample_rate"), True, MIN_RATE, False, MAX_RATE)
    hop = _number(cfg_path, "front_end.hop_length", fe.get("hop_length"), True)
    win = _number(cfg_path, "front_end.win_length", fe.get("win_length"), True)
    _number(cfg_path, "front_end.n_fft", fe.get("n_fft"), True, win, False)
    _number(cfg_path, "front_end.n_mels", fe.get("n_mels"), True)
    fmax = _number(cfg_path, "front_end.fmax", fe.get("fmax"), high=sr / 2)
    _number(cfg_path, "front_end.fmin", fe.get("fmin"), low=0.0, open_low=False, high=fmax)
    rate = _number(cfg_path, "frame_rate", config["frame_rate"])
    if not math.isclose(rate, sr / (2 * hop), rel_tol=1e-9):
        raise VpklInputError(f"{cfg_path}: frame_rate: {shown(rate)}, but the front end gives {sr / (2 * hop):g} "
                             f"audio frames per second (sample_rate {sr} / (2 x hop_length {hop}))")
    _number(cfg_path, "embed_dim", config["embed_dim"], True)
    check_threshold(config["threshold"], f"{cfg_path}: threshold")
    own = config.get("keyword_thresholds", {})
    if not isinstance(own, dict):
        raise VpklInputError(f"{cfg_path}: keyword_thresholds: expected {{keyword: threshold}}, got {own!r}")
    for k, v in own.items():
        check_threshold(v, f"{cfg_path}: keyword_thresholds: {k}")
    kws = config["keywords"]
    if not isinstance(kws, list) or not all(isinstance(k, str) for k in kws):
        raise VpklInputError(f"{cfg_path}: keywords: expected a list of names, got {kws!r}")
    check_choice(config.get("precision", "fp32"), GRAPH_PRECISIONS, f"{cfg_path}: precision")
    check_choice(img.get("mode"), ("L", "RGB"), f"{cfg_path}: image.mode")
    size = _number(cfg_path, "image.size", img.get("size"), True)
    _number(cfg_path, "image.resize", img.get("resize"), True, size, False)
    channels = 1 if img["mode"] == "L" else 3
    for key in ("mean", "std"):
        v = img.get(key)
        if not (isinstance(v, list) and len(v) == channels and all(
                isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x) for x in v)):
            raise VpklInputError(f"{cfg_path}: image.{key}: expected {channels} number(s) for mode "
                                 f"{img['mode']!r}, got {v!r}")
    if not all(x > 0 for x in img["std"]):
        raise VpklInputError(f"{cfg_path}: image.std: expected positive numbers, got {img['std']!r}")
    if "background" in img:
        _number(cfg_path, "image.background", img["background"], low=0.0, open_low=False, high=1.0)


class Bundle:
    """Loaded bundle: configuration plus one onnxruntime session per graph.

    Attributes:
        front_end: :class:`FrontEndConfig`; image: :class:`ImageConfig`;
        frame_rate: audio embeddings per second (50 for the shipped presets);
        threshold: default detection threshold on S; keyword_thresholds: {keyword: threshold}
        overriding it for some keywords (empty unless chosen per keyword by ``vpkl evaluate
        --target-fa-per-hour --per-keyword``); keywords: keyword names it was trained on;
        precision: "fp32", "fp16" or "int8" (the image and audio graphs; the head is always fp32);
        causal_dim: H, the size of the causal frames between the two audio graphs;
        state_shape: (layers, 1, hidden) of each of the causal graph's h and c states;
        scorer: the scoring head that runs (:mod:`vpkl.runtime.scorer`; ``scorer.name`` says which);
        providers: the onnxruntime execution providers the graphs' sessions run on, in order.
    """

    def __init__(self, path: str, config: dict, threads: int = 0, scorer: str | None = None,
                 head_precision: str = "fp32", providers: list | None = None):
        self.path = path
        self.config = config
        self.preset = config["preset"]
        self.front_end = FrontEndConfig.from_dict(config["front_end"])
        self.image = ImageConfig.from_dict(config["image"])
        self.embed_dim = int(config["embed_dim"])
        self.frame_rate = float(config["frame_rate"])
        self.threshold = float(config["threshold"])
        self.keyword_thresholds = {str(k): float(v) for k, v in config.get("keyword_thresholds", {}).items()}
        self.keywords = list(config["keywords"])
        self.precision = str(config.get("precision", "fp32"))
        self._image = _session(os.path.join(path, "image.onnx"), threads, providers)
        self._causal = _session(os.path.join(path, "audio_causal.onnx"), threads, providers)
        self._bidir = _session(os.path.join(path, "audio_bidir.onnx"), threads, providers)
        self._head = _session(os.path.join(path, "head.onnx"), threads, providers)
        self.providers = self._image.get_providers()
        self.scorer = make_scorer(self._head, scorer, head_precision, threads)

    @property
    def state_shape(self) -> tuple:
        """(layers, 1, hidden): the shape of each of the causal graph's h and c states."""
        return tuple(self._causal.get_inputs()[1].shape)

    @property
    def causal_dim(self) -> int:
        """H: the size of the causal frames passed from the causal to the bidirectional graph."""
        return self._bidir.get_inputs()[0].shape[2]

    @classmethod
    def load(cls, path: str, threads: int = 0, scorer: str | None = None, head_precision: str = "fp32",
             providers: list | None = None) -> "Bundle":
        """Open a bundle folder.

        Args:
            threads: onnxruntime intra-op threads and native head threads (0: all cores; more
                than this machine's cores are capped to its cores).
            scorer: "auto" (the native head if built, else head.onnx), "native" or "onnx";
                None: the ``VPKL_SCORER`` environment variable, else "auto".
            head_precision: the native head's "fp32", "bf16" or "int8" (:mod:`vpkl.runtime.scorer`).
            providers: onnxruntime execution providers for the graphs, as onnxruntime takes them
                (names or (name, options) pairs; :func:`vpkl.runtime.providers.provider_list` builds
                them by short name); None: the CPU. The CPU provider is appended when absent.
        Raises:
            VpklInputError: not a folder, a folder or config that may not be read (permission),
                a file missing, unreadable config, another format version, a config value that
                contradicts the others or the model (:func:`check_config`), a graph that
                onnxruntime cannot load, a graph that does not fit the config, or one whose bytes
                changed after export (SHA-256 in config.json); a thread count that is not a whole
                number >= 0, an unknown head precision (:mod:`vpkl.runtime.checks`); a provider
                that this onnxruntime does not offer (naming its package) or that fails to start.
        """
        threads = check_threads(threads)
        check_choice(head_precision, HEAD_PRECISIONS, "head_precision")
        providers = session_providers(providers)
        path = os.fspath(path)
        if not os.path.exists(path):
            raise VpklInputError(f"{path}: no such bundle folder")
        if not os.path.isdir(path):
            raise VpklInputError(f"{path}: is a file, expected a bundle folder (vpkl-export --out)")
        try:
            os.listdir(path)  # a folder we may not read would otherwise look like one missing its files
        except PermissionError:
            raise VpklInputError(f"{path}: permission denied: the bundle folder cannot be read") from None
        cfg_path = os.path.join(path, "config.json")
        if not os.path.isfile(cfg_path):
            raise VpklInputError(f"{path}: incomplete bundle, missing config.json")
        try:
            with open(cfg_path) as f:
                config = json.load(f)
        except PermissionError:
            raise VpklInputError(f"{cfg_path}: permission denied: the bundle's config cannot be read") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise VpklInputError(f"{cfg_path}: not readable JSON ({e})") from None
        except (ValueError, RecursionError):  # Python's 4300-digit integer limit; deep nesting
            raise VpklInputError(f"{cfg_path}: JSON that cannot be read (a number of over 4300 digits, "
                                 "or arrays nested too deeply)") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise VpklInputError(f"{cfg_path}: not a vpkl bundle config (expected \"format\": \"{FORMAT}\")")
        if config.get("format_version") != FORMAT_VERSION:
            raise VpklInputError(f"{cfg_path}: bundle format version {config.get('format_version')!r}; "
                                 f"this vpkl reads version {FORMAT_VERSION} (export the checkpoint again with "
                                 "this vpkl's vpkl-export)")
        missing = [f for f in BUNDLE_FILES if not os.path.isfile(os.path.join(path, f))]
        if missing:
            raise VpklInputError(f"{path}: incomplete bundle, missing {', '.join(missing)}")
        absent = [k for k in _CONFIG_KEYS if k not in config]
        if absent:
            raise VpklInputError(f"{cfg_path}: missing key{'s' * (len(absent) > 1)}: {', '.join(absent)}")
        check_config(config, cfg_path)
        try:
            bundle = cls(path, config, threads, scorer, head_precision, providers)
        except VpklInputError:
            raise  # a graph onnxruntime cannot load: the message names the graph
        except (TypeError, ValueError, KeyError) as e:
            raise VpklInputError(f"{cfg_path}: a value has the wrong type or is missing ({e})") from None
        bundle._check_graphs(cfg_path)
        bundle._check_digests(cfg_path)
        return bundle

    def _check_digests(self, cfg_path: str) -> None:
        """Each graph's SHA-256 must be the one export wrote: damage that leaves a graph loadable
        (changed weights) would otherwise give silently wrong scores."""
        want = self.config["sha256"]
        for name, digest in graph_digests(self.path).items():
            if not isinstance(want, dict) or want.get(name) != digest:
                raise VpklInputError(f"{os.path.join(self.path, name)}: its SHA-256 is not the one in {cfg_path}; "
                                     "the graph changed after export (damaged or replaced): re-export the bundle")

    def _check_graphs(self, cfg_path: str) -> None:
        """The config must describe the graphs (image channels and size, n_mels, D), the two audio
        graphs must fit each other, and the front-end sizes must be integers; raises
        VpklInputError naming the graph or config.json otherwise."""
        fe = self.front_end
        if not (isinstance(fe.sample_rate, int) and fe.sample_rate > 0 and isinstance(fe.win_length, int)
                and isinstance(fe.hop_length, int) and fe.hop_length > 0):
            raise VpklInputError(f"{cfg_path}: front-end sizes must be positive integers, got {fe}")
        inputs = lambda sess: ([i.name for i in sess.get_inputs()], [i.shape for i in sess.get_inputs()])
        want = {
            "image.onnx": (self._image, ["images"], [self.image.channels, self.image.size, self.image.size],
                           lambda shapes: shapes[0][1:]),
            "audio_causal.onnx": (self._causal, ["features", "h0", "c0"], [fe.n_mels], lambda shapes: shapes[0][2:]),
            "audio_bidir.onnx": (self._bidir, ["causal"], None, None),
            "head.onnx": (self._head, ["query", "audio", "n_valid"], None, None),
        }
        for graph, (sess, names, shape, got) in want.items():
            got_names, got_shapes = inputs(sess)
            if got_names != names:
                raise VpklInputError(f"{os.path.join(self.path, graph)}: inputs {got_names}, expected {names} "
                                     "(a graph of another kind?); re-export the bundle")
            if shape is not None and list(got(got_shapes)) != shape:
                raise VpklInputError(f"{os.path.join(self.path, graph)}: input sizes {list(got(got_shapes))} do not "
                                     f"match {cfg_path} ({shape}); re-export the bundle")
        h = self._causal.get_outputs()[0].shape[2]
        if h != self.causal_dim or self.state_shape[2:] != (h,):
            raise VpklInputError(f"{os.path.join(self.path, 'audio_causal.onnx')}: gives frames of size {h}, but "
                                 f"audio_bidir.onnx takes {self.causal_dim}; re-export the bundle")
        d = self._bidir.get_outputs()[0].shape[2]
        if d != self.embed_dim:
            raise VpklInputError(f"{os.path.join(self.path, 'audio_bidir.onnx')}: frames of size {d}, but {cfg_path} "
                                 f"says embed_dim {self.embed_dim}; re-export the bundle")

    def frame_time(self, frame) -> np.ndarray | float:
        """Centre time in seconds of audio embedding ``frame`` (0-based); see
        :meth:`FrontEndConfig.embedding_centre`."""
        return self.front_end.embedding_centre(frame) / self.front_end.sample_rate

    def embed_images(self, images: np.ndarray) -> np.ndarray:
        """(B, C, H, W) float32 preprocessed images -> (B, M, D) float32 pixel embeddings."""
        return self._image.run(None, {"images": np.ascontiguousarray(images, np.float32)})[0]

    def embed_features(self, feats: np.ndarray) -> np.ndarray:
        """(T, n_mels) float32 features of a whole utterance -> (N, D) float32 frame embeddings, N = T // 2 (>= 1).

        The causal graph over all frames (a zero frame of conv padding each side, zero states),
        then the bidirectional graph over all of it: the PyTorch audio branch exactly.
        """
        pad = np.zeros((1, feats.shape[1]), np.float32)
        causal, _, _ = self.encode_causal(np.concatenate([pad, feats, pad]), *self.initial_state())
        return self.encode_bidirectional(causal)

    def initial_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Zero (h, c) states of the causal graph's LSTMs, each ``state_shape`` float32."""
        return np.zeros(self.state_shape, np.float32), np.zeros(self.state_shape, np.float32)

    def encode_causal(self, feats: np.ndarray, h: np.ndarray, c: np.ndarray):
        """The causal part of the audio branch on a piece of a stream.

        Args:
            feats: (2k + 2, n_mels) float32 log-mel frames 2 n0 - 1 .. 2 n0 + 2k for embeddings
                n0 .. n0 + k - 1 (conv k4, s2; the caller supplies the zero padding frames).
            h, c: LSTM states, ``state_shape`` (from :meth:`initial_state` or the previous call).
        Returns:
            ((k, H) float32 causal frames, h, c after them).
        """
        out, h, c = self._causal.run(None, {"features": np.ascontiguousarray(feats[None], np.float32),
                                            "h0": h, "c0": c})
        return out[0], h, c

    def encode_bidirectional(self, causal: np.ndarray) -> np.ndarray:
        """(N, H) float32 causal frames -> (N, D) float32 frame embeddings (the BiLSTMs run over all N)."""
        return self._bidir.run(None, {"causal": np.ascontiguousarray(causal[None], np.float32)})[0][0]

    def score(self, query: np.ndarray, audio: np.ndarray, n_valid: int | None = None):
        """Localising attention for Q queries against one utterance, with :attr:`scorer`.

        Args:
            query: a :class:`~vpkl.runtime.queries.QuerySet` (from ``enrol``: prepared for this
                scorer once), or (Q, M, D) float32 (prepared on each call); audio: (N, D) float32;
                n_valid: valid frames (default N).
        Returns:
            S (Q,) in [0, 1]; aud_att (Q, N), 0 past n_valid; im_att (Q, M). All float32.
        Raises:
            VpklInputError: shapes that do not fit, NaN or Inf (native scorer).
        """
        return self.scorer.score(query, audio, n_valid)
