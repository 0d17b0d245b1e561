"""int8 bundles: `vpkl calibrate` quantises an fp32 bundle with onnxruntime's quantization tools.

- ``image.onnx``: static QDQ (int8 weights per channel, uint8 activations), activation ranges
  calibrated (MinMax) on real query images;
- static QDQ weights use 7 of their 8 bits (``reduce_range``): on x86 CPUs without VNNI (AVX2,
  AVX-512F) onnxruntime multiplies uint8 activations by int8 weights with an instruction whose
  16-bit pair sums saturate; with full-range weights the image branch departed from fp32 by 31%
  (relative error of its embeddings) on such a CPU and by 2.4% with those kernels switched off;
  with 7-bit weights by 2.8% on every CPU;
- ``audio_causal.onnx``: static QDQ for the conv and the MLP's MatMuls, calibrated on real
  utterances run through it whole (as offline), then dynamic int8 for the four LSTMs (static
  QDQ has no LSTM; onnxruntime's DynamicQuantizeLSTM quantises its weights and, per call, its
  inputs);
- ``audio_bidir.onnx``: dynamic int8 (the BiLSTMs are all its weights);
- ``head.onnx``: float32 (no weights; its min-max normalisation and argmax need the resolution).

The activation ranges are written into the new bundle as ``calibration_*.json`` (onnxruntime's
calibration cache), so ``--calibration-from`` can requantise without running the data again.

Every fifth utterance and image is held out of calibration; :func:`compare_bundles` measures on
those what int8 costs against fp32 (scores, decisions, localised frames), and ``vpkl calibrate``
warns and exits 1 when the cost is beyond ``TOLERANCE`` (data of the wrong kind, say: held-out
data of the same wrong kind cannot show it, so calibrate on what the bundle will see).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile

import numpy as np

from vpkl.export.folders import building, check_out_dir
from vpkl.runtime.audio import read_audio
from vpkl.runtime.bundle import BUNDLE_FILES, CALIBRATION_FILES, Bundle, graph_digests
from vpkl.runtime.detect import require_one_frame
from vpkl.runtime.errors import VpklInputError
from vpkl.runtime.features import features
from vpkl.runtime.images import read_image
from vpkl.runtime.queries import IMAGE_SUFFIXES

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
TOLERANCE = {"max_abs_dS": 0.05, "decisions_agree": 0.97,  # int8 against fp32 on held-out data
             "f1_drop": 0.01}                                # with a labelled manifest: the 1-point target
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
                            reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=STATIC_OPS[name], calibration_cache_path=cache)
            pre = static
        if name.startswith("audio"):
            quantize_dynamic(pre, dst, weight_type=QuantType.QInt8, op_types_to_quantize=["LSTM"])
        else:
            shutil.copy(pre, dst)


def _reusable_tables(calibration_from: str, bundle: Bundle) -> dict:
    """{graph: calibration table path} from an int8 bundle folder calibrated for ``bundle``'s graphs."""
    where = f"--calibration-from {calibration_from}"
    if not os.path.isdir(calibration_from):
        raise VpklInputError(f"{where}: {'no such folder' if not os.path.exists(calibration_from) else 'not a folder'};"
                             " expected an int8 bundle written by vpkl calibrate")
    try:
        with open(os.path.join(calibration_from, "config.json")) as f:
            source = json.load(f)["quantization"]["source_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise VpklInputError(f"{where}: not an int8 bundle written by vpkl calibrate (its config.json does not say "
                             "which fp32 bundle it was calibrated for)") from None
    if source != bundle.config["sha256"]:
        raise VpklInputError(f"{where}: was calibrated for another fp32 bundle (its graphs' SHA-256 differ from "
                             f"{bundle.path}'s); its ranges would be wrong here")
    tables = {}
    for g in STATIC_OPS:
        c = os.path.join(calibration_from, f"calibration_{g[:-5]}.json")
        try:
            with open(c) as f:
                ok = isinstance(json.load(f), dict)
        except (OSError, ValueError):
            ok = False
        if not ok:
            raise VpklInputError(f"{c}: missing or not a calibration table (JSON) written by vpkl calibrate")
        tables[g] = c
    return tables


def calibrate_bundle(bundle_dir: str, audio_dir: str, images_dir: str, out_dir: str, force: bool = False,
                     max_utterances: int = 200, calibration_from: str | None = None) -> dict:
    """Write an int8 copy of an fp32 bundle, calibrated on real utterances and query images.

    Every fifth file of each folder is held out of calibration (for :func:`compare_bundles`),
    when both folders hold at least five.

    Args:
        bundle_dir: an fp32 bundle (``vpkl-export`` without ``--fp16``).
        audio_dir: a folder of utterances (.wav/.flac/.ogg); of those not held out, the first
            ``max_utterances`` (sorted by name) calibrate.
        images_dir: a folder of query images (.png/.jpg) of the kind the bundle expects.
        out_dir: the int8 bundle to write. It is built in a temporary folder and moved into
            place only when complete; with ``force`` an old bundle there is removed just before.
        calibration_from: an int8 bundle written by this function for the same fp32 bundle: its
            ``calibration_*.json`` ranges are used and the data is not run (the folders are still
            checked, and held-out files still measure the cost).
    Returns:
        {"graphs": {file: [fp32 bytes, int8 bytes]}, "utterances": n calibrating (0 when reused),
        "images": n calibrating, "held_out_audio": [paths], "held_out_images": [paths]}.
    Raises:
        VpklInputError: a bundle that is not fp32 (already quantised or fp16), an empty or
            unreadable folder or file, an existing ``out_dir`` without ``force``, a
            ``calibration_from`` that is not an int8 bundle calibrated for this one.
    """
    bundle = Bundle.load(bundle_dir)
    if bundle.precision != "fp32":
        raise VpklInputError(f"{bundle_dir}: is already an {bundle.precision} bundle; calibrate the fp32 bundle "
                             "it was made from")
    if max_utterances < 1:
        raise VpklInputError(f"--max-utterances: expected a positive integer, got {max_utterances}")
    check_out_dir(out_dir, [bundle_dir], force)
    every = _files(audio_dir, AUDIO_SUFFIXES, "audio files", "--audio")
    pictures = _files(images_dir, IMAGE_SUFFIXES, "images", "--images")
    hold = len(every) >= 5 and len(pictures) >= 5  # else everything calibrates and nothing is held out
    held_audio, held_images = (every[4::5], pictures[4::5]) if hold else ([], [])
    audio = [f for i, f in enumerate(every) if not hold or i % 5 != 4][:max_utterances]
    images = [f for i, f in enumerate(pictures) if not hold or i % 5 != 4]
    tables = _reusable_tables(calibration_from, bundle) if calibration_from is not None else {}
    feeds = {} if tables else calibration_feeds(bundle, audio, images)
    for f in held_images:
        read_image(f, bundle.image)  # a bad held-out image is named now, not after writing
    with building(out_dir, ".vpkl-calibrate-") as tmp:
        sizes = {}
        for g in BUNDLE_FILES[1:]:
            src, dst = os.path.join(bundle_dir, g), os.path.join(tmp, g)
            if g == "head.onnx":
                shutil.copy(src, dst)
            else:
                cache = os.path.join(tmp, f"calibration_{g[:-5]}.json") if g in STATIC_OPS else None
                if g in tables:
                    shutil.copy(tables[g], cache)
                try:
                    quantize_graph(src, dst, feeds.get(g), cache)
                except (ValueError, KeyError) as e:  # a table that parses but does not fit
                    why = f"it lacks the entry {e}" if isinstance(e, KeyError) else str(e).splitlines()[0][:200]
                    raise VpklInputError(f"{tables.get(g, cache)}: not a calibration table for {g} ({why})") from None
            sizes[g] = [os.path.getsize(src), os.path.getsize(dst)]
        calibration = ({"reused_from": os.path.abspath(calibration_from)} if tables else
                       {"utterances": len(audio), "images": len(images)})
        cfg = dict(bundle.config, precision="int8", sha256=graph_digests(tmp),
                   quantization={"image.onnx": "static QDQ (Conv, MatMul), int8 weights per channel",
                                 "audio_causal.onnx": "static QDQ (Conv, MatMul) + dynamic int8 LSTM",
                                 "audio_bidir.onnx": "dynamic int8 LSTM", "head.onnx": "float32",
                                 "calibration": calibration, "source_sha256": bundle.config["sha256"]})
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        Bundle.load(tmp)  # loads and fits its config
    assert set(os.listdir(out_dir)) <= set(BUNDLE_FILES) | set(CALIBRATION_FILES)
    return {"graphs": sizes, "utterances": 0 if tables else len(audio), "images": 0 if tables else len(images),
            "held_out_audio": held_audio, "held_out_images": held_images}


def compare_bundles(reference: Bundle, other: Bundle, audio: list[str], images: list[str]) -> dict:
    """What ``other`` (int8) costs against ``reference`` (fp32) on real inputs, no labels needed.

    Args:
        audio: utterance paths; images: query image paths (each image is its own query).
    Returns:
        {"utterances", "pairs" (utterance x image), "max_abs_dS", "mean_abs_dS",
        "decisions_agree" (share of pairs with the same S >= threshold decision at the
        reference's threshold), "frame_same" (share of the pairs the reference detects whose
        localised frame (:func:`vpkl.runtime.detect.detect`'s) the other gives too; NaN if it
        detects none)}.
    Raises:
        VpklInputError: an unreadable audio or image file.
    """
    from vpkl.runtime.detect import detect
    from vpkl.runtime.queries import enrol
    groups = {os.path.basename(f): [f] for f in images}
    qa, qb = enrol(reference, groups), enrol(other, groups)
    ds, same_det, detected, same_frame = [], 0, 0, 0
    for f in audio:
        ra, rb = detect(reference, f, qa, name=f), detect(other, f, qb, reference.threshold, name=f)
        for x, y in zip(ra, rb):
            ds.append(abs(x.score - y.score))
            same_det += x.detected == y.detected
            detected += x.detected
            same_frame += x.detected and x.frame == y.frame
    n = len(ds)
    nan = float("nan")
    return {"utterances": len(audio), "pairs": n, "max_abs_dS": max(ds) if n else nan,
            "mean_abs_dS": float(np.mean(ds)) if n else nan, "decisions_agree": same_det / n if n else nan,
            "frame_same": same_frame / detected if detected else nan}
