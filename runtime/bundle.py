"""A model bundle on disk: config.json + image/audio/head ONNX graphs, run with onnxruntime."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import onnxruntime as ort

from .errors import VpklInputError
from .features import FrontEndConfig
from .images import ImageConfig

FORMAT = "vpkl-bundle"
FORMAT_VERSION = 2  # 2: config.json holds the SHA-256 of each graph
GRAPH_FILES = ("image.onnx", "audio.onnx", "head.onnx")
BUNDLE_FILES = ("config.json",) + GRAPH_FILES
_CONFIG_KEYS = ("preset", "front_end", "image", "embed_dim", "frame_rate", "threshold", "keywords", "sha256")


def graph_digests(folder: str) -> dict:
    """{graph file name: hex SHA-256 of its bytes} for the three graphs in ``folder``."""
    out = {}
    for name in GRAPH_FILES:
        with open(os.path.join(folder, name), "rb") as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def _session(path: str, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
        raise VpklInputError(f"{path}: not a loadable ONNX graph ({str(e).splitlines()[0][:200]})") from None


class Bundle:
    """Loaded bundle: configuration plus three onnxruntime sessions.

    Attributes:
        front_end: :class:`FrontEndConfig`; image: :class:`ImageConfig`;
        frame_rate: audio embeddings per second (50 for the shipped presets);
        threshold: default detection threshold on S; keywords: keyword names it was trained on.
    """

    def __init__(self, path: str, config: dict, threads: int = 0):
        self.path = path
        self.config = config
        self.preset = config["preset"]
        self.front_end = FrontEndConfig.from_dict(config["front_end"])
        self.image = ImageConfig.from_dict(config["image"])
        self.embed_dim = int(config["embed_dim"])
        self.frame_rate = float(config["frame_rate"])
        self.threshold = float(config["threshold"])
        self.keywords = list(config["keywords"])
        self._image = _session(os.path.join(path, "image.onnx"), threads)
        self._audio = _session(os.path.join(path, "audio.onnx"), threads)
        self._head = _session(os.path.join(path, "head.onnx"), threads)

    @classmethod
    def load(cls, path: str, threads: int = 0) -> "Bundle":
        """Open a bundle folder.

        Args:
            threads: onnxruntime intra-op threads (0: onnxruntime's default).
        Raises:
            VpklInputError: not a folder, a file missing, unreadable config, another format
                version, a graph that onnxruntime cannot load, a graph that does not fit the
                config, or one whose bytes changed after export (SHA-256 in config.json).
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise VpklInputError(f"{path}: no such bundle folder")
        if not os.path.isdir(path):
            raise VpklInputError(f"{path}: is a file, expected a bundle folder (vpkl-export --out)")
        missing = [f for f in BUNDLE_FILES if not os.path.isfile(os.path.join(path, f))]
        if missing:
            raise VpklInputError(f"{path}: incomplete bundle, missing {', '.join(missing)}")
        cfg_path = os.path.join(path, "config.json")
        try:
            with open(cfg_path) as f:
                config = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise VpklInputError(f"{cfg_path}: not readable JSON ({e})") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise VpklInputError(f"{cfg_path}: not a vpkl bundle config (expected \"format\": \"{FORMAT}\")")
        if config.get("format_version") != FORMAT_VERSION:
            raise VpklInputError(f"{cfg_path}: bundle format version {config.get('format_version')!r}; "
                                 f"this vpkl reads version {FORMAT_VERSION} (re-export the checkpoint)")
        absent = [k for k in _CONFIG_KEYS if k not in config]
        if absent:
            raise VpklInputError(f"{cfg_path}: missing keys {', '.join(absent)}")
        try:
            bundle = cls(path, config, threads)
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
        """The config must describe the graphs (image channels and size, n_mels, D) and hold integer
        front-end sizes; raises VpklInputError naming config.json otherwise."""
        fe = self.front_end
        if not (isinstance(fe.sample_rate, int) and fe.sample_rate > 0 and isinstance(fe.win_length, int)
                and isinstance(fe.hop_length, int) and fe.hop_length > 0):
            raise VpklInputError(f"{cfg_path}: front-end sizes must be positive integers, got {fe}")
        want = {
            "image.onnx": (["images"], [self.image.channels, self.image.size, self.image.size],
                           [i.name for i in self._image.get_inputs()], self._image.get_inputs()[0].shape[1:]),
            "audio.onnx": (["features"], [fe.n_mels], [i.name for i in self._audio.get_inputs()],
                           self._audio.get_inputs()[0].shape[2:]),
            "head.onnx": (["query", "audio", "n_valid"], None, [i.name for i in self._head.get_inputs()], None),
        }
        for graph, (names, shape, got_names, got_shape) in want.items():
            if got_names != names:
                raise VpklInputError(f"{os.path.join(self.path, graph)}: inputs {got_names}, expected {names} "
                                     "(a graph of another kind?); re-export the bundle")
            if shape is not None and list(got_shape) != shape:
                raise VpklInputError(f"{os.path.join(self.path, graph)}: input sizes {list(got_shape)} do not "
                                     f"match {cfg_path} ({shape}); re-export the bundle")
        d = self._audio.get_outputs()[0].shape[2]
        if d != self.embed_dim:
            raise VpklInputError(f"{os.path.join(self.path, 'audio.onnx')}: frames of size {d}, but {cfg_path} "
                                 f"says embed_dim {self.embed_dim}; re-export the bundle")

    def frame_time(self, frame) -> np.ndarray | float:
        """Centre time in seconds of audio embedding ``frame`` (0-based); see
        :meth:`FrontEndConfig.embedding_centre`."""
        return self.front_end.embedding_centre(frame) / self.front_end.sample_rate

    def embed_images(self, images: np.ndarray) -> np.ndarray:
        """(B, C, H, W) float32 preprocessed images -> (B, M, D) float32 pixel embeddings."""
        return self._image.run(None, {"images": np.ascontiguousarray(images, np.float32)})[0]

    def embed_features(self, feats: np.ndarray) -> np.ndarray:
        """(T, n_mels) float32 features -> (N, D) float32 frame embeddings, N = T // 2 (>= 1)."""
        return self._audio.run(None, {"features": np.ascontiguousarray(feats[None], np.float32)})[0][0]

    def score(self, query: np.ndarray, audio: np.ndarray, n_valid: int | None = None):
        """Localising attention for Q queries against one utterance.

        Args:
            query: (Q, M, D) float32; audio: (N, D) float32; n_valid: valid frames (default N).
        Returns:
            S (Q,) in [0, 1]; aud_att (Q, N), 0 past n_valid; im_att (Q, M). All float32.
        """
        n = audio.shape[0] if n_valid is None else int(n_valid)
        s, a, i = self._head.run(None, {"query": np.ascontiguousarray(query, np.float32),
                                        "audio": np.ascontiguousarray(audio, np.float32),
                                        "n_valid": np.array([n], np.int64)})
        return s, a, i
