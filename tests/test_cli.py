"""The command line a user expects: --version, the default bundle, --queries, batches with a bad file,
help texts, MP3, the extras each command names, execution providers, and detect --plot."""
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

import numpy as np
import pytest
import soundfile as sf

from conftest import ASSETS, EXAMPLES, ROOT, run_cli

QUERIES = os.path.join(EXAMPLES, "queries")
FIVE_ONE = sorted(os.path.join(QUERIES, f) for f in os.listdir(QUERIES) if f.startswith(("five_", "one_")))
PYPROJECT = tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))


def cli(capsys, *args):
    """vpkl in this process (faster than a fresh interpreter): (exit code, stdout, stderr)."""
    from vpkl.cli import main
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def by_keyword(results):
    return {r["keyword"]: r for r in results}


def test_version_is_the_package_version(capsys):
    from vpkl.cli import main
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"vpkl {PYPROJECT['project']['version']}"


def test_bundle_defaults_to_the_shipped_one(capsys, shipped_bundle, example_wavs):
    q = sum([["--query", p] for p in FIVE_ONE], [])
    rc, default, _ = cli(capsys, "detect", *q, example_wavs[0], "--json")
    assert rc == 0
    rc, given, _ = cli(capsys, "detect", "--bundle", shipped_bundle, *q, example_wavs[0], "--json")
    assert rc == 0 and json.loads(default) == json.loads(given)


def test_detect_queries_folder_names_what_it_skipped(capsys, tmp_path, example_wavs):
    """--queries DIR gives what --query gives for the same images; stderr names the files that are
    not query images."""
    for p in FIVE_ONE:
        shutil.copy(p, tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "old").mkdir()
    shutil.copy(FIVE_ONE[0], tmp_path / "two.png")              # an image named otherwise is skipped too
    rc, folder, err = cli(capsys, "detect", "--queries", tmp_path, example_wavs[0], "--json")
    assert rc == 0, err
    assert err == (f"vpkl detect: skipped in {tmp_path} (not {{keyword}}_{{anything}}.png/.jpg/.jpeg images): "
                   "notes.txt, old/, two.png\n")
    rc, files, _ = cli(capsys, "detect", *sum([["--query", p] for p in FIVE_ONE], []), example_wavs[0], "--json")
    assert json.loads(folder) == json.loads(files)
    rc, _, err = cli(capsys, "detect", "--queries", tmp_path, "--query", FIVE_ONE[0], example_wavs[0])
    assert rc == 2 and "--query/--queries: give --query IMAGE" in err


def test_batch_keeps_the_good_files_results(capsys, tmp_path, example_wavs):
    """One missing file among three: the other two get exactly their single-file results, the missing
    one its error in place, and the exit code is 2."""
    q = ["--queries", QUERIES]
    missing = str(tmp_path / "missing.wav")
    rc, out, err = cli(capsys, "detect", *q, example_wavs[0], missing, example_wavs[3], "--json")
    assert rc == 2
    batch = json.loads(out)
    assert [b["audio"] for b in batch] == [example_wavs[0], missing, example_wavs[3]]
    assert batch[1] == {"audio": missing, "error": f"{missing}: no such file"}
    assert [line for line in err.splitlines() if "error" in line] == [f"vpkl: error: {missing}: no such file"]
    for i, wav in ((0, example_wavs[0]), (2, example_wavs[3])):
        rc, single, _ = cli(capsys, "detect", *q, wav, "--json")
        assert rc == 0 and batch[i] == json.loads(single)
    rc, out, err = cli(capsys, "detect", *q, missing, "--json")  # one file: one object, its error
    assert rc == 2 and json.loads(out) == {"audio": missing, "error": f"{missing}: no such file"}
    rc, out, err = cli(capsys, "detect", *q, missing, example_wavs[0])  # the table: the good file still printed
    assert rc == 2 and out.startswith(example_wavs[0]) and "no such file" in err


def test_table_marks_a_keyword_that_was_not_detected(capsys, example_wavs):
    """Each row against the JSON of the same run: time_s is frame n's centre, 0.0175 + 0.02 n s at
    16 kHz (hand-computed from 25 ms windows every 10 ms, two log-mel frames per embedding); a
    keyword not detected has its best place in parentheses."""
    wav = example_wavs[3]  # "zero (silence) two seven": some keywords detected, the others not
    with open(os.path.join(ASSETS, "digits", "config.json")) as f:
        thr_shipped = json.load(f)["threshold"]
    rc, table, _ = cli(capsys, "detect", "--queries", QUERIES, wav)
    rc, js, _ = cli(capsys, "detect", "--queries", QUERIES, wav, "--json")
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:]}
    results = by_keyword(json.loads(js)["results"])
    assert sorted(rows) == sorted(results)
    assert 0 < sum(r["detected"] for r in results.values()) < len(results)
    for kw, r in results.items():
        _, score, thr, yes, at, frame = rows[kw]
        assert float(score) == pytest.approx(r["score"], abs=5e-4) and float(thr) == pytest.approx(thr_shipped, abs=5e-4)
        assert r["time_s"] == pytest.approx(0.0175 + 0.02 * r["frame"], abs=1e-4)
        if r["detected"]:
            assert yes == "YES" and float(at) == pytest.approx(r["time_s"], abs=5e-3) and int(frame) == r["frame"]
        else:
            assert yes == "no" and at == f"({r['time_s']:.2f})" and frame == f"({r['frame']})"


def test_help_says_what_the_fields_mean(capsys):
    with open(os.path.join(ASSETS, "digits", "config.json")) as f:
        thr = json.load(f)["threshold"]
    for command in ("detect", "stream"):
        from vpkl.cli import main
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert f"default: the bundle's own, {thr:.3f} for the shipped digits bundle" in text
        assert "a score in [0, 1]" in text and "centre of the localised frame" in text
        assert "MP3" in text and "below 16 kHz" in text and "loses accuracy" in text
        assert "default: the shipped digits bundle" in text
    assert "in parentheses" in " ".join(run_cli("detect", "--help").stdout.split())


@pytest.mark.skipif("MP3" not in sf.available_formats(), reason="this libsndfile has no MP3 support")
def test_mp3_gives_the_wav_results(capsys, tmp_path, example_wavs):
    """libsndfile (>= 1.1) reads MP3: an MP3 written by libsndfile's own encoder from a shipped
    example gives the WAV's detections at the same places. The codec is lossy: on the four shipped
    examples it moves S by up to 0.09 (measured with the last two shipped models), so scores are held
    within 0.1 and decisions may differ only that close to the threshold; a misread file (wrong rate,
    offset, channels) moves the localised frames, which are held within 2."""
    wav = example_wavs[1]
    x, sr = sf.read(wav)
    mp3 = str(tmp_path / "example.mp3")
    sf.write(mp3, x, sr, format="MP3", subtype="MPEG_LAYER_III")
    rc, a, _ = cli(capsys, "detect", "--queries", QUERIES, wav, mp3, "--json")
    assert rc == 0
    w, m = (by_keyword(r["results"]) for r in json.loads(a))
    assert {k for k in w if w[k]["detected"]} != set()
    for k in w:
        assert abs(w[k]["score"] - m[k]["score"]) < 0.1
        # the same decision, unless the WAV's S is within the scores' difference of the threshold
        assert w[k]["detected"] == m[k]["detected"] or abs(w[k]["score"] - w[k]["threshold"]) < 0.1, k
        if w[k]["detected"] and m[k]["detected"]:
            assert abs(w[k]["frame"] - m[k]["frame"]) <= 2


def _extra_packages(extra: str) -> set:
    """The packages an extra of pyproject.toml brings, following vpkl[...] references."""
    out = set()
    for req in PYPROJECT["project"]["optional-dependencies"][extra]:
        m = re.match(r"vpkl\[([\w,]+)\]", req)
        if m:
            for e in m[1].split(","):
                out |= _extra_packages(e)
        else:
            out.add(re.split(r"[<>=!~ ]", req)[0])
    return out


@pytest.mark.parametrize("module, package, extra, args", [
    ("onnx", "onnx", "calibrate", ["calibrate", "--audio", EXAMPLES, "--images", QUERIES, "--out", "{tmp}/int8"]),
    ("torch", "torch", "train", ["train", "--out", "{tmp}/m.ckpt", "--steps", "1"]),
    ("sklearn", "scikit-learn", "dataset", ["make-dataset", "--out", "{tmp}/d", "--val", "1", "--test", "1"]),
    ("matplotlib", "matplotlib", "plot", ["detect", "--queries", QUERIES, "--plot", "{tmp}/p.png",
                                          os.path.join(EXAMPLES, "example_1.wav")]),
    ("torch", "torch", "export", ["vpkl-export", "{tmp}/m.ckpt", "--out", "{tmp}/b"]),
    ("torch", "torch", "bench", ["benchmarks", "--quick", "--out", "{tmp}/b"]),
    ("matplotlib", "matplotlib", "bench", ["benchmarks", "--quick", "--out", "{tmp}/b"]),
])
def test_a_missing_extra_is_named_in_one_line(tmp_path, module, package, extra, args):
    """The module blocked as if not installed: one line naming the extra, which (pyproject.toml) brings
    the package; nothing written."""
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    main = {"vpkl-export": "vpkl.export.cli", "benchmarks": "vpkl.benchmarks.__main__"}.get(args[0], "vpkl.cli")
    args = args[1:] if main != "vpkl.cli" else args
    code = f"import sys; sys.modules[{module!r}] = None; from {main} import main; sys.exit(main({args!r}))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"pip install 'vpkl[{extra}]'" in lines[-1] and package in lines[-1]
    assert package in _extra_packages(extra)
    assert os.listdir(tmp_path) == []


def test_cpu_provider_is_the_default_and_gives_the_same_scores(shipped_bundle, example_wavs):
    from vpkl.runtime.bundle import Bundle
    from vpkl.runtime.detect import detect
    from vpkl.runtime.queries import enrol, folder_images
    default = Bundle.load(shipped_bundle)
    cpu = Bundle.load(shipped_bundle, providers=["CPUExecutionProvider"])
    for b in (default, cpu):
        assert all(s.get_providers() == ["CPUExecutionProvider"] for s in (b._image, b._causal, b._bidir, b._head))
        assert b.providers == ["CPUExecutionProvider"]
    a, c = (detect(b, example_wavs[0], enrol(b, folder_images(QUERIES))) for b in (default, cpu))
    assert [r.score for r in a] == [r.score for r in c] and [r.frame for r in a] == [r.frame for r in c]


def test_provider_options_are_onnxruntimes():
    """The option names of onnxruntime's TensorRT and TensorRT-RTX providers (their documentation)."""
    from vpkl.runtime.providers import provider_list
    assert provider_list() == ["CPUExecutionProvider"]
    assert provider_list("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert provider_list("tensorrt", fp16=True, cache_dir="/c") == [
        ("TensorrtExecutionProvider", {"trt_fp16_enable": "1", "trt_engine_cache_enable": "1",
                                       "trt_engine_cache_path": "/c"}),
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert provider_list("tensorrt-rtx", cache_dir="/c") == [
        ("NvTensorRtRtxExecutionProvider", {"nv_runtime_cache_path": "/c"}), "CPUExecutionProvider"]


def test_unavailable_provider_names_its_package(capsys, shipped_bundle, example_wavs):
    import onnxruntime as ort
    from vpkl.runtime.bundle import Bundle
    from vpkl.runtime.errors import VpklInputError
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(VpklInputError, match="providers: CUDAExecutionProvider is not available.*onnxruntime-gpu"):
        Bundle.load(shipped_bundle, providers=["CUDAExecutionProvider"])
    for flag, what in ((["--provider", "cuda"], "--provider cuda: CUDAExecutionProvider is not available"),
                       (["--provider", "tensorrt-rtx"], "comes with the package onnxruntime-trt-rtx"),
                       (["--provider", "cuda", "--fp16"], "--fp16: only with the tensorrt provider"),
                       (["--engine-cache", "/tmp"], "--engine-cache: only with the tensorrt and tensorrt-rtx")):
        rc, out, err = cli(capsys, "detect", "--queries", QUERIES, example_wavs[0], *flag)
        assert rc == 2 and out == "" and err.strip().splitlines() == [f"vpkl: error: {err.split('error: ')[1].strip()}"]
        assert what in err, err
    rc, out, err = cli(capsys, "info", "--provider", "cuda")
    assert rc == 2 and "--provider cuda: CUDAExecutionProvider is not available" in err


def test_provider_that_falls_back_to_the_cpu_is_refused(monkeypatch, shipped_bundle):
    """onnxruntime only warns when a listed provider cannot start and runs on the CPU instead; vpkl
    refuses. Here CUDA is made to look available to vpkl's check; onnxruntime then falls back."""
    import onnxruntime as ort
    from vpkl.runtime import providers
    from vpkl.runtime.bundle import Bundle
    from vpkl.runtime.errors import VpklInputError
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    monkeypatch.setattr(providers.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(VpklInputError, match="CUDAExecutionProvider could not start for .*image.onnx"):
        Bundle.load(shipped_bundle, providers=["CUDAExecutionProvider"])


def test_plot_draws_what_detect_found(shipped_bundle, example_wavs):
    """The figure's data against the detection and the examples' manifest: each keyword's aud_att
    curve at the frame centres (0.0175 + 0.02 n s), its localised frame, S and threshold, the true
    words shaded."""
    pytest.importorskip("matplotlib")
    from vpkl.runtime.audio import read_audio
    from vpkl.runtime.bundle import Bundle
    from vpkl.runtime.detect import detect
    from vpkl.runtime.plot import plot_detections
    from vpkl.runtime.queries import enrol, folder_images
    b = Bundle.load(shipped_bundle)
    wav = example_wavs[3]
    truth = [json.loads(line) for line in open(os.path.join(EXAMPLES, "examples.jsonl"))][3]
    assert truth["audio"] == os.path.basename(wav)
    res = detect(b, wav, enrol(b, folder_images(QUERIES)))
    fig = plot_detections(b, read_audio(wav, 16000), res, truth["words"], title=wav)
    assert len(fig.axes) == 2 + 2 * len(res)
    for k, r in enumerate(res):
        ax, bar = fig.axes[2 + 2 * k], fig.axes[3 + 2 * k]
        curve, marker = ax.lines[0], ax.lines[1]
        assert np.allclose(curve.get_ydata(), r.aud_att)
        assert np.allclose(curve.get_xdata(), 0.0175 + 0.02 * np.arange(len(r.aud_att)))
        assert np.allclose(marker.get_xdata(), 0.0175 + 0.02 * r.frame)
        assert marker.get_linestyle() == ("-" if r.detected else "--")
        assert bar.patches[0].get_width() == pytest.approx(r.score)
        assert np.allclose(bar.lines[0].get_xdata(), r.threshold)
        spans = [p.get_x() for p in ax.patches]
        assert np.allclose(spans, [a for w, a, _ in truth["words"] if w == r.keyword])
    assert [t.get_text() for t in fig.axes[0].texts] == [w for w, _, _ in truth["words"]]


def test_plot_cli_writes_a_png_and_keeps_an_existing_one(capsys, tmp_path, example_wavs):
    pytest.importorskip("matplotlib")
    from PIL import Image
    out = tmp_path / "p.png"
    rc, _, err = cli(capsys, "detect", "--queries", QUERIES, example_wavs[0], "--plot", out,
                     "--manifest", os.path.join(EXAMPLES, "examples.jsonl"))
    assert rc == 0, err
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 600
    before = out.read_bytes()
    rc, _, err = cli(capsys, "detect", "--queries", QUERIES, example_wavs[0], "--plot", out)
    assert rc == 2 and f"--plot {out}: already exists; pass --force" in err and out.read_bytes() == before
    rc, _, err = cli(capsys, "detect", "--queries", QUERIES, *example_wavs[:2], "--plot", tmp_path / "many.png")
    assert rc == 0 and sorted(os.listdir(tmp_path)) == ["many_example_1.png", "many_example_2.png", "p.png"]
    for bad, what in (("p.xyz", "expected a file name ending in one of"), ("p", "ending in one of"),
                      ("no/p.png", "does not exist"), ("dir.png", "is a folder")):
        (tmp_path / "dir.png").mkdir(exist_ok=True)
        rc, out, err = cli(capsys, "detect", "--queries", QUERIES, example_wavs[0], "--plot", tmp_path / bad)
        assert rc == 2 and out == "" and f"vpkl: error: --plot {tmp_path / bad}: " in err and what in err, err
    assert len(os.listdir(tmp_path)) == 4  # the three plots and the folder dir.png


@pytest.mark.parametrize("args", [["detect", "--threshold", "abc", "x.wav"], ["detect"], ["bogus"],
                                  ["stream", "--chunk-ms", "fast", "-"], ["evaluate", "--manifest"]])
def test_usage_errors_are_one_line(args):
    """argparse's own refusals (a flag's type, a missing argument, an unknown command) are one line too."""
    r = run_cli(*args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "error:" in r.stderr, r.stderr
    assert "--help" in r.stderr and "Traceback" not in r.stderr


def test_vpkl_export_usage_error_is_one_line():
    r = run_cli("--bogus", module="vpkl.export.cli")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
