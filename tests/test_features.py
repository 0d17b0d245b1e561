"""Front end: numpy runtime vs torch training implementation on real speech; hand-checked cases."""
import numpy as np
import pytest

from vpkl.runtime.audio import read_audio
from vpkl.runtime.errors import VpklInputError
from vpkl.runtime.features import FrontEndConfig, features, log_mel, mel_filterbank

CFG = FrontEndConfig()


def test_numpy_matches_torch_on_real_speech(fsdd_file):
    import torch
    from vpkl.model.frontend import FrontEnd
    x = read_audio(fsdd_file, 16000)
    x = np.concatenate([x, 0.3 * x, x[::-1]])          # long enough to pass the warm-up
    got = features(x, CFG)
    ref, t = FrontEnd(CFG)(torch.from_numpy(x)[None])
    assert got.shape == (CFG.n_frames(len(x)), 40) == tuple(ref.shape[1:])
    assert np.abs(got - ref[0].numpy()).max() < 1e-4


def test_filterbank_peaks_at_htk_centres():
    fb = mel_filterbank(CFG)
    assert fb.shape == (257, 40)
    # hand computation: centre k is mel point k+1 of 42 evenly spaced in [0, 2595 log10(1 + 8000/700)]
    top = 2595 * np.log10(1 + 8000 / 700)
    centres = 700 * (10 ** (np.linspace(0, top, 42)[1:-1] / 2595) - 1)
    freqs = np.arange(257) * 16000 / 512
    assert np.all(np.abs(freqs[np.argmax(fb, axis=0)] - centres) <= 31.25)  # within one FFT bin
    assert fb.max() <= 1.0 and fb.min() >= 0.0


def test_level_does_not_change_features(fsdd_file):
    x = read_audio(fsdd_file, 16000)
    rng = np.random.default_rng(0)
    x = x + 3e-3 * rng.standard_normal(len(x)).astype(np.float32)  # a noise floor, as real recordings have
    a, b = features(x, CFG), features(x * 0.03, CFG)   # -30 dB
    assert np.abs(a - b).max() < 1e-3


def test_sine_lights_the_right_band():
    t = np.arange(400) / 16000
    f = log_mel(np.sin(2 * np.pi * 1000 * t)[None], CFG)[0]
    centres = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 8000 / 700), 42)[1:-1] / 2595) - 1)
    assert np.argmax(f) == np.argmin(np.abs(centres - 1000))


def test_stationary_tone_normalises_to_zero():
    """The running mean removes a steady tone: after warm-up every frame is ~0."""
    t = np.arange(32000) / 16000
    f = features((0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), CFG)
    assert np.abs(f[50:]).max() < 1e-3


def test_frame_count_and_short_audio():
    assert CFG.n_frames(400) == 1 and CFG.n_frames(560) == 2 and CFG.n_frames(399) == 0
    assert features(np.zeros(16000, np.float32), CFG).shape == (98, 40)
    with pytest.raises(VpklInputError, match="shorter than one frame"):
        features(np.zeros(100, np.float32), CFG, "x.wav")


def test_silence_is_finite():
    f = features(np.zeros(8000, np.float32), CFG)
    assert np.all(f == CFG.silence_feature)


def _with_zeros(x, sr=16000):
    """Speech with 0.3 s of digital zeros before it, 1 s inside it and 0.5 s after it."""
    z = lambda s: np.zeros(int(s * sr), np.float32)
    h = len(x) // 2
    return np.concatenate([z(0.3), x[:h], z(1.0), x[h:], z(0.5)])


def test_numpy_matches_torch_with_digital_silence(fsdd_file):
    import torch
    from vpkl.model.frontend import FrontEnd
    x = read_audio(fsdd_file, 16000)
    x = _with_zeros(np.concatenate([x, 0.3 * x, x[::-1]]))
    got = features(x, CFG)
    ref, _ = FrontEnd(CFG)(torch.from_numpy(x)[None])
    assert np.abs(got - ref[0].numpy()).max() < 1e-4
    # a batch: one row with silence, one without (padded): each as on its own
    y = read_audio(fsdd_file, 16000)
    batch = np.zeros((2, len(x)), np.float32)
    batch[0], batch[1, :len(y)] = x, y
    ref2, t = FrontEnd(CFG)(torch.from_numpy(batch), torch.tensor([len(x), len(y)]))
    assert np.abs(ref2[0].numpy() - got).max() < 1e-4
    assert np.abs(ref2[1, :t[1]].numpy() - features(y, CFG)).max() < 1e-4


def test_silent_frames_leave_the_statistics_alone():
    """The rule, checked by hand: normalising with some frames marked silent gives, on the
    other frames, exactly the normalisation of those frames alone, and the silence feature
    on the silent ones."""
    from vpkl.runtime.features import CausalNormaliser
    rng = np.random.default_rng(0)
    x = rng.normal(-8, 3, (300, 40))
    silent = np.zeros(300, bool)
    silent[:20] = silent[100:160] = silent[290:] = True
    got = CausalNormaliser(CFG)(x, silent)
    assert np.all(got[silent] == CFG.silence_feature)
    assert np.abs(got[~silent] - CausalNormaliser(CFG)(x[~silent])).max() < 1e-12


def test_streaming_pieces_match_whole_with_silence(fsdd_file):
    from vpkl.runtime.features import StreamingFrontEnd
    x = _with_zeros(read_audio(fsdd_file, 16000))
    whole = features(x, CFG)
    fe, rng, out, i = StreamingFrontEnd(CFG), np.random.default_rng(1), [], 0
    while i < len(x):
        n = int(rng.integers(1, 3000))
        out.append(fe(x[i:i + n]))
        i += n
    assert np.abs(np.concatenate(out) - whole).max() < 1e-5


def test_what_is_silent():
    """The silence level (-110 dB re full-scale white noise) lies between 24-bit audio that toggles
    by one step (silent) and 16-bit one-step noise and the quietest pauses the recipe trains on
    (heard)."""
    rng = np.random.default_rng(0)
    lsb24 = (rng.integers(-1, 2, 16000) / 2 ** 23).astype(np.float32)
    assert np.all(features(lsb24, CFG) == CFG.silence_feature)
    for offset in (1, 100, 1000):                       # a constant offset (in 16-bit steps) is silence too
        assert np.all(features(np.full(8000, offset / 32768, np.float32), CFG)[3:] == CFG.silence_feature)
    for level_db in (-100, -90, -75):                   # -90: 16-bit one-step noise
        noise = (10 ** (level_db / 20) * rng.standard_normal(16000)).astype(np.float32)
        assert not np.any(np.all(features(noise, CFG) == CFG.silence_feature, axis=1)), level_db


def test_mute_onset_hand_computed():
    """First heard frame j > 0: frames j .. j + 2 - j % 2 (exclusive) become silent; j = 0 or all silent: unchanged."""
    from vpkl.runtime.features import mute_onset
    s = lambda *heard: np.array([h == "." for h in heard])
    assert mute_onset(s(".", ".", ".", "x", "x", "x", "x")).tolist() == [True] * 4 + [False] * 3   # j = 3 -> up to 4
    assert mute_onset(s(".", ".", "x", "x", "x", "x")).tolist() == [True] * 4 + [False] * 2        # j = 2 -> up to 4
    assert mute_onset(s("x", ".", "x")).tolist() == [False, True, False]
    assert mute_onset(s(".", ".")).tolist() == [True, True]
    both = mute_onset(np.stack([s(".", "x", "x", "x"), s("x", "x", "x", "x")]))
    assert both.tolist() == [[True, True, False, False], [False] * 4]


def test_leading_zeros_give_the_same_features_shifted(fsdd_file):
    """Speech after 0.3 s (30 frames) of zeros: from frame 30 on, exactly the features of the speech
    alone, whole and streamed in pieces (the stream begins at its first sound)."""
    from vpkl.runtime.features import StreamingFrontEnd
    x = read_audio(fsdd_file, 16000)
    ref = features(x, CFG)
    y = np.concatenate([np.zeros(4800, np.float32), x])
    np.testing.assert_array_equal(features(y, CFG)[30:], ref)
    fe = StreamingFrontEnd(CFG)
    streamed = np.concatenate([fe(y[i:i + 1234]) for i in range(0, len(y), 1234)])
    np.testing.assert_allclose(streamed[30:], ref, atol=1e-5)
