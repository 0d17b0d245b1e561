"""The fused native head (vpkl._native) against the PyTorch reference head (model/head.py).

Real embeddings: the shipped digits bundle on the shipped examples, and the ``paper`` preset
(ResNet50 image branch, D = 2048) on Flickr8k keyword photos and FSDD speech. Edge cases on
random data. Every precision, and every CPU kernel this machine has (VPKL_CPU_ISA caps it).
"""
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

from conftest import DATA, FSDD, ROOT, run_cli
from vpkl.model.head import localising_attention
from vpkl.runtime import scorer as scorer_mod
from vpkl.runtime.errors import VpklInputError

native, why_not = scorer_mod.native_module()
pytestmark = pytest.mark.skipif(native is None, reason=f"native head not built: {why_not}")
FLICKR = os.path.join(DATA, "flickr8k_keywords")
ISAS = ("avx512", "avx2", "portable")
# reduced precisions, against fp32 on real embeddings (README, "Scoring head")
TOL_S = {"fp32": 1e-5, "bf16": 0.01, "int8": 0.01}


def torch_head(query, audio, n_valid=None):
    n = audio.shape[0] if n_valid is None else n_valid
    s, a, i = localising_attention(torch.from_numpy(np.array(query)), torch.from_numpy(np.array(audio))[None],
                                   torch.tensor([n]))
    return s[:, 0].numpy(), a[:, 0].numpy(), i[:, 0].numpy()


def native_head(query, audio, n_valid=None, precision="fp32"):
    return scorer_mod.NativeScorer(native, precision).score(query, audio, n_valid)


def compare(query, audio_list, precision):
    """Worst |dS|, worst |d aud_att|, share of (query, utterance) pairs with the same argmax frame."""
    ds, da, same = 0.0, 0.0, []
    for audio in audio_list:
        rs, ra, _ = torch_head(query, audio)
        s, a, _ = native_head(query, audio, precision=precision)
        ds, da = max(ds, np.abs(s - rs).max()), max(da, np.abs(a - ra).max())
        same.append(a.argmax(1) == ra.argmax(1))
    return ds, da, np.concatenate(same).mean()


@pytest.fixture(scope="module")
def digits_embeddings(shipped_bundle, example_wavs, example_queries):
    from vpkl.runtime.bundle import Bundle
    from vpkl.runtime.detect import embed_audio
    from vpkl.runtime.queries import enrol, keyword_of
    b = Bundle.load(shipped_bundle, scorer="onnx")
    by_kw = {}
    for q in example_queries:
        by_kw.setdefault(keyword_of(q), []).append(q)
    return enrol(b, by_kw).embeddings, [embed_audio(b, w) for w in example_wavs]


@pytest.fixture(scope="module")
def paper_embeddings():
    """paper preset (seed 0) embeddings of one Flickr8k photo per keyword and of FSDD utterances."""
    if not (os.path.isdir(FLICKR) and os.path.isdir(FSDD)):
        pytest.skip(f"Flickr8k keyword photos or FSDD not found under {DATA} (set VPKL_DATA)")
    from vpkl.model.presets import get_preset
    from vpkl.model.vpkl_model import build_model
    from vpkl.runtime.audio import read_audio
    from vpkl.runtime.images import read_image
    torch.manual_seed(0)
    model = build_model("paper").eval()
    photos, seen = [], set()
    for f in sorted(os.listdir(FLICKR)):
        kw = f.split("_")[0]
        if f.endswith(".jpg") and kw not in seen:
            seen.add(kw)
            photos.append(os.path.join(FLICKR, f))
    p = get_preset("paper")
    wavs = [os.path.join(FSDD, w) for w in ("0_george_5.wav", "3_jackson_7.wav", "7_lucas_9.wav", "9_yweweler_2.wav")]
    with torch.no_grad():
        images = model.image(torch.from_numpy(np.stack([read_image(f, p.image) for f in photos]))).numpy()
        x = [read_audio(w, p.front_end.sample_rate) for w in wavs]
        x.append(np.concatenate(x * 3))  # one longer utterance, 12 words
        audio = [model.audio(model.front_end(torch.from_numpy(s)[None])[0])[0].numpy() for s in x]
    return images, audio


def assert_matches_torch(query, audio, precision):
    ds, da, same = compare(query, audio, precision)
    assert ds <= TOL_S[precision], ds
    if precision == "fp32":
        assert da <= 1e-5 and same == 1.0, (da, same)
    else:
        assert same >= 0.99, same


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_digits_bundle_matches_torch(digits_embeddings, precision):
    assert_matches_torch(*digits_embeddings, precision)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_paper_preset_matches_torch(paper_embeddings, precision):
    query, audio = paper_embeddings
    assert query.shape[1:] == (49, 2048) and len(query) == 34
    assert_matches_torch(query, audio, precision)


def _edge(case, rng):
    if case == "N=1":
        return rng.standard_normal((3, 5, 24)), rng.standard_normal((1, 24)), 1
    if case == "equal frames":
        return rng.standard_normal((3, 5, 24)), np.repeat(rng.standard_normal((1, 24)), 9, 0), 9
    if case == "Q=1":
        return rng.standard_normal((1, 49, 40)), rng.standard_normal((30, 40)), 30
    if case == "M=1":
        return rng.standard_normal((4, 1, 40)), rng.standard_normal((30, 40)), 30
    if case == "n_valid<N":
        return rng.standard_normal((4, 7, 40)), rng.standard_normal((50, 40)), 21
    if case == "blocks":  # several k blocks and frame blocks of the kernel
        return rng.standard_normal((6, 49, 1100)), rng.standard_normal((600, 1100)), 577
    raise KeyError(case)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", ["N=1", "equal frames", "Q=1", "M=1", "n_valid<N", "blocks"])
def test_edge_cases_fp32(monkeypatch, isa, case):
    monkeypatch.setenv("VPKL_CPU_ISA", isa)
    q, a, n = (x.astype(np.float32) if isinstance(x, np.ndarray) else x for x in _edge(case, np.random.default_rng(3)))
    s, att, im = native_head(q, a, n)
    rs, ra, ri = torch_head(q, a, n)
    assert np.abs(im - ri).max() <= 1e-5
    assert np.all(att[:, n:] == 0)
    if case == "equal frames":
        # min = max: every valid frame attended equally (model/head.py), so aud_ctx is the frame
        # itself. (torch's GEMM can give equal frames values 1 ulp apart, which min-max
        # normalisation blows up to 0..1: the hand-computed case is the reference here.)
        assert np.all(att == 1.0)
        ictx = (im[:, :, None] * q).mean(1).astype(np.float64)
        f = a[0].astype(np.float64)
        cos = ictx @ f / (np.linalg.norm(ictx, axis=1) * np.linalg.norm(f))
        assert np.abs(s - (1 + cos) / 2).max() <= 1e-6
        return
    assert np.abs(s - rs).max() <= 1e-5
    assert np.abs(att - ra).max() <= 1e-5
    assert (att.argmax(1) == ra.argmax(1)).all()


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("isa", ISAS)
def test_reduced_precision_kernels_agree(monkeypatch, precision, isa):
    """The AVX-512 kernels and the portable emulation of bf16/int8 give the same results."""
    q, a, n = _edge("blocks", np.random.default_rng(5))
    q, a = q.astype(np.float32), a.astype(np.float32)
    monkeypatch.setenv("VPKL_CPU_ISA", "portable")
    ref = native_head(q, a, n, precision)
    monkeypatch.setenv("VPKL_CPU_ISA", isa)
    got = native_head(q, a, n, precision)
    for x, y in zip(got, ref):
        assert np.abs(x - y).max() <= 1e-4


def test_strided_and_float64_inputs():
    rng = np.random.default_rng(4)
    q = rng.standard_normal((5, 40, 6)).astype(np.float32).transpose(0, 2, 1)[::-1]  # (5, 6, 40), strided
    a = rng.standard_normal((40, 33)).astype(np.float32).T[:, ::-1]                  # (33, 40), negative stride
    assert not q.flags.c_contiguous and not a.flags.c_contiguous
    for got, want in zip(native_head(q, a, 20), torch_head(q, a, 20)):
        assert np.abs(got - want).max() <= 1e-5
    got64 = native_head(q.astype(np.float64), a.astype(np.float64), 20)
    for got, want in zip(got64, torch_head(q, a, 20)):
        assert got.dtype == np.float32 and np.abs(got - want).max() <= 1e-5


@pytest.mark.parametrize("bad,what", [
    (lambda q, a: (q[0], a, None), "query: expected a (Q, M, D)"),
    (lambda q, a: (q, a[:, :5], None), "audio: 5 values per frame"),
    (lambda q, a: (q.astype(np.int32), a, None), "query: expected float32"),
    (lambda q, a: (q, a, 0), "n_valid: 0"),
    (lambda q, a: (q, a, 11), "n_valid: 11"),
    (lambda q, a: (q, np.where(np.arange(10)[:, None] == 3, np.nan, a).astype(np.float32), None), "audio: contains NaN"),
    (lambda q, a: (np.where(q > 1, np.inf, q).astype(np.float32), a, None), "query: contains NaN or Inf"),
    (lambda q, a: (q[:, :0], a, None), "query: empty"),
    (lambda q, a: (q, a, 2.7), "n_valid: 2.7, expected a whole number"),
    (lambda q, a: (q, a, "3"), "n_valid: '3'"),
    (lambda q, a: (q, a, float("nan")), "n_valid: nan"),
])
def test_bad_input_names_the_input(bad, what):
    rng = np.random.default_rng(0)
    q, a = rng.standard_normal((2, 3, 8)).astype(np.float32), rng.standard_normal((10, 8)).astype(np.float32)
    with pytest.raises(VpklInputError, match=what.replace("(", r"\(").replace(")", r"\)")):
        native_head(*bad(q, a))


@pytest.mark.parametrize("threads", [-1, None, 1.5, "2", True])
def test_bad_thread_counts(threads):
    with pytest.raises(VpklInputError, match="threads"):
        scorer_mod.NativeScorer(native, "fp32", threads)


def test_thread_counts_follow_the_one_rule():
    """The native scorer takes thread counts by the runtime's one rule (vpkl.runtime.checks), as
    Bundle.load does: more than the cores is capped to the cores."""
    import os
    assert scorer_mod.NativeScorer(native, "fp32", 5000).threads == os.cpu_count()


def test_more_threads_than_cores_and_unknown_isa(monkeypatch):
    """Asking for more threads than the hardware has uses what it has (no crash)."""
    q = np.random.default_rng(0).standard_normal((3000, 1, 4)).astype(np.float32)
    a = np.ones((3, 4), np.float32)
    s, _, _ = native.score(q, a, 3, "fp32", 100000)
    want, _, _ = torch_head(q, a)
    assert np.abs(s - want).max() <= 1e-5
    monkeypatch.setenv("VPKL_CPU_ISA", "AVX2")
    with pytest.raises(VpklInputError, match="VPKL_CPU_ISA"):
        scorer_mod.NativeScorer(native, "fp32")


def test_int8_refuses_what_its_sums_cannot_hold():
    q, a = np.ones((1, 2, 70000), np.float32), np.ones((3, 70000), np.float32)
    with pytest.raises(VpklInputError, match="int8: D = 70000"):
        native_head(q, a, None, "int8")
    assert np.isfinite(native_head(q, a, None, "bf16")[0]).all()


@pytest.mark.parametrize("threads", [-1, None, 1.5, True])
def test_bundle_refuses_bad_thread_counts_before_loading(shipped_bundle, threads):
    from vpkl.runtime.bundle import Bundle
    with pytest.raises(VpklInputError, match="threads"):
        Bundle.load(shipped_bundle, threads=threads)


def test_bundle_caps_threads_at_the_cores(shipped_bundle):
    from vpkl.runtime.bundle import Bundle
    b = Bundle.load(shipped_bundle, threads=100000)
    assert b.scorer.threads == os.cpu_count()


def test_bundle_checks_query_shape_with_either_scorer(shipped_bundle):
    from vpkl.runtime.bundle import Bundle
    for s in ("native", "onnx"):
        b = Bundle.load(shipped_bundle, scorer=s)
        with pytest.raises(VpklInputError, match="M = 16, D = 128"):
            b.score(np.zeros((2, 3, 128), np.float32), np.ones((5, 128), np.float32))


def test_enrolled_queries_are_laid_out_once(shipped_bundle, example_wavs, example_queries):
    """A QuerySet is prepared for the scorer once (an explicit PreparedQueries, not a cache), its values
    cannot change afterwards, and what it scores equals the ONNX head on the same values."""
    from vpkl.runtime.bundle import Bundle
    from vpkl.runtime.queries import QuerySet
    from vpkl.runtime.scorer import PreparedQueries
    b = Bundle.load(shipped_bundle, scorer="native")
    onnx = Bundle.load(shipped_bundle, scorer="onnx")
    x = np.random.default_rng(2).standard_normal((2, 16, b.embed_dim)).astype(np.float32)
    qs = QuerySet(["a", "b"], x, scorer=b.scorer)
    assert isinstance(qs.prepared, PreparedQueries) and qs.prepared.scorer is b.scorer
    assert qs.embeddings.dtype == np.float32 and not qs.embeddings.flags.writeable
    with pytest.raises(ValueError):
        qs.embeddings.flags.writeable = True    # read-only for good: the prepared layout stays true to it
    frames = np.random.default_rng(1).standard_normal((20, b.embed_dim)).astype(np.float32)
    before = b.score(qs, frames)[0]
    x[:] = 0                                    # the QuerySet holds its own copy
    calls = []
    real = b.scorer._layout
    b.scorer._layout = lambda q: calls.append(q) or real(q)
    after, want = b.score(qs, frames)[0], onnx.score(qs.embeddings, frames)[0]
    assert calls == []                          # prepared: not laid out again
    assert np.array_equal(before, after) and np.abs(after - want).max() <= 1e-5
    w = np.array(qs.embeddings)                 # a plain array is laid out on every call
    s1 = b.score(w, frames)[0]
    w[0] *= -1
    s2 = b.score(w, frames)[0]
    assert len(calls) == 2 and s1[0] != s2[0] and s1[1] == s2[1]
    # queries prepared for another scorer (or none) are scored from their values, as the ONNX head does
    for other in (qs.prepare(onnx), QuerySet(["a", "b"], qs.embeddings)):
        assert np.abs(b.score(other, frames)[0] - want).max() <= 1e-5
    assert np.abs(onnx.score(qs, frames)[0] - want).max() <= 1e-6


def test_scorer_choice_and_fallback(monkeypatch, shipped_bundle, example_wavs):
    from vpkl.runtime.bundle import Bundle
    from vpkl.runtime.detect import embed_audio
    nat = Bundle.load(shipped_bundle)
    assert nat.scorer.name.startswith("native fp32")
    onnx = Bundle.load(shipped_bundle, scorer="onnx")
    assert onnx.scorer.name == "onnx"
    q = np.random.default_rng(0).standard_normal((3, 16, nat.embed_dim)).astype(np.float32)
    frames = embed_audio(nat, example_wavs[0])
    for x, y in zip(nat.score(q, frames), onnx.score(q, frames)):
        assert np.abs(x - y).max() <= 1e-5
    monkeypatch.setenv("VPKL_SCORER", "onnx")
    assert Bundle.load(shipped_bundle).scorer.name == "onnx"
    monkeypatch.setenv("VPKL_SCORER", "fast")
    with pytest.raises(VpklInputError, match="VPKL_SCORER"):
        Bundle.load(shipped_bundle)
    monkeypatch.delenv("VPKL_SCORER")
    monkeypatch.setattr(scorer_mod, "native_module", lambda: (None, "not built here"))
    assert Bundle.load(shipped_bundle).scorer.name == "onnx"   # auto falls back
    with pytest.raises(VpklInputError, match="scorer 'native': not built here"):
        Bundle.load(shipped_bundle, scorer="native")
    with pytest.raises(VpklInputError, match="only the native scorer"):
        Bundle.load(shipped_bundle, head_precision="int8")


def test_vpkl_info_and_detect_flags(shipped_bundle, example_wavs, example_queries):
    r = run_cli("info", "--bundle", shipped_bundle, "--head-precision", "int8")
    assert r.returncode == 0, r.stderr
    assert "CPU kernels: fp32" in r.stdout and "scorer native int8" in r.stdout
    outs = [run_cli("detect", "--bundle", shipped_bundle, "--query", example_queries[0], "--json",
                    "--scorer", s, example_wavs[0]) for s in ("native", "onnx")]
    assert all(o.returncode == 0 for o in outs), outs[0].stderr + outs[1].stderr
    import json
    a, b = (json.loads(o.stdout)["results"][0] for o in outs)
    assert a["frame"] == b["frame"] and abs(a["score"] - b["score"]) <= 1e-4  # score printed to 4 places


def test_cuda_kernel_matches_torch():
    if not native.has_cuda():
        pytest.skip("vpkl was built without the CUDA kernel (no nvcc, or VPKL_CUDA=OFF)")
    rng = np.random.default_rng(6)
    q = rng.standard_normal((9, 49, 300)).astype(np.float32)
    a = rng.standard_normal((130, 300)).astype(np.float32)
    try:
        got = native.score(q, a, 111, "fp32", 0, True)
    except RuntimeError as e:
        pytest.skip(f"CUDA kernel built but not runnable here: {e}")
    for x, y in zip(got, torch_head(q, a, 111)):
        assert np.abs(x - y).max() <= 1e-4
    s16, a16, _ = native.score(q, a, 111, "bf16", 0, True)
    rs, ra, _ = torch_head(q, a, 111)
    assert np.abs(s16 - rs).max() <= 0.01


def test_ctest_builds_and_passes(tmp_path):
    """The plain C++ test target (native/tests/test_head.cpp) under ctest, CUDA off."""
    if shutil.which("cmake") is None or shutil.which("ctest") is None:
        pytest.skip("cmake/ctest not on PATH")
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", ROOT, "-B", str(build), "-DVPKL_CUDA=OFF"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "-j2"], check=True, capture_output=True)
    r = subprocess.run(["ctest", "--test-dir", str(build), "--output-on-failure"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
