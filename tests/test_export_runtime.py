"""Export parity (PyTorch vs onnxruntime) and the torch-free runtime against PyTorch."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from vpkl.model.head import localising_attention
from vpkl.model.vpkl_model import build_model, load_checkpoint
from vpkl.runtime.audio import read_audio
from vpkl.runtime.bundle import Bundle
from vpkl.runtime.detect import detect
from vpkl.runtime.errors import VpklInputError
from vpkl.runtime.images import read_image
from vpkl.runtime.queries import enrol, folder_images, group_by_keyword

from conftest import cut_digital_silence


def test_bundle_layout_and_config(random_bundle):
    path, _ = random_bundle
    assert sorted(os.listdir(path)) == ["audio_bidir.onnx", "audio_causal.onnx", "config.json", "head.onnx", "image.onnx"]
    cfg = json.load(open(os.path.join(path, "config.json")))
    assert cfg["format_version"] == 3 and cfg["preset"] == "digits" and cfg["frame_rate"] == 50.0
    assert cfg["front_end"]["n_mels"] == 40 and cfg["keywords"] == ["zero", "one"]
    import hashlib
    for g in ("image.onnx", "audio_causal.onnx", "audio_bidir.onnx", "head.onnx"):
        assert cfg["sha256"][g] == hashlib.sha256(open(os.path.join(path, g), "rb").read()).hexdigest()


def test_detect_matches_pytorch_end_to_end(random_bundle, example_wavs, example_queries):
    """The whole runtime path (numpy front end, ONNX graphs) against the PyTorch model on real audio
    (PyTorch hears it with its digital silence cut out, by the tests' own reading of the rule)."""
    path, ckpt = random_bundle
    model, _ = load_checkpoint(ckpt)
    b = Bundle.load(path)
    groups = group_by_keyword(example_queries)
    qs = enrol(b, groups)
    for wav in example_wavs:
        res = detect(b, wav, qs, loc_gate_db=None)   # the paper's argmax, as the PyTorch head has it
        kept, gap = cut_digital_silence(read_audio(wav, 16000))   # example_4's second of zeros is not heard
        x = torch.from_numpy(kept)[None]
        with torch.no_grad():
            feats, t = model.front_end(x)
            frames = model.audio(feats)
            q = torch.stack([model.image(torch.from_numpy(np.stack([read_image(f, b.image) for f in groups[k]]))).mean(0)
                             for k in qs.keywords])
            s, att, _ = localising_attention(q, frames, torch.tensor([frames.shape[1]]))
        kept_frames = np.delete(np.arange(att.shape[-1] + len(gap)), gap)   # input frame of each model frame
        for k, r in enumerate(res):
            assert abs(r.score - s[k, 0].item()) < 1e-4
            assert len(r.aud_att) == att.shape[-1] + len(gap) and not r.aud_att[gap].any()
            assert np.abs(np.delete(r.aud_att, gap) - att[k, 0].numpy()).max() < 1e-3
            assert r.frame == kept_frames[int(torch.argmax(att[k, 0]))]


def test_head_graph_handles_partial_valid_frames(random_bundle):
    b = Bundle.load(random_bundle[0])
    rng = np.random.default_rng(0)
    q = rng.standard_normal((3, 16, 128)).astype(np.float32)
    a = rng.standard_normal((20, 128)).astype(np.float32)
    s, att, im = b.score(q, a, n_valid=12)
    rs, ratt, rim = localising_attention(torch.from_numpy(q), torch.from_numpy(a)[None], torch.tensor([12]))
    assert np.abs(s - rs[:, 0].numpy()).max() < 1e-5
    assert np.abs(att - ratt[:, 0].numpy()).max() < 1e-5 and np.all(att[:, 12:] == 0)


def test_frame_time():
    class B:  # Bundle.frame_time only needs the front end
        from vpkl.runtime.features import FrontEndConfig
        front_end = FrontEndConfig()
    # embedding 0: centre of log-mel frame 0.5 -> (0.5 * 160 + 200) / 16000 = 17.5 ms; then 20 ms per frame
    assert Bundle.frame_time(B, 0) == pytest.approx(0.0175)
    assert Bundle.frame_time(B, 50) == pytest.approx(1.0175)


def test_runtime_does_not_import_torch(random_bundle, example_wavs, example_queries):
    code = ("import sys; from vpkl.runtime.bundle import Bundle; from vpkl.runtime.detect import detect; "
            "from vpkl.runtime.queries import enrol, group_by_keyword; import vpkl.cli, vpkl.evaluation.evaluate; "
            f"b = Bundle.load({random_bundle[0]!r}); q = enrol(b, group_by_keyword([{example_queries[0]!r}])); "
            f"detect(b, {example_wavs[0]!r}, q); "
            "from vpkl.runtime.stream import Spotter; from vpkl.runtime.sources import file_chunks; "
            f"s = Spotter(b, q); [s.feed(x) for x in file_chunks({example_wavs[0]!r}, 16000, 0.1)]; s.flush(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_query_names(tmp_path, example_queries):
    assert sorted(group_by_keyword(example_queries)) == ["eight", "five", "four", "nine", "one", "seven", "six",
                                                       "three", "two", "zero"]
    with pytest.raises(VpklInputError, match="no such query folder"):
        folder_images(str(tmp_path / "nope"))


def test_paper_preset_builds_runs_and_exports(tmp_path, example_wavs):
    """Published sizes: M = 49 pixels of D = 2048 from 224 px; 50 frames/s; exports with parity."""
    torch.manual_seed(0)
    model = build_model("paper").eval()
    with torch.no_grad():
        pix = model.image(torch.zeros(1, 3, 224, 224))
        frames = model.audio(torch.zeros(1, 100, 40))
    assert pix.shape == (1, 49, 2048) and frames.shape == (1, 50, 2048)
    from vpkl.model.vpkl_model import save_checkpoint
    from vpkl.export.onnx_export import export_bundle
    save_checkpoint(model, str(tmp_path / "paper.ckpt"))
    flickr = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "flickr8k_keywords")
    imgs = sorted(os.path.join(flickr, f) for f in os.listdir(flickr))[:2] if os.path.isdir(flickr) else \
        [os.path.join(os.path.dirname(example_wavs[0]), "queries", "seven_test00.png")]
    diffs = export_bundle(str(tmp_path / "paper.ckpt"), str(tmp_path / "pb"), example_wavs[:1], imgs)
    assert diffs["S"] < 1e-4


def test_fp16_bundle(random_bundle, example_wavs, example_queries, tmp_path):
    """`vpkl-export --fp16`: fp16 weights in the image and audio graphs, float32 inputs and outputs
    and a float32 head; scores within the fp16 tolerance of the fp32 bundle's, offline and streamed."""
    import onnx
    from vpkl.export.precision import FP16_GRAPHS, PARITY_TOL_FP16
    from vpkl.runtime.stream import Spotter
    out = tmp_path / "b16"
    r = subprocess.run([sys.executable, "-m", "vpkl.export.cli", random_bundle[1], "--out", str(out), "--fp16"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.load(open(out / "config.json"))["precision"] == "fp16"
    f16, f32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    for g in ("image.onnx", "audio_causal.onnx", "audio_bidir.onnx", "head.onnx"):
        m = onnx.load(str(out / g))
        weights = [t.data_type for t in m.graph.initializer if np.prod(t.dims) > 1000]
        assert all(w == (f16 if g in FP16_GRAPHS else f32) for w in weights), g
        assert all(v.type.tensor_type.elem_type in (f32, onnx.TensorProto.INT64)
                   for v in list(m.graph.input) + list(m.graph.output)), g
    b32, b16 = Bundle.load(random_bundle[0]), Bundle.load(str(out))
    assert b16.precision == "fp16" and b32.precision == "fp32"
    groups = group_by_keyword(example_queries)
    q32, q16 = enrol(b32, groups), enrol(b16, groups)
    for wav in example_wavs:
        s32 = np.array([r.score for r in detect(b32, wav, q32)])
        s16 = np.array([r.score for r in detect(b16, wav, q16)])
        assert np.abs(s32 - s16).max() < PARITY_TOL_FP16
        x = read_audio(wav, 16000)
        sp = Spotter(b16, q16, threshold=1.0)  # streamed: the final window is the whole utterance
        if len(x) > sp.config.window_s * 16000:
            continue                           # (example_4, 3.2 s, is longer than the 3 s window)
        sp.feed(x)
        sp.flush()
        assert np.abs(sp.last_window.scores - s16).max() < 1e-5
