"""int8 bundles: `vpkl calibrate` quantises an fp32 bundle with onnxruntime's quantization tools.

- ``image.onnx``: static QDQ (int8 weights per channel, uint8 activations), activation ranges
  calibrated (MinMax) on real query images;
- ``audio_causal.onnx``: static QDQ for the conv and the MLP's MatMuls, calibrated on real
  utterances run through it whole (as offline), then dynamic int8 for the four LSTMs (static
  QDQ has no LSTM; onnxruntime's DynamicQuantizeLSTM quantises its weights and, per call, its
  inputs);
- ``audio_bidir.onnx``: dynamic int8 (the BiLSTMs are all its weights);
- ``head.onnx``: float32 (no weights; its min-max normalisation and argmax need the resolution).

The activation ranges are written into the new bundle as ``calibration_*.json`` (onnxruntime's
calibration cache), so ``--calibration-from`` can requantise without running the data again.

Every fifth utterance of the audio folder is held out of calibration; :func:`compare_bundles`
measures on those what int8 costs against fp32 (scores, decisions, localised frames).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile

import numpy as np

from vpkl.export.folders import check_out_dir
from vpkl.runtime.audio import read_audio
from vpkl.runtime.bundle import BUNDLE_FILES, CALIBRATION_FILES, Bundle, graph_digests
from vpkl.runtime.detect import require_one_frame
from vpkl.runtime.errors import VpklInputError
from vpkl.runtime.features import features
from vpkl.runtime.images import read_image
from vpkl.runtime.queries import IMAGE_SUFFIXES

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
STATIC_OPS = {"image.onnx": ["Conv", "MatMul", "Gemm"], "audio_causal.onnx": ["Conv", "MatMul", "Gemm"]}


def _files(folder: str, suffixes: tuple, what: str, flag: str) -> list[str]:
    if not os.path.isdir(folder):
        raise VpklInputError(f"{flag} {folder}: {'no such folder' if not os.path.exists(folder) else 'not a folder'}; "
                             f"expected a folder of {what}")
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if os.path.splitext(f)[1].lower() in suffixes and not f.startswith("."))
    if not files:
        raise VpklInputError(f"{flag} {folder}: holds no {what} ({', '.join(suffixes)})")
    return files


class _Feeds:
    """onnxruntime CalibrationDataReader over a list of input dicts."""

    def __init__(self, feeds: list[dict]):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def calibration_feeds(bundle: Bundle, audio: list[str], images: list[str]) -> dict:
    """Real inputs for each statically quantised graph: {graph file: [input dicts]}.

    Raises:
        VpklInputError: an unreadable or too short audio file, or a file that is not an image
            (the message names it).
    """
    imgs = np.stack([read_image(f, bundle.image) for f in images])
    causal = []
    pad = np.zeros((1, bundle.front_end.n_mels), np.float32)
    for f in audio:
        x = read_audio(f, bundle.front_end.sample_rate)
        feats = features(require_one_frame(bundle, x, f), bundle.front_end, f)
        h, c = bundle.initial_state()
        causal.append({"features": np.concatenate([pad, feats, pad])[None], "h0": h, "c0": c})
    return {"image.onnx": [{"images": imgs[i:i + 16]} for i in range(0, len(imgs), 16)],
            "audio_causal.onnx": causal}


def quantize_graph(src: str, dst: str, feeds: list[dict] | None, cache: str | None) -> None:
    """Quantise one graph file (see the module docstring for which way each graph is done)."""
    name = os.path.basename(dst)
    logging.disable(logging.WARNING)  # the tools log advice (pre-processing, "already quantized?") on the root logger
    try:
        _quantize(src, dst, name, feeds, cache)
    finally:
        logging.disable(logging.NOTSET)


def _quantize(src: str, dst: str, name: str, feeds: list[dict] | None, cache: str | None) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    with tempfile.TemporaryDirectory(prefix="vpkl-calibrate-") as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        if name in STATIC_OPS:
            static = os.path.join(tmp, "static.onnx")
            quantize_static(pre, static, _Feeds(feeds or []), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=STATIC_OPS[name], calibration_cache_path=cache)
            pre = static
        if name.startswith("audio"):
            quantize_dynamic(pre, dst, weight_type=QuantType.QInt8, op_types_to_quantize=["LSTM"])
        else:
            shutil.copy(pre, dst)


def calibrate_bundle(bundle_dir: str, audio_dir: str, images_dir: str, out_dir: str, force: bool = False,
                     max_utterances: int = 200, calibration_from: str | None = None) -> dict:
    """Write an int8 copy of an fp32 bundle, calibrated on real utterances and query images.

    Args:
        bundle_dir: an fp32 bundle (``vpkl-export`` without ``--fp16``).
        audio_dir: a folder of utterances (.wav/.flac/.ogg), the first ``max_utterances`` used.
        images_dir: a folder of query images (.png/.jpg) of the kind the bundle expects.
        out_dir: the int8 bundle to write (atomically: nothing is left half-written).
        calibration_from: a folder holding ``calibration_*.json`` of an earlier run: their
            ranges are used and the data is not run again (the folders are still checked).
    Returns:
        {"graphs": {file: [fp32 bytes, int8 bytes]}, "utterances": n used, "images": n used,
        "held_out": [audio files not used for calibration: every fifth of the folder]}.
    Raises:
        VpklInputError: a bundle that is not fp32 (already quantised or fp16), an empty or
            unreadable folder or file, an existing ``out_dir`` without ``force``.
    """
    bundle = Bundle.load(bundle_dir)
    if bundle.precision != "fp32":
        raise VpklInputError(f"{bundle_dir}: is already an {bundle.precision} bundle; calibrate the fp32 bundle "
                             "it was made from")
    if max_utterances < 1:
        raise VpklInputError(f"--max-utterances: expected a positive integer, got {max_utterances}")
    check_out_dir(out_dir, [bundle_dir], force)
    every = _files(audio_dir, AUDIO_SUFFIXES, "audio files", "--audio")
    held_out = every[4::5]
    audio = [f for i, f in enumerate(every) if i % 5 != 4][:max_utterances] or every[:1]
    images = _files(images_dir, IMAGE_SUFFIXES, "images", "--images")
    caches = {}
    if calibration_from is not None:
        for g in STATIC_OPS:
            c = os.path.join(calibration_from, f"calibration_{g[:-5]}.json")
            if not os.path.isfile(c):
                raise VpklInputError(f"--calibration-from {calibration_from}: no {os.path.basename(c)} in it "
                                     "(a folder written by vpkl calibrate)")
            caches[g] = c
    feeds = calibration_feeds(bundle, audio, images)
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".vpkl-calibrate-", dir=parent)
    try:
        sizes = {}
        for g in BUNDLE_FILES[1:]:
            src, dst = os.path.join(bundle_dir, g), os.path.join(tmp, g)
            if g == "head.onnx":
                shutil.copy(src, dst)
            else:
                cache = os.path.join(tmp, f"calibration_{g[:-5]}.json") if g in STATIC_OPS else None
                if g in caches:
                    shutil.copy(caches[g], cache)
                quantize_graph(src, dst, feeds.get(g), cache)
            sizes[g] = [os.path.getsize(src), os.path.getsize(dst)]
        cfg = dict(bundle.config, precision="int8", sha256=graph_digests(tmp),
                   quantization={"image.onnx": "static QDQ (Conv, MatMul), int8 weights per channel",
                                 "audio_causal.onnx": "static QDQ (Conv, MatMul) + dynamic int8 LSTM",
                                 "audio_bidir.onnx": "dynamic int8 LSTM", "head.onnx": "float32",
                                 "calibration": {"utterances": len(audio), "images": len(images)}})
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        Bundle.load(tmp)  # loads and fits its config
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(out_dir, 0o777 & ~umask)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    assert set(os.listdir(out_dir)) <= set(BUNDLE_FILES) | set(CALIBRATION_FILES)
    return {"graphs": sizes, "utterances": len(audio), "images": len(images), "held_out": held_out}


def compare_bundles(reference: Bundle, other: Bundle, audio: list[str], images: list[str]) -> dict:
    """What ``other`` (int8) costs against ``reference`` (fp32) on real inputs, no labels needed.

    Each image is its own query; each utterance is scored by both bundles at the reference's
    threshold. Returns {"utterances", "pairs", "max_abs_dS", "mean_abs_dS", "decisions_agree"
    (share of pairs with the same S >= threshold decision), "frame_same" (share of pairs whose
    argmax frame of aud_att is the same)}.
    """
    from vpkl.runtime.detect import detect
    from vpkl.runtime.queries import enrol
    groups = {os.path.basename(f): [f] for f in images}
    qa, qb = enrol(reference, groups), enrol(other, groups)
    ds, same_det, same_frame = [], 0, 0
    for f in audio:
        ra, rb = detect(reference, f, qa, name=f), detect(other, f, qb, reference.threshold, name=f)
        for x, y in zip(ra, rb):
            ds.append(abs(x.score - y.score))
            same_det += x.detected == y.detected
            same_frame += x.frame == y.frame
    n = len(ds)
    return {"utterances": len(audio), "pairs": n, "max_abs_dS": max(ds) if n else float("nan"),
            "mean_abs_dS": float(np.mean(ds)) if n else float("nan"),
            "decisions_agree": same_det / n if n else float("nan"), "frame_same": same_frame / n if n else float("nan")}
