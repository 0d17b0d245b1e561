"""Localisation among speech frames (vpkl.runtime.localise): hand-computed cases, the frame
energies against a direct computation, and the gate's setting refused when it cannot work."""
import numpy as np
import pytest

from conftest import EXAMPLES
from vpkl.runtime.audio import read_audio
from vpkl.runtime.bundle import Bundle
from vpkl.runtime.detect import detect
from vpkl.runtime.errors import VpklInputError
from vpkl.runtime.features import FrontEndConfig
from vpkl.runtime.localise import FrameEnergy, localise
from vpkl.runtime.longaudio import scan
from vpkl.runtime.queries import enrol, folder_images
from vpkl.runtime.stream import Spotter, StreamConfig


def test_the_peak_in_a_pause_is_passed_over():
    """Ten frames: speech at 0-5 dB on frames 2-5, a pause at -40 dB elsewhere. The 10th
    percentile is -40 dB, so frames >= -37 dB may be chosen: query 0 peaks at frame 8 (the
    pause) and is placed at its best speech frame, 4; query 1 peaks inside the speech (3)."""
    energy = np.array([-40, -40, 0, 5, 2, 1, -40, -40, -40, -40], np.float32)
    att = np.array([[0.0, 0.1, 0.2, 0.3, 0.6, 0.5, 0.7, 0.9, 1.0, 0.8],
                    [0.0, 0.1, 0.2, 1.0, 0.6, 0.5, 0.7, 0.9, 0.3, 0.8]], np.float32)
    assert list(localise(att, energy, 3.0)) == [4, 3]
    assert list(localise(att, energy, None)) == [8, 3]          # the paper's argmax
    flat = np.full(10, -20.0, np.float32)                         # no frame 3 dB above the rest
    assert list(localise(att, flat, 3.0)) == [8, 3]


def test_frame_energies_in_any_pieces_match_a_direct_computation():
    """Embedding frame n is centred on sample 320 n + 280 (16 kHz, hop 160, window 400); its
    energy is the mean power of samples [320 n + 120, 320 n + 440) in dB, zeros past the end."""
    cfg = FrontEndConfig()
    assert cfg.sample_rate == 16000 and cfg.hop_length == 160 and cfg.win_length == 400
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(16000 + 77) * np.repeat(rng.uniform(1e-3, 0.5, 17), 1000)[:16077]).astype(np.float32)
    n = cfg.n_frames(len(x)) // 2
    xp = np.concatenate([x.astype(np.float64), np.zeros(1000)])
    want = [10 * np.log10(np.mean(xp[320 * i + 120:320 * i + 440] ** 2)) for i in range(n)]
    fe, got, i = FrameEnergy(cfg), [], 0
    while i < len(x):
        k = int(rng.integers(1, 3000))
        fe.add(x[i:i + k])
        i = min(i + k, len(x))
        got.append(fe.take(max(0, (i - 440) // 320 + 1)))   # every frame whose samples are all in
        assert len(fe._buf) <= 3000 + 640                     # only what later frames need is kept
    got.append(fe.take(n, final=True))
    np.testing.assert_allclose(np.concatenate(got), want, atol=1e-3)
    with pytest.raises(RuntimeError):
        FrameEnergy(cfg).take(1)                              # no samples added: a caller's error


@pytest.fixture(scope="module")
def shipped(shipped_bundle):
    b = Bundle.load(shipped_bundle)
    return b, enrol(b, folder_images(f"{EXAMPLES}/queries"))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "3", True, 10 ** 400])
def test_a_gate_that_cannot_work_is_refused_in_one_line(shipped, bad):
    """Also at once by scan (not when its windows are iterated), and 10**400 (beyond a float)
    with the same line rather than numpy's TypeError."""
    b, q = shipped
    x = read_audio(f"{EXAMPLES}/example_1.wav", 16000)
    expected = r"^loc_gate_db: expected None or a finite number of dB >= 0"
    with pytest.raises(VpklInputError, match=expected):
        detect(b, x, q, loc_gate_db=bad)
    with pytest.raises(VpklInputError, match=expected):
        Spotter(b, q, config=StreamConfig(loc_gate_db=bad))
    with pytest.raises(VpklInputError, match=expected):
        scan(b, x, q, loc_gate_db=bad)


def test_any_finite_gate_works_and_a_huge_one_is_the_plain_argmax(shipped):
    """A gate no frame passes falls back to the argmax over all frames, without overflow warnings
    (1e308 against float32 energies); a Fraction or a Python int past 2**64 is a number like any."""
    import fractions
    import warnings
    b, q = shipped
    x = read_audio(f"{EXAMPLES}/example_4.wav", 16000)
    plain = [r.frame for r in detect(b, x, q, loc_gate_db=None)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for gate in (1e308, 10 ** 20):
            assert [r.frame for r in detect(b, x, q, loc_gate_db=gate)] == plain
    assert [r.frame for r in detect(b, x, q, loc_gate_db=fractions.Fraction(3))] == \
        [r.frame for r in detect(b, x, q)]
    streamed = {gate: [d.frame for d in Spotter(b, q, config=StreamConfig(loc_gate_db=gate)).run(x)]
                for gate in (fractions.Fraction(3), 3.0)}
    assert streamed[fractions.Fraction(3)] == streamed[3.0]


def test_the_stream_localises_as_detect_does_with_the_gate_on_and_off(shipped):
    """Each example fits one stream window: the final window's localised frames are detect's,
    with the gate and without it (where the two rules place some keywords apart)."""
    b, q = shipped
    differ = 0
    for i in (1, 2, 3, 4):
        x = read_audio(f"{EXAMPLES}/example_{i}.wav", 16000)
        for gate in (3.0, None):
            sp = Spotter(b, q, config=StreamConfig(window_s=10.0, loc_gate_db=gate))
            for j in range(0, len(x), 1234):
                sp.feed(x[j:j + 1234])
            sp.flush()
            assert list(sp.last_window.frames) == [r.frame for r in detect(b, x, q, loc_gate_db=gate)]
        differ += sum(r.frame != g.frame for r, g in zip(detect(b, x, q, loc_gate_db=None), detect(b, x, q)))
    assert differ > 0


def test_the_gate_moves_where_a_stream_reports_not_whether_it_fires(shipped):
    """The firing rules wait on the model's peak (runtime/stream.py), so a stream with the gate
    fires exactly when one without it does (same keywords, scores, windows, chunks), and only
    the reported frames may differ. The examples back to back with 0.5 s of faint noise between."""
    b, q = shipped
    rng = np.random.default_rng(1)
    parts = []
    for i in (1, 2, 3, 4):
        parts += [read_audio(f"{EXAMPLES}/example_{i}.wav", 16000),
                  (rng.standard_normal(8000) * 1e-3).astype(np.float32)]
    x = np.concatenate(parts)
    runs = {gate: list(Spotter(b, q, config=StreamConfig(loc_gate_db=gate)).run(x, 0.1)) for gate in (3.0, None)}
    assert len(runs[None]) >= 6
    assert [(d.keyword, d.score, d.window, d.chunk) for d in runs[3.0]] == \
        [(d.keyword, d.score, d.window, d.chunk) for d in runs[None]]


def test_model_passes_the_gate_on(shipped_bundle):
    """vpkl.Model.detect and Model.stream take the gate as detect and StreamConfig do."""
    import vpkl
    b = Bundle.load(shipped_bundle)
    m = vpkl.Model(shipped_bundle)
    m.enrol(f"{EXAMPLES}/queries")
    q = enrol(b, folder_images(f"{EXAMPLES}/queries"))
    path = f"{EXAMPLES}/example_4.wav"
    for gate in (3.0, None):
        assert [r.frame for r in m.detect(path, loc_gate_db=gate)] == [r.frame for r in detect(b, path, q, loc_gate_db=gate)]
    assert [d.frame for d in m.stream(loc_gate_db=None).run(path)] == \
        [d.frame for d in Spotter(b, q, config=StreamConfig(loc_gate_db=None)).run(path)]
    with pytest.raises(VpklInputError, match="^loc_gate_db"):
        m.detect(path, loc_gate_db=-3)
