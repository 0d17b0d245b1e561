"""Streaming: the incremental front end, the stateful causal graph and the windowed scoring against
independent references (the PyTorch model, offline `detect`), and the Spotter's rules."""
import threading

import numpy as np
import pytest
import torch

from vpkl.model.head import localising_attention
from vpkl.model.vpkl_model import load_checkpoint
from vpkl.runtime.audio import read_audio
from vpkl.runtime.bundle import Bundle
from vpkl.runtime.detect import detect, embed_audio
from vpkl.runtime.errors import VpklInputError
from vpkl.runtime.features import FrontEndConfig, StreamingFrontEnd, features
from vpkl.runtime.queries import enrol, folder_images
from vpkl.runtime.stream import Spotter, StreamConfig

from conftest import EXAMPLES, cut_digital_silence

CHUNKINGS = [1, 160, 1000, 16000, "random"]


def pieces(x, size, seed=0):
    """Split ``x`` into chunks of ``size`` samples, or of random sizes (1 to 4000) for "random"."""
    if size != "random":
        return [x[i:i + size] for i in range(0, len(x), size)]
    rng, out, i = np.random.default_rng(seed), [], 0
    while i < len(x):
        n = int(rng.integers(1, 4000))
        out.append(x[i:i + n])
        i += n
    return out


def run(spotter, x, size, seed=0):
    dets = []
    for p in pieces(x, size, seed):
        dets += spotter.feed(p)
    return dets + spotter.flush()


@pytest.fixture(scope="module")
def shipped(shipped_bundle):
    b = Bundle.load(shipped_bundle)
    return b, enrol(b, folder_images(f"{EXAMPLES}/queries"))


@pytest.mark.parametrize("size", CHUNKINGS)
def test_front_end_frames_do_not_depend_on_the_chunking(example_wavs, size):
    """Chunked log-mel frames equal the torch front end on the whole utterance (the training maths)."""
    from vpkl.model.frontend import FrontEnd
    x = read_audio(example_wavs[1], 16000)
    fe = StreamingFrontEnd(FrontEndConfig())
    got = np.concatenate([fe(p) for p in pieces(x, size)])
    ref, _ = FrontEnd(fe.cfg)(torch.from_numpy(x)[None])
    assert got.shape == ref.shape[1:]
    assert np.abs(got - ref[0].numpy()).max() < 1e-4
    assert np.abs(got - features(x, fe.cfg)).max() <= 1e-5


@pytest.mark.parametrize("size", [160, "random"])
def test_stream_window_equals_pytorch_on_the_whole_utterance(random_bundle, example_wavs, example_queries, size):
    """Front end + causal graph over chunks (states carried) + BiLSTM window + head, against the
    PyTorch model run once on the whole utterance: the window covers it, so S and aud_att agree."""
    path, ckpt = random_bundle
    model, _ = load_checkpoint(ckpt)
    b = Bundle.load(path)
    qs = enrol(b, {"q": example_queries[:2], "r": example_queries[2:3]})
    for wav in example_wavs:
        x = read_audio(wav, 16000)
        sp = Spotter(b, qs, threshold=1.0, config=StreamConfig(window_s=10.0))
        run(sp, x, size)
        kept, gap = cut_digital_silence(x)          # example_4's second of zeros is not heard
        with torch.no_grad():
            feats, _ = model.front_end(torch.from_numpy(kept)[None])
            frames = model.audio(feats)
            s, att, _ = localising_attention(torch.tensor(qs.embeddings), frames, torch.tensor([frames.shape[1]]))
        w = sp.last_window
        assert (w.start, w.end) == (0, frames.shape[1] + len(gap))
        assert np.abs(w.scores - s[:, 0].numpy()).max() < 1e-4
        assert not w.aud_att[:, gap].any()          # nothing heard in the silence
        assert np.abs(np.delete(w.aud_att, gap, axis=1) - att[:, 0].numpy()).max() < 1e-3



def test_detections_do_not_depend_on_the_chunking(shipped, example_wavs):
    b, qs = shipped
    x = np.concatenate([read_audio(w, 16000) for w in example_wavs])  # 8 s: longer than the window
    runs = {}
    for size in CHUNKINGS:
        dets = run(Spotter(b, qs), x, size)
        runs[size] = [(d.keyword, d.frame, d.span) for d in dets]
        scores = [d.score for d in dets]
        if size == 160:
            ref_scores = scores
        elif size != 1:
            assert np.allclose(scores, ref_scores, atol=1e-4)
    assert len(runs[160]) >= 5
    for size in CHUNKINGS:
        assert runs[size] == runs[160], size


def test_each_detection_is_what_detect_says_of_the_audio_heard(shipped, example_wavs):
    """Each shipped example as a stream: every streamed detection fired by a window that starts at
    the first frame (all but the end of example_4, 3.2 s against the 3 s window) is offline
    `detect` on the audio that gives exactly the frames of that window (same S, same frame), and
    every keyword `detect` finds in the whole file is streamed at its place. (The stream may also
    report a keyword whose S passes the threshold on the audio heard so far and not on the whole
    file: it decides on what it has heard.)"""
    b, qs = shipped
    fe = b.front_end
    checked = 0
    for wav in example_wavs:
        x = read_audio(wav, 16000)
        dets = run(Spotter(b, qs), x, 1600)
        for d in dets:
            start, end = d.window
            if start:
                continue
            heard = x[:min(len(x), 2 * end * fe.hop_length + fe.win_length)]  # 2 end + 1 log-mel frames: end frames
            r = next(r for r in detect(b, heard, qs) if r.keyword == d.keyword)
            assert r.detected and r.frame == d.frame and abs(r.score - d.score) < 1e-5, (wav, d, r)
            checked += 1
        for r in detect(b, wav, qs):
            if r.detected:
                assert any(d.keyword == r.keyword and abs(d.frame - r.frame) <= 2 for d in dets), (wav, r)
    assert checked >= 8


def test_one_spoken_word_gives_one_detection(shipped, example_wavs):
    """The refractory time: on the examples no keyword is reported twice within it (the words are
    0.4-0.6 s long and the window is scored every 0.2 s, so without it each would fire 2-4 times)."""
    b, qs = shipped
    cfg = StreamConfig()
    x = np.concatenate([read_audio(w, 16000) for w in example_wavs])
    dets = run(Spotter(b, qs, config=cfg), x, 1600)
    for kw in {d.keyword for d in dets}:
        t = sorted(d.time_s for d in dets if d.keyword == kw)
        assert all(b2 - a2 >= cfg.refractory_s - 1e-9 for a2, b2 in zip(t, t[1:])), (kw, t)
    no_refractory = run(Spotter(b, qs, config=StreamConfig(refractory_s=0.0)), x, 1600)
    assert len(no_refractory) > len(dets)


def test_detection_fields(shipped, example_wavs):
    b, qs = shipped
    sp = Spotter(b, qs, threshold={"one": 0.5})
    x = read_audio(example_wavs[2], 16000)  # "three (happy) one seven"; one is detected
    dets = run(sp, x, 1600)
    d = next(d for d in dets if d.keyword == "one")
    assert d.threshold == 0.5 and d.score >= 0.5
    assert d.time_s == pytest.approx(b.frame_time(d.frame))
    assert d.span[0] <= d.frame <= d.span[1] and d.span_s[0] <= d.time_s <= d.span_s[1]
    assert 0 <= d.chunk <= sp.chunks and d.latency_ms > 0
    # the delay is the audio seen when it fired (whole chunks of 1600 samples) minus the frame's time
    seen = min(len(x), (d.chunk + 1) * 1600) / 16000
    assert d.delay_s == pytest.approx(seen - d.time_s)
    assert d.delay_s >= StreamConfig().lookahead_s or d.chunk == sp.chunks


def test_bad_chunks(shipped, example_wavs):
    """A bad chunk is refused by name and leaves the stream as it was; stereo is averaged; empty is a no-op."""
    b, qs = shipped
    x = read_audio(example_wavs[3], 16000)
    ref = [(d.keyword, d.frame) for d in run(Spotter(b, qs), x, 1600)]
    sp = Spotter(b, qs)
    dets = []
    for i, p in enumerate(pieces(x, 1600)):
        if i == 3:
            bad = p.copy()
            bad[5] = np.nan
            with pytest.raises(VpklInputError, match="chunk 3: holds 1 NaN"):
                sp.feed(bad)
            for wrong, what in [(p.astype(np.complex64), "dtype complex64"), (p > 0, "dtype bool"),
                                (p[None, None], "expected \\(samples,\\)"), (np.stack([p, p]), "channels first"),
                                (np.zeros((100, 0), np.float32), "got shape \\(100, 0\\)"),
                                (np.full(100, 1e39), "beyond the float32 range")]:
                with pytest.raises(VpklInputError, match=what):
                    sp.feed(wrong)
            assert sp.feed(np.zeros(0, np.float32)) == []
            dets += sp.feed(np.stack([p, p], axis=1))  # stereo: averaged to the same mono
        else:
            dets += sp.feed((p * 32768).round().clip(-32768, 32767).astype(np.int16) if i == 5 else p)
    dets += sp.flush()
    assert [(d.keyword, d.frame) for d in dets] == ref
    with pytest.raises(VpklInputError, match="reset"):
        sp.feed(x[:100])
    sp.reset()
    assert [(d.keyword, d.frame) for d in run(sp, x, 1600)] == ref


@pytest.mark.parametrize("cfg, what", [
    (StreamConfig(hop_s=4.0), "hop_s"), (StreamConfig(window_s=0.0), "window_s"),
    (StreamConfig(lookahead_s=5.0), "lookahead_s"), (StreamConfig(refractory_s=-1.0), "refractory_s"),
    (StreamConfig(span_level=0.0), "span_level"), (StreamConfig(hop_s=float("nan")), "hop_s"),
])
def test_impossible_config(shipped, cfg, what):
    b, qs = shipped
    with pytest.raises(VpklInputError, match=what):
        Spotter(b, qs, config=cfg)


def test_bad_thresholds(shipped):
    b, qs = shipped
    for t in ("0.5", True, {"seven": None}, np.array([0.5])):
        with pytest.raises(VpklInputError, match="expected a score in"):
            Spotter(b, qs, threshold=t)
    Spotter(b, qs, threshold=np.float32(0.5), config=StreamConfig(window_s=np.float64(1.0), confirm=np.int64(3)))
    with pytest.raises(VpklInputError, match="'seven'.*\\[0, 1\\]"):
        Spotter(b, qs, threshold={"seven": 1.5})
    with pytest.raises(VpklInputError, match="no query"):
        Spotter(b, qs, threshold={"dog": 0.5})


def test_a_second_thread_is_refused_and_changes_nothing(shipped, example_wavs, monkeypatch):
    """Thread A is held inside feed() (in the causal encoder); meanwhile feed, flush and reset from
    this thread are refused by name; then the stream goes on and gives what a one-thread stream gives."""
    b, qs = shipped
    x = read_audio(example_wavs[3], 16000)
    ref = [(d.keyword, d.frame, d.score) for d in run(Spotter(b, qs), x, 1600)]
    sp = Spotter(b, qs)
    inside, release, real = threading.Event(), threading.Event(), b.encode_causal

    def held(*args):
        if threading.current_thread().name == "A":
            inside.set()
            assert release.wait(60)
        return real(*args)

    monkeypatch.setattr(b, "encode_causal", held)
    p = pieces(x, 1600)
    out = []
    a = threading.Thread(target=lambda: out.extend(sp.feed(p[0])), name="A")
    a.start()
    assert inside.wait(60)
    for call, name in ((lambda: sp.feed(p[1]), "feed"), (sp.flush, "flush"), (sp.reset, "reset")):
        with pytest.raises(VpklInputError, match=f"stream: {name}\\(\\) called while another thread"):
            call()
    release.set()
    a.join()
    assert sp.chunks == 1 and sp.audio_s == len(p[0]) / 16000
    for q in p[1:]:
        out += sp.feed(q)
    assert [(d.keyword, d.frame, d.score) for d in out + sp.flush()] == ref


def test_two_threads_feeding_one_spotter_never_corrupt_it(shipped, example_wavs):
    """Two real threads feed one Spotter at once, 10 ms chunks each: every chunk is either taken whole or
    refused, and afterwards the stream holds exactly the taken audio: as many samples and chunks, and as
    many frames as the offline encoder gives for that many samples (unguarded, the two interleaved inside
    feed and it counted more frames than the audio holds)."""
    b, qs = shipped
    x = read_audio(example_wavs[1], 16000)
    sp = Spotter(b, qs)
    taken, refused, dets = [0, 0], [0, 0], []
    go = threading.Barrier(2)

    def work(i):
        go.wait()
        for p in pieces(x, 160):
            try:
                dets.extend(sp.feed(p))
                taken[i] += len(p)
            except VpklInputError as e:
                assert "another thread" in str(e)
                refused[i] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dets += sp.flush()
    n_chunks = 2 * len(pieces(x, 160))
    assert sp.chunks == n_chunks - sum(refused) and round(sp.audio_s * 16000) == sum(taken)
    assert sp.n_frames == len(embed_audio(b, np.zeros(sum(taken), np.float32)))
    assert all(0 <= d.frame < sp.n_frames for d in dets)


def test_unsigned_chunks_are_offset_binary_as_detect_takes_them():
    """uint8 chunks were refused by feed though detect took them: both read uint8 128 as silence,
    (x - 128) / 128 by hand."""
    from vpkl.runtime.stream import check_chunk
    x = np.array([0, 64, 128, 192, 255], np.uint8)
    assert np.allclose(check_chunk(x, 0), (x.astype(np.float64) - 128) / 128)
    assert np.allclose(check_chunk(np.array([[0, 65535]], np.uint16), 0), [((0 - 32768) + (65535 - 32768)) / 65536])
