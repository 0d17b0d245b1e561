"""Checkpoint -> model bundle: three ONNX graphs and a config.json, checked against PyTorch.

Bundle layout (format version 3)::

    BUNDLE/
      config.json        preset, front-end and image parameters, frame rate, threshold, keywords,
                         the SHA-256 of each graph (checked on load)
      image.onnx         images (B, C, H, W) float32 -> pixels (B, M, D)
      audio_causal.onnx  features (1, 2k + 2, n_mels), h0, c0 (4, 1, H) float32
                         -> causal (1, k, H), h1, c1: conv (no padding: the caller pads), MLP and
                         the four unidirectional LSTMs, states carried so a stream is encoded once
      audio_bidir.onnx   causal (1, N, H) -> frames (1, N, D): the two BiLSTMs (and output norm)
      head.onnx          query (Q, M, D), audio (N, D), n_valid (1,) int64
                         -> S (Q,), aud_att (Q, N), im_att (Q, M)

The audio branch is split where it stops being causal: offline, the runtime runs
audio_causal over the whole utterance (one zero frame of padding each side, zero states) and
audio_bidir over all of it, which is exactly the PyTorch branch; streaming, it runs
audio_causal on each new piece and audio_bidir over a bounded window (runtime/stream.py).
"""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import torch

from vpkl.model.head import ScoringHead
from vpkl.model.vpkl_model import VPKLModel, load_checkpoint
from vpkl.runtime.bundle import BUNDLE_FILES, FORMAT, FORMAT_VERSION, graph_digests
from vpkl.runtime.errors import VpklInputError

from .folders import building, check_out_dir

OPSET = 17
PARITY_TOL = 1e-4


class _AudioCausal(torch.nn.Module):
    def __init__(self, model: VPKLModel):
        super().__init__()
        self.audio = model.audio
        self.train(model.training)  # torch.onnx.export restores this mode on the whole module afterwards

    def forward(self, features, h0, c0):
        return self.audio.causal_chunk(features, h0, c0)


class _AudioBidir(_AudioCausal):
    def forward(self, causal):
        return self.audio.bidirectional(causal)


def _export(module, args, path, inputs, outputs, dynamic):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, path, input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)


def bundle_config(model: VPKLModel, ckpt: dict, graphs_dir: str, precision: str = "fp32") -> dict:
    """config.json for ``model``, with the SHA-256 of the graphs already written to ``graphs_dir``."""
    p = model.preset
    fe = p.front_end
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "precision": precision,
        "preset": p.name, "model": p.to_dict(),
        "front_end": fe.to_dict(), "image": p.image.to_dict(),
        "embed_dim": p.embed_dim, "frame_rate": p.frame_rate,
        "threshold": float(ckpt.get("threshold", 0.5)),
        "keywords": list(ckpt.get("keywords", [])),
        "sha256": graph_digests(graphs_dir),
    }


def export_graphs(model: VPKLModel, out_dir: str) -> None:
    """Write the four graphs of the module docstring for ``model`` into ``out_dir``."""
    model.eval()  # BatchNorm with its running statistics, as at inference
    p = model.preset
    c = p.image.channels
    img = torch.zeros(1, c, p.image.size, p.image.size)
    feats = torch.zeros(1, 66, p.front_end.n_mels)
    state = torch.zeros(len(model.audio.lstms), 1, p.lstm_hidden)
    with torch.no_grad():
        m = model.image(img).shape[1]
    _export(model.image, (img,), os.path.join(out_dir, "image.onnx"), ["images"], ["pixels"],
            {"images": {0: "B"}, "pixels": {0: "B"}})
    _export(_AudioCausal(model), (feats, state, state), os.path.join(out_dir, "audio_causal.onnx"),
            ["features", "h0", "c0"], ["causal", "h1", "c1"], {"features": {1: "T"}, "causal": {1: "N"}})
    _export(_AudioBidir(model), (torch.zeros(1, 32, p.lstm_hidden),), os.path.join(out_dir, "audio_bidir.onnx"),
            ["causal"], ["frames"], {"causal": {1: "N"}, "frames": {1: "N"}})
    q = torch.randn(2, m, p.embed_dim)
    a = torch.randn(32, p.embed_dim)
    _export(ScoringHead(), (q, a, torch.tensor([32])), os.path.join(out_dir, "head.onnx"),
            ["query", "audio", "n_valid"], ["S", "aud_att", "im_att"],
            {"query": {0: "Q"}, "audio": {0: "N"}, "S": {0: "Q"}, "aud_att": {0: "Q", 1: "N"}, "im_att": {0: "Q"}})


def check_parity(model: VPKLModel, bundle_dir: str, audio_paths: list[str], image_paths: list[str],
                 tol: float = PARITY_TOL) -> dict:
    """Run PyTorch and onnxruntime on the same real inputs; raise if S differs by more than ``tol``.

    Returns the largest absolute differences: {"S", "aud_att", "pixels", "frames"}.
    """
    from vpkl.runtime.audio import read_audio
    from vpkl.runtime.bundle import Bundle
    from vpkl.runtime.detect import require_one_frame
    from vpkl.runtime.features import features
    from vpkl.runtime.images import read_image

    b = Bundle.load(bundle_dir)
    p = model.preset
    imgs = np.stack([read_image(f, p.image) for f in image_paths])
    diffs = {"S": 0.0, "aud_att": 0.0, "pixels": 0.0, "frames": 0.0}
    with torch.no_grad():
        q_t = model.image(torch.from_numpy(imgs))
        q_o = b.embed_images(imgs)
        diffs["pixels"] = float(np.abs(q_t.numpy() - q_o).max())
        for f in audio_paths:
            x = features(require_one_frame(b, read_audio(f, p.front_end.sample_rate), f), p.front_end, f)
            a_t = model.audio(torch.from_numpy(x)[None])[0]
            a_o = b.embed_features(x)
            diffs["frames"] = max(diffs["frames"], float(np.abs(a_t.numpy() - a_o).max()))
            s_t, att_t, _ = ScoringHead()(q_t, a_t, torch.tensor([a_t.shape[0]]))
            s_o, att_o, _ = b.score(q_o, a_o)
            diffs["S"] = max(diffs["S"], float(np.abs(s_t.numpy() - s_o).max()))
            diffs["aud_att"] = max(diffs["aud_att"], float(np.abs(att_t.numpy() - att_o).max()))
    if diffs["S"] > tol:
        raise RuntimeError(f"export parity failed: onnxruntime and PyTorch scores differ by "
                           f"{diffs['S']:.2e} > {tol:.0e} (largest differences: {diffs})")
    return diffs


def export_bundle(ckpt_path: str, out_dir: str, audio_paths: list[str], image_paths: list[str],
                  force: bool = False, fp16: bool = False) -> dict:
    """Export a checkpoint to a bundle folder and check PyTorch/onnxruntime parity.

    The bundle is written to a temporary folder and moved into place only once the
    parity check passes (S within 1e-4, or 5e-3 for ``fp16``), so a failed export leaves
    nothing half-written. ``fp16``: the branches in float16 (:mod:`vpkl.export.precision`).

    Returns:
        The largest PyTorch-onnxruntime differences on the real inputs (see :func:`check_parity`).
    Raises:
        VpklInputError: missing checkpoint, existing ``out_dir`` without ``force``.
        RuntimeError: the parity check failed.
    """
    if not os.path.exists(ckpt_path):
        raise VpklInputError(f"{ckpt_path}: no such checkpoint")
    if not os.path.isfile(ckpt_path):
        raise VpklInputError(f"{ckpt_path}: is not a file, expected a checkpoint from `vpkl train`")
    check_out_dir(out_dir, [ckpt_path], force)
    try:
        model, ckpt = load_checkpoint(ckpt_path)
    except Exception as e:  # torch.load raises many kinds for a non-checkpoint file
        raise VpklInputError(f"{ckpt_path}: not a vpkl checkpoint ({e.__class__.__name__})") from None
    with building(out_dir, ".vpkl-export-") as tmp:
        export_graphs(model, tmp)
        if fp16:
            from .precision import FP16_GRAPHS, PARITY_TOL_FP16, convert_to_fp16
            for g in FP16_GRAPHS:
                convert_to_fp16(os.path.join(tmp, g))
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(bundle_config(model, ckpt, tmp, "fp16" if fp16 else "fp32"), f, indent=2)
        diffs = check_parity(model, tmp, audio_paths, image_paths, PARITY_TOL_FP16 if fp16 else PARITY_TOL)
    assert sorted(BUNDLE_FILES) == sorted(os.listdir(out_dir))
    return diffs
