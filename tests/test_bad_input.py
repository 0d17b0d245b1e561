"""Each bad input named in the end-to-end issue: one line naming the file, non-zero exit."""
import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from conftest import run_cli


def _check(r, name, what):
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert name in lines[0] and what in lines[0], lines[0]
    assert "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    files = {}
    files["empty"] = d / "empty.wav"
    files["empty"].write_bytes(b"")
    files["zero"] = d / "zero.wav"
    sf.write(files["zero"], np.zeros(0, np.float32), 16000)
    files["text"] = d / "notes.wav"
    files["text"].write_text("this is not audio\n" * 20)
    good = d / "good.wav"
    sf.write(good, 0.1 * np.sin(np.arange(16000) / 5.0), 16000, subtype="PCM_16")
    files["trunc"] = d / "trunc.wav"
    files["trunc"].write_bytes(good.read_bytes()[:20000])
    files["short"] = d / "short.wav"
    sf.write(files["short"], np.zeros(300, np.float32), 16000)
    files["nan"] = d / "nan.wav"
    x = np.zeros(16000, np.float32)
    x[100] = np.nan
    sf.write(files["nan"], x, 16000, subtype="FLOAT")
    files["notimg"] = d / "seven_1.png"
    files["notimg"].write_text("not an image")
    files["good"] = good
    return files


@pytest.mark.parametrize("key,what", [("empty", "empty"), ("zero", "empty"), ("text", "not a readable audio file"),
                                      ("trunc", "truncated"), ("short", "shorter than one frame"),
                                      ("nan", "NaN")])
def test_bad_audio(random_bundle, example_queries, bad_files, key, what):
    r = run_cli("detect", "--bundle", random_bundle[0], "--query", example_queries[0], str(bad_files[key]))
    _check(r, str(bad_files[key]), what)


def test_missing_audio(random_bundle, example_queries, tmp_path):
    p = str(tmp_path / "nope.wav")
    _check(run_cli("detect", "--bundle", random_bundle[0], "--query", example_queries[0], p), p, "no such file")


def test_not_an_image(random_bundle, bad_files):
    p = str(bad_files["notimg"])
    _check(run_cli("detect", "--bundle", random_bundle[0], "--query", p, str(bad_files["good"])), p, "not a readable image")


def test_bundle_missing_file(random_bundle, example_queries, bad_files, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(random_bundle[0], b)
    os.remove(b / "audio_causal.onnx")
    _check(run_cli("detect", "--bundle", str(b), "--query", example_queries[0], str(bad_files["good"])),
           str(b), "missing audio_causal.onnx")


def test_bundle_other_format_version(random_bundle, example_queries, bad_files, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(random_bundle[0], b)
    cfg = json.loads((b / "config.json").read_text())
    cfg["format_version"] = 99
    (b / "config.json").write_text(json.dumps(cfg))
    _check(run_cli("detect", "--bundle", str(b), "--query", example_queries[0], str(bad_files["good"])),
           "config.json", "format version 99")


def test_query_folder_empty_or_badly_named(random_bundle, tmp_path, example_queries):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    man = tmp_path / "m.jsonl"
    man.write_text(json.dumps({"audio": "x.wav", "words": []}) + "\n")
    _check(run_cli("evaluate", "--bundle", random_bundle[0], "--manifest", str(man), "--queries", str(empty)),
           str(empty), "no query images")
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(example_queries[0], bad / "sevenwithoutunderscore.png")
    _check(run_cli("evaluate", "--bundle", random_bundle[0], "--manifest", str(man), "--queries", str(bad)),
           "sevenwithoutunderscore.png", "{keyword}_{anything}")


def test_export_refuses_to_overwrite(random_bundle):
    r = run_cli(random_bundle[1], "--out", random_bundle[0], module="vpkl.export.cli")
    assert r.returncode == 2 and "--force" in r.stderr


def test_export_force_never_deletes_other_files(random_bundle, tmp_path):
    """--force replaces a bundle folder only: not a folder with other files, not the checkpoint's folder."""
    import shutil as sh
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    r = run_cli(random_bundle[1], "--out", str(keep), "--force", module="vpkl.export.cli")
    assert r.returncode == 2 and "is not a bundle" in r.stderr and (keep / "notes.txt").exists()
    ck = tmp_path / "ck"
    ck.mkdir()
    sh.copy(random_bundle[1], ck / "m.ckpt")
    r = run_cli(str(ck / "m.ckpt"), "--out", str(ck), "--force", module="vpkl.export.cli")
    assert r.returncode == 2 and (ck / "m.ckpt").exists()
    f = tmp_path / "afile"
    f.write_text("x")
    r = run_cli(random_bundle[1], "--out", str(f), "--force", module="vpkl.export.cli")
    assert r.returncode == 2 and "not a folder" in r.stderr and f.read_text() == "x"


def test_config_that_does_not_match_the_graphs(random_bundle, example_queries, bad_files, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(random_bundle[0], b)
    cfg = json.loads((b / "config.json").read_text())
    cfg["image"]["mode"] = "RGB"
    (b / "config.json").write_text(json.dumps(cfg))
    _check(run_cli("detect", "--bundle", str(b), "--query", example_queries[0], str(bad_files["good"])),
           "config.json", "do not match")


@pytest.mark.parametrize("graph, damage, what", [
    ("audio_causal.onnx", "image.onnx", "expected ['features', 'h0', 'c0']"),  # another graph copied over it
    ("audio_bidir.onnx", "audio_causal.onnx", "expected ['causal']"),
    ("head.onnx", b"not onnx", "not a loadable ONNX graph"),   # corrupt
])
def test_bad_graph_is_named(random_bundle, example_queries, bad_files, tmp_path, graph, damage, what):
    b = tmp_path / "b"
    shutil.copytree(random_bundle[0], b)
    if isinstance(damage, bytes):
        (b / graph).write_bytes(damage)
    else:
        shutil.copy(b / damage, b / graph)
    _check(run_cli("detect", "--bundle", str(b), "--query", example_queries[0], str(bad_files["good"])),
           graph, what)


def test_attention_without_json(random_bundle, example_queries, bad_files):
    _check(run_cli("detect", "--bundle", random_bundle[0], "--query", example_queries[0], "--attention",
                   str(bad_files["good"])), "--attention", "--json")


def test_changed_weights_in_a_loadable_graph(random_bundle, example_queries, bad_files, tmp_path):
    """Damage that leaves the graph loadable would give silently wrong scores: the SHA-256 catches it."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper
    b = tmp_path / "b"
    shutil.copytree(random_bundle[0], b)
    g = onnx.load(str(b / "audio_bidir.onnx"))
    w = max(g.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 1.01, w.name))
    onnx.save(g, str(b / "audio_bidir.onnx"))
    ort.InferenceSession(str(b / "audio_bidir.onnx"), providers=["CPUExecutionProvider"])  # still loads
    _check(run_cli("detect", "--bundle", str(b), "--query", example_queries[0], str(bad_files["good"])),
           "audio_bidir.onnx", "SHA-256")


@pytest.mark.parametrize("args, name, what", [
    (["--out", "{tmp}/no/such/folder/x.ckpt"], "x.ckpt", "does not exist"),
    (["--out", "{tmp}"], "", "is a folder"),
    (["--out", "{tmp}/x.ckpt", "--steps", "0"], "--steps", "positive integer"),
    (["--out", "{tmp}/x.ckpt", "--batch-size", "-1"], "--batch-size", "positive integer"),
    (["--out", "{tmp}/x.ckpt", "--concat", "1.5"], "--concat", "probability"),
    (["--out", "{tmp}/x.ckpt", "--concat", "0.5", "--sampling", "paper"], "--concat", "all_pairs"),
])
def test_train_checks_arguments_before_training(tmp_path, args, name, what):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    _check(run_cli("train", *args), name, what)


def test_make_dataset_per_keyword_out_of_range(tmp_path):
    _check(run_cli("make-dataset", "--out", str(tmp_path / "d"), "--per-keyword", "0"), "--per-keyword", "expected 1 to")
    assert not (tmp_path / "d").exists()


def test_manifest_word_after_the_end_of_the_audio(random_bundle, example_queries, bad_files, tmp_path):
    m = tmp_path / "m.jsonl"
    keyword = os.path.basename(example_queries[0]).split("_")[0]
    q = tmp_path / "q"
    q.mkdir()
    shutil.copy(example_queries[0], q)
    ev = lambda: run_cli("evaluate", "--bundle", random_bundle[0], "--manifest", str(m), "--queries", str(q))
    m.write_text(json.dumps({"audio": str(bad_files["good"]), "words": [[keyword, 50.0, 60.0]]}) + "\n")
    _check(ev(), "good.wav", "after the end of the audio")
    # good.wav holds exactly 1 s: 1.02 s is past its end, 1.005 s is within the 10 ms slack
    m.write_text(json.dumps({"audio": str(bad_files["good"]), "words": [[keyword, 0.9, 1.02]]}) + "\n")
    _check(ev(), "good.wav", "after the end of the audio (1.000 s)")
    m.write_text(json.dumps({"audio": str(bad_files["good"]), "words": [[keyword, 0.9, 1.005]]}) + "\n")
    assert ev().returncode == 0
