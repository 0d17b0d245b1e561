"""False alarms per hour, misses per keyword, DET curves and threshold choice (issue: a spotter that
stays quiet when no keyword is said). References: hand-computed cases, and `vpkl stream` run on the
same audio as a user would."""
import json
import os

import numpy as np
import pytest

from vpkl.evaluation.false_alarms import (false_alarms, miss_rates, negative_files, stream_detections,
                                          threshold_for_target)
from vpkl.runtime.audio import read_audio
from vpkl.runtime.bundle import Bundle
from vpkl.runtime.errors import VpklInputError
from vpkl.runtime.queries import enrol, folder_images

from conftest import ASSETS, DATA, EXAMPLES, run_cli

WORDS = os.path.join(DATA, "speech_commands_words")
needs_words = pytest.mark.skipif(not os.path.isdir(WORDS), reason=f"Speech Commands words not found at {WORDS}")


@pytest.fixture(scope="module")
def model():
    b = Bundle.load(os.path.join(ASSETS, "digits"), threads=1)
    return b, enrol(b, folder_images(os.path.join(EXAMPLES, "queries")))


def test_miss_rates_by_hand():
    # two utterances x two keywords; keyword 0 spoken in both (S 0.7, 0.4), keyword 1 in neither
    scores = np.array([0.7, 0.9, 0.4, 0.1])
    spoken = np.array([True, False, True, False])
    m = miss_rates(scores, spoken, 2, thresholds=[0.3, 0.5, 0.8])
    assert np.allclose(m["per_keyword"][:, 0], [0.0, 0.5, 1.0])
    assert np.all(np.isnan(m["per_keyword"][:, 1]))
    assert np.allclose(m["pooled"], [0.0, 0.5, 1.0]) and list(m["spoken"]) == [2, 0]


def test_threshold_for_target_by_hand():
    thr = np.array([0.5, 0.6, 0.7, 0.8])
    assert threshold_for_target(np.array([40.0, 12.0, 3.0, 0.0]), thr, 5.0) == 2
    assert threshold_for_target(np.array([40.0, 4.0, 8.0, 0.0]), thr, 5.0) == 3   # a dip, then above again
    assert threshold_for_target(np.array([40.0, 30.0, 20.0, 10.0]), thr, 5.0) is None


def test_digital_silence_gives_no_false_alarm(model):
    b, q = model
    fa = false_alarms(b, q, [np.zeros(60 * 16000, np.float32)], thresholds=[0.5, 0.6])
    assert fa["hours"] == pytest.approx(60 / 3600) and fa["counts"].sum() == 0


@needs_words
def test_counts_match_vpkl_stream(model, tmp_path):
    """The false alarms counted are the detections `vpkl stream --file` prints for the same audio."""
    b, q = model
    files = sorted(os.path.join(WORDS, f) for f in os.listdir(WORDS) if f.endswith(".wav"))[:12]
    x = np.concatenate([read_audio(f, 16000) for f in files])
    import soundfile as sf
    wav = str(tmp_path / "words.wav")
    sf.write(wav, x, 16000, subtype="FLOAT")
    thr = b.threshold
    r = run_cli("stream", "--bundle", os.path.join(ASSETS, "digits"), "--queries", os.path.join(EXAMPLES, "queries"),
                "--file", wav, "--jsonl", "--threshold", str(thr))
    assert r.returncode == 0, r.stderr
    by_cli = [json.loads(l)["keyword"] for l in r.stdout.splitlines() if l.strip()]
    counts = stream_detections(b, q, x, thr)
    assert {k: int(c) for k, c in zip(q.keywords, counts) if c} == {k: by_cli.count(k) for k in set(by_cli)}


@needs_words
def test_false_alarms_fall_as_the_threshold_rises(model):
    b, q = model
    files = sorted(os.path.join(WORDS, f) for f in os.listdir(WORDS) if f.endswith(".wav"))[::10]
    fa = false_alarms(b, q, files, thresholds=[0.55, 0.65, 0.8])
    total = fa["counts"].sum(axis=1)
    assert total[0] >= total[1] >= total[2]
    assert fa["hours"] == pytest.approx(len(files) / 3600, rel=0.01)   # 1 s clips
    assert np.allclose(fa["fa_per_hour"], fa["counts"] / fa["hours"])


def test_negative_files_errors(tmp_path):
    with pytest.raises(VpklInputError, match="--negatives .*no such file"):
        negative_files(str(tmp_path / "missing"))
    with pytest.raises(VpklInputError, match="no audio files"):
        negative_files(str(tmp_path))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.wav").write_bytes(b"")
    assert negative_files(str(tmp_path)) == [str(tmp_path / "a" / "x.wav")]


@needs_words
def test_evaluate_reports_false_alarms_and_writes_the_chosen_threshold(tmp_path):
    """`vpkl evaluate --negatives ... --target-fa-per-hour X --out-bundle` writes a bundle whose
    threshold gives at most X per hour on the same audio, re-measured through `vpkl stream`."""
    words = sorted(os.path.join(WORDS, f) for f in os.listdir(WORDS) if f.endswith(".wav"))[::5]
    neg = tmp_path / "neg"
    neg.mkdir()
    for f in words:
        os.symlink(f, neg / os.path.basename(f))
    out = tmp_path / "b"
    r = run_cli("evaluate", "--manifest", os.path.join(EXAMPLES, "examples.jsonl"), "--queries",
                os.path.join(EXAMPLES, "queries"), "--negatives", str(neg), "--target-fa-per-hour", "400",
                "--out-bundle", str(out), "--det", str(tmp_path / "det.png"), "--json")
    assert r.returncode == 0, r.stderr
    fa = json.loads(r.stdout)["false_alarms"]
    assert fa["negative_files"] == len(words) and fa["hours"] == pytest.approx(len(words) / 3600, rel=0.01)
    assert sum(v["false_alarms"] for v in fa["per_keyword"].values()) == fa["false_alarms"]
    t = fa["target"]
    # the lowest threshold with at most 400 per hour: above the bundle's only if that fires more
    assert t["expected_per_hour"] <= 400 and (t["threshold"] > fa["threshold"]) == (fa["per_hour"] > 400)
    assert json.load(open(out / "config.json"))["threshold"] == t["threshold"]
    from PIL import Image
    assert Image.open(tmp_path / "det.png").size[0] > 300
    # independent check: the written bundle, streamed over the same files by `vpkl stream`
    n = 0
    for f in words:
        s = run_cli("stream", "--bundle", str(out), "--queries", os.path.join(EXAMPLES, "queries"), "--file", f,
                    "--jsonl")
        assert s.returncode == 0, s.stderr
        n += len([l for l in s.stdout.splitlines() if l.strip()])
    assert n == round(t["expected_per_hour"] * fa["hours"])


def two_detected(bundle_dir):
    """(threshold, lower, other): the bundle's threshold and two keywords detected in example_4
    (``lower`` the one with the lower S, under 0.9)."""
    from vpkl.runtime.detect import detect
    b = Bundle.load(bundle_dir)
    q = enrol(b, folder_images(os.path.join(EXAMPLES, "queries")))
    hits = sorted((r.score, r.keyword) for r in detect(b, os.path.join(EXAMPLES, "example_4.wav"), q) if r.detected)
    assert len(hits) >= 2 and hits[0][0] < 0.9, hits
    return b.threshold, hits[0][1], hits[-1][1]


def test_per_keyword_thresholds_in_a_bundle_are_used(tmp_path, model):
    from vpkl.evaluation.false_alarms import write_thresholds
    from vpkl.runtime.detect import detect
    src = os.path.join(ASSETS, "digits")
    thr, low, other = two_detected(src)
    write_thresholds(src, str(tmp_path / "b"), thr, {low: 0.99}, force=False)
    b = Bundle.load(str(tmp_path / "b"))
    q = enrol(b, folder_images(os.path.join(EXAMPLES, "queries")))
    res = {r.keyword: r for r in detect(b, os.path.join(EXAMPLES, "example_4.wav"), q)}
    assert res[low].threshold == 0.99 and not res[low].detected      # S < 0.9
    assert res[other].threshold == thr and res[other].detected
    from vpkl.runtime.stream import Spotter
    assert Spotter(b, q).thresholds[q.keywords.index(low)] == 0.99
    with pytest.raises(VpklInputError, match="already exists"):
        write_thresholds(src, str(tmp_path / "b"), 0.7, None, force=False)


@pytest.mark.parametrize("args, message", [
    (["--out-bundle", "x"], "--out-bundle: only with --target-fa-per-hour"),
    (["--target-fa-per-hour", "5"], "--target-fa-per-hour: needs keyword-free audio"),
    (["--det", "d.png"], "--det: needs keyword-free audio"),
    (["--det", "d.jpg"], "expected a .png"),
    (["--target-fa-per-hour", "-1"], "expected false alarms per hour >= 0"),
    (["--negatives", "/nonexistent"], "--negatives /nonexistent: no such file"),
])
def test_evaluate_false_alarm_flags_refused_in_one_line(args, message, tmp_path):
    r = run_cli("evaluate", "--manifest", os.path.join(EXAMPLES, "examples.jsonl"), "--queries",
                os.path.join(EXAMPLES, "queries"), *args)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_the_cli_uses_a_bundles_keyword_thresholds(tmp_path):
    """vpkl detect, stream and evaluate apply keyword_thresholds as the Python API does (they
    passed the bundle's one threshold instead)."""
    from vpkl.evaluation.false_alarms import write_thresholds
    thr, low, other = two_detected(os.path.join(ASSETS, "digits"))
    write_thresholds(os.path.join(ASSETS, "digits"), str(tmp_path / "b"), thr, {low: 0.9}, force=False)
    q = os.path.join(EXAMPLES, "queries")
    ex4 = os.path.join(EXAMPLES, "example_4.wav")
    d = run_cli("detect", "--bundle", str(tmp_path / "b"), "--queries", q, ex4, "--json")
    res = {r["keyword"]: r for r in json.loads(d.stdout)["results"]}
    assert res[low]["threshold"] == 0.9 and not res[low]["detected"] and res[other]["detected"]
    s = run_cli("stream", "--bundle", str(tmp_path / "b"), "--queries", q, "--file", ex4, "--jsonl")
    said = [json.loads(line)["keyword"] for line in s.stdout.splitlines()]
    assert s.returncode == 0 and low not in said and other in said
    e = run_cli("evaluate", "--bundle", str(tmp_path / "b"), "--manifest", os.path.join(EXAMPLES, "examples.jsonl"),
                "--queries", q, "--json")
    assert json.loads(e.stdout)["threshold"][low] == 0.9


@needs_words
def test_replayed_thresholds_equal_a_stream_at_each_threshold(model):
    """false_alarms runs the model once and replays the firing rules per threshold; the reference is
    a fresh Spotter streamed at each threshold (stream_detections), one float and one per-keyword dict."""
    b, q = model
    files = sorted(os.path.join(WORDS, f) for f in os.listdir(WORDS) if f.endswith(".wav"))[:30]
    x = np.concatenate([read_audio(f, 16000) for f in files])
    per_kw = {"five": 0.7, "three": 0.6, "nine": 0.55}
    thresholds = [0.55, 0.6, 0.65, per_kw]
    fa = false_alarms(b, q, [x], thresholds=thresholds)
    for t, thr in enumerate(thresholds):
        np.testing.assert_array_equal(fa["counts"][t], stream_detections(b, q, x, thr))
    assert fa["counts"][0].sum() > 0


def test_keyword_thresholds_for_target_by_hand():
    """Two keywords, three thresholds; every pair of choices written out:
    false alarms (t0, t1): 16 12 10 / 10 6 4 / 6 2 0, errors 3 4 11 / 5 6 12 / 10 11 17."""
    from vpkl.evaluation.false_alarms import keyword_thresholds_for_target
    counts = np.array([[10, 6], [4, 2], [0, 0]])
    errors = np.array([[1, 2], [3, 3], [8, 9]])
    assert list(keyword_thresholds_for_target(counts, errors, 8)) == [1, 1]      # 6 false alarms, 6 errors
    assert list(keyword_thresholds_for_target(counts, errors, 5)) == [2, 1]      # 2 false alarms, 11 errors
    assert list(keyword_thresholds_for_target(counts, errors, 100)) == [0, 0]    # no constraint: fewest errors
    assert list(keyword_thresholds_for_target(counts, errors, 0)) == [2, 2]
    assert keyword_thresholds_for_target(counts + 1, errors, 1) is None          # 2 at best
    # equal errors: the fewer false alarms
    assert list(keyword_thresholds_for_target(np.array([[3], [1]]), np.array([[2], [2]]), 5)) == [1]


@needs_words
def test_per_keyword_target_is_the_best_choice_by_brute_force(tmp_path):
    """`vpkl evaluate --target-fa-per-hour X --per-keyword` writes the per-keyword thresholds with the
    fewest errors on the manifest within X per hour: checked against every combination of three
    keywords' thresholds, with errors from `detect` and false alarms from streams at each threshold."""
    import itertools
    import shutil
    import soundfile as sf
    from vpkl.evaluation.false_alarms import THRESHOLDS
    from vpkl.runtime.detect import detect
    kws = ["nine", "three", "zero"]    # the shipped model's keywords that fire on these words (the budget needs some)
    qdir = tmp_path / "q"
    qdir.mkdir()
    for k in kws:
        shutil.copy(os.path.join(EXAMPLES, "queries", f"{k}_test00.png"), qdir)
    b = Bundle.load(os.path.join(ASSETS, "digits"), threads=1)
    q = enrol(b, folder_images(str(qdir)))
    files = sorted(os.path.join(WORDS, f) for f in os.listdir(WORDS) if f.endswith(".wav"))[:60]
    x = np.concatenate([read_audio(f, 16000) for f in files])
    neg = str(tmp_path / "words.wav")
    sf.write(neg, x, 16000, subtype="FLOAT")
    grid = np.unique(np.append(THRESHOLDS, b.threshold))
    fa = false_alarms(b, q, [x], thresholds=grid)
    assert fa["counts"][0].sum() >= 4
    budget = int(fa["counts"][0].sum() // 2)
    target = budget / fa["hours"] + 1e-6
    errors = np.zeros((len(grid), len(kws)), np.int64)
    with open(os.path.join(EXAMPLES, "examples.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    for row in rows:
        said = {w[0] for w in row["words"]}
        for r in detect(b, os.path.join(EXAMPLES, row["audio"]), q):
            hit = r.score >= grid
            errors[:, kws.index(r.keyword)] += (~hit if r.keyword in said else hit)
    best = min((errors[list(c), range(3)].sum(), fa["counts"][list(c), range(3)].sum())
               for c in itertools.product(range(len(grid)), repeat=3)
               if fa["counts"][list(c), range(3)].sum() <= budget)
    r = run_cli("evaluate", "--manifest", os.path.join(EXAMPLES, "examples.jsonl"), "--queries", str(qdir),
                "--negatives", neg, "--target-fa-per-hour", repr(target), "--per-keyword",
                "--out-bundle", str(tmp_path / "b"), "--json")
    assert r.returncode == 0, r.stderr
    chosen = json.loads((tmp_path / "b" / "config.json").read_text())["keyword_thresholds"]
    c = [int(np.flatnonzero(np.isclose(grid, chosen[k]))[0]) for k in kws]
    assert (errors[c, range(3)].sum(), fa["counts"][c, range(3)].sum()) == best
    assert stream_detections(b, q, x, chosen).sum() <= budget
    r = run_cli("evaluate", "--manifest", os.path.join(EXAMPLES, "examples.jsonl"), "--queries", str(qdir),
                "--negatives", neg, "--target-fa-per-hour", "inf", "--per-keyword", "--json")
    chosen = json.loads(r.stdout)["false_alarms"]["target"]["keyword_thresholds"]
    c = [int(np.flatnonzero(np.isclose(grid, chosen[k]))[0]) for k in kws]      # no constraint: fewest errors
    assert r.returncode == 0 and errors[c, range(3)].sum() == errors.min(axis=0).sum(), r.stderr
