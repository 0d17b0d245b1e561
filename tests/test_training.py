"""Training recipe pieces: sampling targets, data synthesis facts, a seeded two-step run."""
import json
import numpy as np
import pytest
import torch

from conftest import DATA, needs_data
from vpkl.training import digits_data as dd
from vpkl.training.sampling import all_pairs_targets, pick_negative, pick_positive


def test_all_pairs_targets_hand_computed():
    t = all_pairs_targets(np.array([3, 7]), [{3, 5}, {7}, {1, 2}])
    assert t.tolist() == [[1, -1, -1], [-1, 1, -1]]


def test_keyword_sampling_positive_shares_negative_does_not():
    rng = np.random.default_rng(0)
    kws = [{1, 2}, {5}, {0, 3, 9}] * 20
    pos, neg = pick_positive(rng, kws), pick_negative(rng, kws, 10)
    assert all(p in k for p, k in zip(pos, kws)) and all(n not in k for n, k in zip(neg, kws))


def test_coloured_noise_slope():
    rng = np.random.default_rng(0)
    for beta in (0.0, 2.0):
        x = dd.coloured_noise(rng, 1 << 16, beta)
        p = np.abs(np.fft.rfft(x)) ** 2
        lo, hi = p[100:200].mean(), p[10000:20000].mean()
        assert np.sqrt(np.mean(x ** 2)) == pytest.approx(1.0, rel=1e-6)
        assert (hi / lo > 0.5) if beta == 0 else (hi / lo < 1e-3)


def test_speed_perturb_scales_frequency_and_duration():
    sr = dd.SAMPLE_RATE
    tone = np.sin(2 * np.pi * 1000 * np.arange(sr) / sr).astype(np.float32)  # 1 s at 1 kHz
    out = dd.speed_perturb([dd.Recording(7, "x", 0, tone)], factors=(1.1,))
    assert len(out) == 2 and out[0].samples is tone and out[1].digit == 7
    y = out[1].samples
    assert len(y) == pytest.approx(sr / 1.1, abs=2)
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert np.argmax(spec) * sr / len(y) == pytest.approx(1100, abs=2)


@needs_data
def test_synthesized_utterance_levels_and_words():
    recs = dd.load_fsdd(DATA, "test")
    assert {r.speaker for r in recs} == {dd.HELD_OUT_SPEAKER}
    rng = np.random.default_rng(0)
    u = dd.synthesize(rng, recs, peak_dbfs=(-20.0, -20.0), snr_db=(60.0, 60.0))
    assert 2 <= len(u.words) <= 5
    assert 20 * np.log10(np.abs(u.samples).max()) == pytest.approx(-20.0, abs=0.1)
    assert all(0 <= a < b <= len(u.samples) / 16000 for _, a, b in u.words)
    assert all(u.words[i][2] <= u.words[i + 1][1] for i in range(len(u.words) - 1))


@needs_data
def test_training_is_seeded_and_writes_a_checkpoint(tmp_path):
    from vpkl.model.vpkl_model import load_checkpoint
    from vpkl.training.train import TrainConfig, train
    outs = []
    for i in range(2):
        cfg = TrainConfig(data=DATA, out=str(tmp_path / f"m{i}.ckpt"), steps=2, batch_size=4, val_utterances=8)
        outs.append(train(cfg))
    assert outs[0]["final_loss"] == outs[1]["final_loss"]
    model, ckpt = load_checkpoint(str(tmp_path / "m0.ckpt"))
    assert ckpt["keywords"] == list(dd.KEYWORDS) and 0.0 <= ckpt["threshold"] <= 1.0
    a, b = (load_checkpoint(str(tmp_path / f"m{i}.ckpt"))[0].state_dict() for i in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_write_queries_replaces_its_own_earlier_images(tmp_path):
    from vpkl.training.make_dataset import write_queries
    (tmp_path / "mine.png").write_bytes(b"user file")
    assert write_queries(str(tmp_path), "test", 3) == 30
    assert write_queries(str(tmp_path), "test", 1) == 10
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 11 and "mine.png" in names and "seven_test00.png" in names


def test_joined_utterances_are_split_back_by_frame_centre():
    from vpkl.runtime.features import FrontEndConfig
    from vpkl.training.train import join_pairs, split_frames
    u = lambda n, v: dd.Utterance(np.full(n, v, np.float32), [], 20.0, -10.0)
    utts = [u(8000, 1), u(3200, 2), u(4800, 3)]
    inputs, groups = join_pairs(np.random.default_rng(0), utts, 1.0)
    assert [len(x.samples) for x in inputs] == [11200, 4800] and groups == [[(0, 0), (1, 8000)], [(2, 0)]]
    frames = torch.arange(2 * 40, dtype=torch.float32).reshape(2, 40, 1)  # frame values = their index
    out, n = split_frames(frames, torch.tensor([34, 14]), groups, 3, FrontEndConfig())
    # sample 8000 is nearest the centre of frame 24: (2 * 24 + 0.5) * 160 + 200 = 7960
    assert n.tolist() == [24, 10, 14]
    assert out[0, :24, 0].tolist() == list(range(24)) and out[1, :10, 0].tolist() == list(range(24, 34))
    assert out[2, :14, 0].tolist() == list(range(40, 54)) and float(out[1, 10:].abs().sum()) == 0.0



def test_composed_utterances_of_each_kind():
    """Keyword-free utterances carry no word; mixed ones carry their digits' true times; digital
    silence framing is exact zeros (hand-checked against the pieces put in)."""
    from vpkl.training import digits_data as dd
    from vpkl.training import negatives as ng
    rng = np.random.default_rng(0)
    tone = lambda f, s: (0.5 * np.sin(2 * np.pi * f * np.arange(int(s * 16000)) / 16000)).astype(np.float32)
    recs = [dd.Recording(7, "x", 0, tone(500, 0.4))]
    fillers = ng.Fillers(words=[tone(900, 0.3)], texts=[tone(1300, 3.0)])
    free = ng.compose(rng, recs, fillers, p_free=1.0, p_mixed=0.0, p_digital_silence=0.0)
    assert free.words == []
    mixed = ng.compose(rng, recs, fillers, p_free=0.0, p_mixed=1.0, p_digital_silence=0.0)
    assert mixed.words and all(w == "seven" for w, _, _ in mixed.words)
    for _, a, b in mixed.words:
        assert abs(b - a - 0.4) < 1e-3
    framed = ng.compose(rng, recs, fillers, p_free=0.0, p_mixed=1.0, p_digital_silence=1.0)
    first = np.flatnonzero(framed.samples)[0]
    assert first >= 1600 and np.all(framed.samples[:first] == 0)     # >= 0.1 s of exact zeros
    assert framed.words[0][1] * 16000 >= first
    digits_only = ng.compose(rng, recs, fillers, p_free=0.0, p_mixed=0.0)
    assert digits_only.words and all(w == "seven" for w, _, _ in digits_only.words)


def test_long_context_utterances_put_each_word_where_it_says():
    """p_long=1: every utterance starts with at least 0.5 s before its first word, and each word's
    span holds that word's recording (white noise seeded per digit: correlation > 0.8 at the span,
    as SNRs of 5 dB and up give at least 0.87, and < 0.3 10 ms off it); p_long=0 gives no long lead-in."""
    from vpkl.training import negatives as ng
    rng = np.random.default_rng(3)
    word = {d: np.random.default_rng(100 + d).uniform(-0.5, 0.5, 6400).astype(np.float32) for d in (2, 7)}
    recs = [dd.Recording(d, "x", 0, x) for d, x in word.items()]
    fillers = ng.Fillers(words=[np.random.default_rng(9).uniform(-0.5, 0.5, 4800).astype(np.float32)])
    leads = []
    for i in range(30):
        u = ng.compose(rng, recs, fillers, p_free=0.0, p_mixed=0.5, p_digital_silence=0.0, p_long=1.0)
        assert 1 <= len(u.words) <= 2
        leads.append(u.words[0][1])
        for w, a, b in u.words:
            ref = word[dd.KEYWORDS.index(w)]
            seg = u.samples[int(round(a * 16000)):][:len(ref)].astype(np.float64)
            assert len(seg) == len(ref) and abs(b - a - 0.4) < 1e-3
            assert np.corrcoef(seg, ref)[0, 1] > 0.8, (i, w, a)
            off = u.samples[int(round(a * 16000)) + 160:][:len(ref) - 160].astype(np.float64)
            assert abs(np.corrcoef(off, ref[:len(off)])[0, 1]) < 0.3
    assert min(leads) >= 0.5 and max(leads) > 1.5
    short = [ng.compose(rng, recs, fillers, 0.0, 0.0, p_digital_silence=0.0).words[0][1] for _ in range(30)]
    assert max(short) <= 0.5                  # digits alone, no long context: one short pause first


def test_non_speech_kinds_and_trim():
    from vpkl.training import negatives as ng
    rng = np.random.default_rng(1)
    kinds = [ng.non_speech(rng, 8000) for _ in range(40)]
    assert any(np.all(k == 0) for k in kinds) and all(len(k) == 8000 and np.all(np.isfinite(k)) for k in kinds)
    x = np.zeros(16000, np.float32)
    x[6000:9000] = 0.3
    t = ng.trim(x)
    assert np.count_nonzero(t) == 3000 and 3000 + 2 * 800 <= len(t) <= 3000 + 2 * 800 + 2 * 160   # word, 50 ms each side


def test_negative_sets_lengths_and_held_out_speakers(tmp_path):
    """The keyword-free sets have the lengths asked for; val and test words come from disjoint
    speakers of the held-out words only; the silence set is digital zeros."""
    import os
    import soundfile as sf
    from conftest import DATA
    from vpkl.training import negative_sets as ns
    words_dir = os.path.join(DATA, "speech_commands_words")
    if not os.path.isdir(words_dir):
        pytest.skip(f"Speech Commands words not found at {words_dir}")
    got = ns.write_negative_sets(str(tmp_path), DATA, None, minutes=0.25, non_speech_minutes=0.2)
    assert got == {"words_val": 15.0, "words_test": 15.0, "silence": 12.0, "clicks": 12.0, "hum": 12.0, "noise": 12.0}
    x, sr = sf.read(str(tmp_path / "silence.wav"))
    assert sr == 16000 and not x.any()
    files = sorted(f for f in os.listdir(words_dir) if f.endswith(".wav"))
    halves = ns.held_out_word_files(DATA)
    names = {k: [os.path.basename(f) for f in v] for k, v in halves.items()}
    assert sorted(names["val"] + names["test"]) == [f for f in files if f.split("_")[0] in ns.HELD_OUT_WORDS]
    speakers = {k: {f.split("_")[1] for f in v} for k, v in names.items()}
    assert speakers["val"] and speakers["test"] and not speakers["val"] & speakers["test"]


def test_reversed_speech_pieces_are_the_clips_backwards():
    """Reversed real speech is the clip read from its end (hand-made ramp); with only reversed
    speech as filler material, every keyword-free piece is one of those clips."""
    from vpkl.training import negatives as ng
    ramp = np.arange(5, dtype=np.float32)
    (back,) = ng.reversed_speech([ramp])
    assert back.tolist() == [4.0, 3.0, 2.0, 1.0, 0.0] and back.flags.c_contiguous
    fillers = ng.Fillers(reversed=[back])
    assert fillers and all(np.array_equal(fillers.piece(np.random.default_rng(i)), back) for i in range(5))


def test_styled_training_images_keep_labels_and_the_shipped_rendering():
    """The styled bank holds each digit in every query style with its label; its 'shipped' rows
    equal the recipe's plain images (the runtime's preprocessing of the 8 x 8 digit)."""
    from vpkl.model.presets import get_preset
    from vpkl.training.query_styles import STYLES
    from vpkl.training.train import image_tensor, styled_images
    imgs, labels = dd.digit_images("train")
    imgs, labels = imgs[:6], labels[:6]
    preset = get_preset("digits")
    bank, bank_labels = styled_images(imgs, labels, preset, seed=0)
    assert bank.shape == (len(STYLES) * 6, 1, 32, 32) and bank.dtype == torch.float32
    assert bank_labels.tolist() == labels.tolist() * len(STYLES)
    assert torch.equal(bank[:6], image_tensor(imgs, preset))
    assert torch.equal(bank[6:12], bank[:6])      # dark on light: the ink is found whatever its polarity
    assert not torch.equal(bank[12:18], bank[:6])  # resized: a new rendering, not a copy


@needs_data
def test_make_dataset_fold_speaker(tmp_path):
    """--held-out-speaker: the test utterances are that speaker's recordings (their samples are found
    in jackson's files, not george's); unknown names are refused in one line."""
    from conftest import run_cli
    from vpkl.training.make_dataset import write_split
    write_split(str(tmp_path / "j"), DATA, "test", 2, seed=0, held_out="jackson")
    rng = np.random.default_rng(dd.split_seed("test", 0))
    u = dd.synthesize(rng, dd.load_fsdd(DATA, "test", "jackson"))
    from vpkl.runtime.audio import read_audio
    x = read_audio(str(tmp_path / "j" / "test_0000.wav"), 16000)
    assert len(x) == len(u.samples) and np.max(np.abs(x - u.samples)) < 1e-4    # 16-bit rounding
    r = run_cli("make-dataset", "--out", str(tmp_path / "o"), "--held-out-speaker", "bob")
    assert r.returncode == 2 and "--held-out-speaker: expected one of george, jackson" in r.stderr
    assert not (tmp_path / "o").exists()


@needs_data
def test_make_dataset_with_no_held_out_speaker(tmp_path):
    """--held-out-speaker none (a model trained on all five): validation is drawn from every
    speaker's recordings 0-4, george's among them, and no test split is written."""
    from conftest import run_cli
    r = run_cli("make-dataset", "--out", str(tmp_path / "o"), "--val", "3", "--per-keyword", "1",
                "--held-out-speaker", "none")
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "o" / "test").exists()
    rows = [json.loads(l) for l in open(tmp_path / "o" / "val" / "manifest.jsonl")]
    assert len(rows) == 3
    r = run_cli("make-dataset", "--out", str(tmp_path / "t"), "--held-out-speaker", "none", "--test", "5")
    assert r.returncode == 2 and "--test: no test split with --held-out-speaker none" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "t").exists()
    pool = dd.load_fsdd(DATA, "val", None)
    assert {r.speaker for r in pool} == set(dd.SPEAKERS) and {r.index for r in pool} == set(range(5))
    rng = np.random.default_rng(dd.split_seed("val", 0))
    u = dd.synthesize(rng, pool)
    from vpkl.runtime.audio import read_audio
    x = read_audio(str(tmp_path / "o" / "val" / rows[0]["audio"]), 16000)
    assert len(x) == len(u.samples) and np.max(np.abs(x - u.samples)) < 1e-4
