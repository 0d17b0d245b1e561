"""`vpkl calibrate`: int8 bundles against the fp32 bundle they come from, reuse of the
calibration table, and bad input."""
import json
import os
import shutil

import numpy as np
import onnx
import pytest

from conftest import EXAMPLES, run_cli
from vpkl.runtime.bundle import Bundle
from vpkl.runtime.detect import detect
from vpkl.runtime.queries import enrol, folder_images

QUERIES = os.path.join(EXAMPLES, "queries")


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory, example_wavs):
    """The four shipped examples, each also at half and double length: 12 utterances."""
    import soundfile as sf
    d = tmp_path_factory.mktemp("audio")
    for w in example_wavs:
        x, sr = sf.read(w, dtype="int16")
        n = os.path.basename(w)[:-4]
        shutil.copy(w, d / f"{n}.wav")
        sf.write(d / f"{n}_half.wav", x[:len(x) // 2], sr)
        sf.write(d / f"{n}_twice.wav", np.concatenate([x, x]), sr)
    return str(d)


@pytest.fixture(scope="module")
def int8(shipped_bundle, audio_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("c") / "b8")
    r = run_cli("calibrate", "--bundle", shipped_bundle, "--audio", audio_dir, "--images", QUERIES, "--out", out)
    assert r.returncode == 0, r.stderr
    return out, r


def test_int8_bundle_against_fp32(shipped_bundle, int8, example_wavs):
    out, r = int8
    assert "calibrated on 10 utterances and 24 images" in r.stdout and "same decision" in r.stdout
    assert r.stderr == ""
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert cfg["precision"] == "int8"
    ops = {g: {n.op_type for n in onnx.load(os.path.join(out, g)).graph.node}
           for g in ("image.onnx", "audio_causal.onnx", "audio_bidir.onnx")}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops["image.onnx"]
    assert {"QuantizeLinear", "DynamicQuantizeLSTM"} <= ops["audio_causal.onnx"]
    assert "DynamicQuantizeLSTM" in ops["audio_bidir.onnx"] and "LSTM" not in ops["audio_bidir.onnx"]
    assert sorted(f for f in os.listdir(out) if f.startswith("calibration_")) == [
        "calibration_audio_causal.json", "calibration_image.json"]
    size = lambda d: sum(os.path.getsize(os.path.join(d, g)) for g in cfg["sha256"])
    assert size(out) < 0.35 * size(shipped_bundle)
    b32, b8 = Bundle.load(shipped_bundle), Bundle.load(out)
    groups = folder_images(QUERIES)
    q32, q8 = enrol(b32, groups), enrol(b8, groups)
    for wav in example_wavs:
        r32, r8 = detect(b32, wav, q32), detect(b8, wav, q8, b32.threshold)
        assert max(abs(a.score - b.score) for a, b in zip(r32, r8)) < 0.03
        # the same decisions, but where fp32's S is within int8's difference of the threshold
        assert all(a.detected == b.detected or abs(a.score - a.threshold) < 0.03 for a, b in zip(r32, r8))


def test_calibration_table_is_reused(shipped_bundle, int8, tmp_path):
    """--calibration-from: the stored ranges, not the (here different) data, set the quantisation."""
    out, _ = int8
    other = tmp_path / "other_audio"
    other.mkdir()
    shutil.copy(os.path.join(EXAMPLES, "example_1.wav"), other)
    again = str(tmp_path / "again")
    r = run_cli("calibrate", "--bundle", shipped_bundle, "--audio", str(other), "--images", QUERIES, "--out", again,
                "--calibration-from", out)
    assert r.returncode == 0, r.stderr
    assert f"ranges reused from {out}" in r.stdout and "none was held out" in r.stderr
    assert json.load(open(os.path.join(again, "config.json")))["quantization"]["calibration"] == {
        "reused_from": os.path.abspath(out)}
    for g in ("image.onnx", "audio_causal.onnx", "audio_bidir.onnx"):
        assert open(os.path.join(out, g), "rb").read() == open(os.path.join(again, g), "rb").read(), g


def _check(r, *parts):
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for p in parts:
        assert p in r.stderr, r.stderr


def test_calibrate_bad_input(shipped_bundle, int8, audio_dir, tmp_path):
    out, _ = int8
    cal = lambda *a: run_cli("calibrate", "--bundle", *a)
    empty = tmp_path / "empty"
    empty.mkdir()
    _check(cal(shipped_bundle, "--audio", str(empty), "--images", QUERIES, "--out", str(tmp_path / "o")),
           "--audio", "holds no audio files")
    text = tmp_path / "text"
    text.mkdir()
    (text / "a.wav").write_text("not audio")
    _check(cal(shipped_bundle, "--audio", str(text), "--images", QUERIES, "--out", str(tmp_path / "o")),
           "a.wav", "not a readable audio file")
    bad_img = tmp_path / "img"
    bad_img.mkdir()
    (bad_img / "seven_x.png").write_text("not an image")
    _check(cal(shipped_bundle, "--audio", audio_dir, "--images", str(bad_img), "--out", str(tmp_path / "o")),
           "seven_x.png", "not a readable image")
    _check(cal(out, "--audio", audio_dir, "--images", QUERIES, "--out", str(tmp_path / "o")),
           "already an int8 bundle")
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    _check(cal(shipped_bundle, "--audio", audio_dir, "--images", QUERIES, "--out", str(keep)), "--force")
    _check(cal(shipped_bundle, "--audio", audio_dir, "--images", QUERIES, "--out", str(keep), "--force"),
           "is not a bundle")
    assert (keep / "notes.txt").read_text() == "mine"
    _check(cal(shipped_bundle, "--audio", audio_dir, "--images", QUERIES, "--out", shipped_bundle, "--force"),
           "is an input")
    _check(cal(shipped_bundle, "--audio", audio_dir, "--images", QUERIES, "--out", str(tmp_path / "o"),
               "--manifest", "m.jsonl"), "--manifest and --queries")
    _check(cal(shipped_bundle, "--audio", audio_dir, "--images", QUERIES, "--out", str(tmp_path / "o"),
               "--manifest", "nosuch.jsonl", "--queries", QUERIES), "nosuch.jsonl")
    assert not (tmp_path / "o").exists()  # refused before anything was written
    # through a symbolic link: the link itself, or a linked parent that leads back to the input
    os.symlink(out, tmp_path / "link")
    _check(cal(shipped_bundle, "--audio", audio_dir, "--images", QUERIES, "--out", str(tmp_path / "link"),
               "--force"), "symbolic link")
    os.symlink(os.path.dirname(shipped_bundle), tmp_path / "assets_alias")
    _check(cal(shipped_bundle, "--audio", audio_dir, "--images", QUERIES, "--out",
               str(tmp_path / "assets_alias" / "digits"), "--force"), "is an input")


def test_calibration_tables_must_fit(shipped_bundle, random_bundle, int8, audio_dir, tmp_path):
    """--calibration-from: a missing folder, another bundle's tables, a damaged table: one line each."""
    out, _ = int8
    cal = lambda src: run_cli("calibrate", "--bundle", shipped_bundle, "--audio", audio_dir, "--images", QUERIES,
                              "--out", str(tmp_path / "o"), "--calibration-from", src)
    _check(cal(str(tmp_path / "nosuch")), "no such folder")
    other = str(tmp_path / "other8")
    assert run_cli("calibrate", "--bundle", random_bundle[0], "--audio", audio_dir, "--images", QUERIES,
                   "--out", other).returncode in (0, 1)
    _check(cal(other), "calibrated for another fp32 bundle")
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    (damaged / "calibration_image.json").write_text("garbage")
    _check(cal(str(damaged)), "calibration_image.json", "not a calibration table")
    (damaged / "calibration_image.json").write_text("{}")
    _check(cal(str(damaged)), "calibration_image.json", "not a calibration table for image.onnx (it lacks")
    assert not (tmp_path / "o").exists()
