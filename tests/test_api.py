"""The front door, ``import vpkl``: Model against the functions it wraps (Bundle.load + enrol + detect,
Spotter fed by hand) and against the words examples.jsonl says were spoken; no torch; the wheel."""
import json
import os
import subprocess
import sys
import threading
import tomllib

import numpy as np
import pytest
from PIL import Image

import vpkl
from vpkl.runtime.audio import read_audio
from vpkl.runtime.bundle import Bundle
from vpkl.runtime.detect import detect
from vpkl.runtime.errors import VpklInputError
from vpkl.runtime.images import read_image
from vpkl.runtime.queries import QuerySet, enrol, folder_images
from vpkl.runtime.stream import Spotter, StreamConfig

from conftest import ASSETS, EXAMPLES, ROOT

QUERIES = os.path.join(EXAMPLES, "queries")


def examples():
    with open(os.path.join(EXAMPLES, "examples.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def model():
    return vpkl.Model(queries=QUERIES)


@pytest.fixture(scope="module")
def reference(shipped_bundle):
    """The same thing wired by hand from the runtime's functions."""
    b = Bundle.load(shipped_bundle)
    return b, enrol(b, folder_images(QUERIES))


def by_hand(b, qs, x, chunk=1600, threshold=None, **cfg):
    sp = Spotter(b, qs, threshold, StreamConfig(**cfg))
    out = []
    for i in range(0, len(x), chunk):
        out += sp.feed(x[i:i + chunk])
    return [(d.keyword, d.frame, d.score) for d in out + sp.flush()]


def test_all_names_and_the_docstring_example():
    assert set(vpkl.__all__) == {"Model", "Bundle", "QuerySet", "KeywordResult", "Spotter", "StreamConfig",
                                 "Detection", "VpklInputError", "EXAMPLES", "__version__"}
    for name in vpkl.__all__:
        assert getattr(vpkl, name) is not None, name
    assert "vpkl.Model()" in vpkl.__doc__ and "model.stream()" in vpkl.__doc__


def test_import_vpkl_does_not_import_torch():
    """In a fresh interpreter: import vpkl (which alone loads no runtime, not even onnxruntime), load,
    enrol, detect and stream; torch never enters sys.modules."""
    code = ("import sys, vpkl\n"
            "assert 'onnxruntime' not in sys.modules\n"
            f"m = vpkl.Model(queries={QUERIES!r})\n"
            f"r = m.detect({EXAMPLES + '/example_4.wav'!r})\n"
            f"d = list(m.stream().run({EXAMPLES + '/example_4.wav'!r}))\n"
            "print(len(r), len(d), sorted(k for k in sys.modules if k == 'torch' or k.startswith('torch.')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["10", "3", "[]"]


def test_model_loads_the_shipped_bundle_by_default(model, shipped_bundle):
    assert os.path.samefile(model.bundle.path, shipped_bundle)
    assert os.path.samefile(vpkl.runtime.demo.ASSETS, ASSETS)   # found by importlib.resources
    assert model.keywords == sorted(model.keywords) and len(model.keywords) == 10
    assert model.threshold == model.bundle.threshold


def test_detect_equals_the_functions_and_finds_the_spoken_words(model, reference):
    """Model.detect gives what Bundle.load + enrol + detect give, and its detections are mostly where
    examples.jsonl says the keyword was spoken (the README's demo: 10 of 13 detections, 10 of 12 words;
    of the others one falls on the word "happy", which is no keyword, two near an utterance's end)."""
    b, qs = reference
    correct = wrong = found = said = 0
    for ex in examples():
        wav = os.path.join(EXAMPLES, ex["audio"])
        got, want = model.detect(wav), detect(b, wav, qs)
        assert [(r.keyword, r.detected, r.frame) for r in got] == [(r.keyword, r.detected, r.frame) for r in want]
        assert np.array_equal([r.score for r in got], [r.score for r in want])
        for r in got:
            if r.detected:
                hit = any(w == r.keyword and a <= r.time_s <= e for w, a, e in ex["words"])
                correct, wrong = correct + hit, wrong + (not hit)
        said += len({w for w, _, _ in ex["words"]})
        found += sum(r.detected and any(w == r.keyword and a <= r.time_s <= e for w, a, e in ex["words"])
                     for r in got)
    assert correct >= 10 and wrong <= 3 and found >= 10 and said == 12
    # samples in memory give the same as the file
    x = read_audio(os.path.join(EXAMPLES, "example_2.wav"), 16000)
    assert [r.score for r in model.detect(x)] == [r.score for r in detect(b, x, qs)]


def test_every_way_to_enrol_gives_the_same_queries(shipped_bundle, reference):
    """A folder, a list of files, {keyword: paths}, {keyword: uint8 pixels read by pillow}, {keyword:
    pillow images}, {keyword: preprocessed arrays} and a QuerySet of another bundle: the same embeddings
    as enrol on the folder."""
    b, qs = reference
    m = vpkl.Model(shipped_bundle, scorer="onnx")
    files = sorted(os.path.join(QUERIES, f) for f in os.listdir(QUERIES))
    groups = {}
    for f in files:
        groups.setdefault(os.path.basename(f).split("_")[0], []).append(f)
    pixels = {k: [np.asarray(Image.open(p).convert("L")) for p in v] for k, v in groups.items()}
    pillow = {k: [Image.open(p) for p in v] for k, v in groups.items()}
    inputs = {k: [read_image(p, b.image) for p in v] for k, v in groups.items()}
    single = {"seven": pixels["seven"][0]}            # one image, not a list
    for how in (QUERIES, files, groups, pixels, pillow, inputs, qs):
        got = m.enrol(how)
        assert got.keywords == qs.keywords, how
        assert np.abs(got.embeddings - qs.embeddings).max() <= 1e-6
        assert got.prepared.scorer is m.bundle.scorer and m.queries is got
    got = m.enrol(single)
    assert got.keywords == ["seven"]
    want = b.embed_images(read_image(groups["seven"][0], b.image)[None])
    assert np.abs(got.embeddings - want).max() <= 1e-6
    assert m.enrol(files[0]).keywords == ["eight"]      # one file: its name's keyword
    assert m.enrol(got) is got                          # already prepared for this model: kept as it is


def test_a_stream_is_the_spotter_fed_by_hand(model, reference, tmp_path):
    """model.stream().run() on a path, an array and an iterable of chunks: the detections of a
    Spotter fed the same audio chunk by chunk and flushed (and its options reach StreamConfig)."""
    b, qs = reference
    x = np.concatenate([read_audio(os.path.join(EXAMPLES, e["audio"]), 16000) for e in examples()])
    want = by_hand(b, qs, x)
    assert len(want) >= 5
    import soundfile as sf
    path = tmp_path / "examples.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    got_file = [(d.keyword, d.frame, d.score) for d in model.stream().run(path)]
    got_array = [(d.keyword, d.frame, d.score) for d in model.stream().run(x)]
    got_chunks = [(d.keyword, d.frame, d.score) for d in model.stream().run(x[i:i + 1600]
                                                                             for i in range(0, len(x), 1600))]
    assert got_file == want and got_array == want and got_chunks == want
    s = model.stream(threshold=0.5, window_s=2.0, confirm=3)
    assert s.config == StreamConfig(window_s=2.0, confirm=3) and set(s.thresholds) == {0.5}
    assert [(d.keyword, d.frame, d.score) for d in s.run(x)] == by_hand(b, qs, x, threshold=0.5, window_s=2.0,
                                                                         confirm=3)


def test_many_streams_at_once_share_one_model(model, reference):
    """Four streams of one model run in four threads at once: each gives what it gives alone."""
    b, qs = reference
    audios = [read_audio(os.path.join(EXAMPLES, e["audio"]), 16000) for e in examples()]
    audios = [np.concatenate([a, audios[(i + 1) % 4], a]) for i, a in enumerate(audios)]
    alone = [by_hand(b, qs, a) for a in audios]
    got = [None] * 4
    go = threading.Barrier(4)

    def work(i):
        s = model.stream()
        go.wait()
        got[i] = [(d.keyword, d.frame, d.score) for d in s.run(audios[i], chunk_s=0.1)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, a in zip(got, alone):
        assert [(k, f) for k, f, _ in g] == [(k, f) for k, f, _ in a] and len(a) >= 4
        assert np.abs(np.array([x[2] for x in g]) - [x[2] for x in a]).max() <= 1e-5


@pytest.mark.parametrize("call, what", [
    (lambda: vpkl.Model("/no/such/bundle"), "/no/such/bundle: no such bundle folder"),
    (lambda: vpkl.Model(colour="red"), "colour: not an option of Bundle.load"),
    (lambda: vpkl.Model(Bundle.load(os.path.join(ASSETS, "digits")), threads=1), "threads given with an already"),
    (lambda: vpkl.Model().detect(os.path.join(EXAMPLES, "example_1.wav")), "queries: none enrolled"),
    (lambda: vpkl.Model().stream(), "queries: none enrolled"),
    (lambda: vpkl.Model(queries=QUERIES).stream(window=3), "window: not a stream option"),
    (lambda: vpkl.Model(queries=42), "queries: got int"),
    (lambda: vpkl.Model(queries={}), "queries: none given"),
    (lambda: vpkl.Model(queries={"seven": []}), "query 'seven': no images"),
    (lambda: vpkl.Model(queries={"seven": np.zeros((8, 8), np.float64)}), "'seven': image array of shape \\(8, 8\\)"),
    (lambda: vpkl.Model(queries="/no/such/dir"), "/no/such/dir: no such query folder or image file"),
    (lambda: list(vpkl.Model(queries=QUERIES).stream().run("/no/such.wav")), "/no/such.wav"),
    (lambda: vpkl.Model(queries=QUERIES).stream().run(np.zeros(100), chunk_s=0), "chunk_s"),
    (lambda: vpkl.Model(queries=QUERIES).stream().run(42), "source: got int"),
    (lambda: list(vpkl.Model(queries=QUERIES).stream().run([np.zeros(100), np.full(9, np.nan)])),
     "chunk 1: holds 9 NaN"),
    (lambda: vpkl.Model(queries=QUERIES).detect(np.zeros(10, np.float32)), "audio: 0.6 ms of audio"),
])
def test_bad_input_is_named(call, what):
    with pytest.raises(VpklInputError, match=what):
        call()


def test_every_package_folder_is_in_the_wheel(tmp_path):
    """Build the wheel (pip wheel --no-build-isolation with scikit-build-core, the native head switched
    off so that it takes seconds, not the ~30 s compile that its own tests cover) and read it back with
    zipfile: every top-level folder of the repository with an __init__.py is vpkl/<folder>/ with all its
    .py files, the root __init__.py is vpkl/__init__.py, and the shipped bundle and examples are there."""
    pytest.importorskip("scikit_build_core", reason="scikit-build-core is not installed (pip install '.[test]')")
    import zipfile
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), "-Ccmake.define.VPKL_NATIVE=OFF", f"-Cbuild-dir={tmp_path / 'build'}",
                        ROOT], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = tmp_path.glob("vpkl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = [d for d in sorted(os.listdir(ROOT)) if os.path.isfile(os.path.join(ROOT, d, "__init__.py"))]
    assert {"runtime", "export", "calibration", "benchmarks", "cli", "model", "assets"} <= set(packages)
    assert "vpkl/__init__.py" in names
    for d in packages:
        for dirpath, dirnames, files in os.walk(os.path.join(ROOT, d)):
            dirnames[:] = [x for x in dirnames if x != "__pycache__"]
            rel = os.path.relpath(dirpath, ROOT)
            for f in files:
                if f.endswith(".py") or d == "assets":
                    assert f"vpkl/{rel}/{f}".replace(os.sep, "/") in names, (rel, f)
    # the pyproject mapping names exactly those folders (a new package needs a line there)
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        mapping = tomllib.load(f)["tool"]["scikit-build"]["wheel"]["packages"]
    assert sorted(mapping.values()) == packages and all(k == f"vpkl/{v}" for k, v in mapping.items())


def test_arrays_at_other_rates_files_objects_and_the_examples_folder():
    """Model.detect(samples, sample_rate=8000) resamples (an 8 kHz array was taken for 16 kHz), an
    open binary file reads as its path does, a (channels, samples) array is named as such, and
    vpkl.EXAMPLES and vpkl.runtime need no import of their own."""
    import io
    import soundfile as sf
    import soxr
    import vpkl
    m = vpkl.Model()
    m.enrol(os.path.join(vpkl.EXAMPLES, "queries"))
    wav = os.path.join(vpkl.EXAMPLES, "example_4.wav")
    by_path = m.detect(wav)
    x, sr = sf.read(wav, dtype="float32")
    assert sr == 16000
    # reference: soxr resampling it to 8 kHz and back by hand, then detect at the bundle's rate
    y = soxr.resample(x, 16000, 8000)
    by_hand = m.detect(soxr.resample(y, 8000, 16000).astype(np.float32))
    at_8k = m.detect(y, sample_rate=8000)
    assert [(r.keyword, r.detected, r.frame) for r in at_8k] == [(r.keyword, r.detected, r.frame) for r in by_hand]
    assert max(abs(a.score - b.score) for a, b in zip(at_8k, by_hand)) < 1e-4
    with open(wav, "rb") as f:
        by_file = m.detect(io.BytesIO(f.read()))
    assert [r.score for r in by_file] == pytest.approx([r.score for r in by_path], abs=1e-6)
    with pytest.raises(VpklInputError, match=r"x\.T for channels first"):
        m.detect(np.stack([x, x]))
    with pytest.raises(VpklInputError, match="sample_rate"):
        m.detect(y, sample_rate=1)
    assert vpkl.runtime.__name__ == "vpkl.runtime"
