"""One rule for thresholds, thread counts and precisions (runtime/checks.py), used by detect,
Spotter, Bundle.load and the CLI; config.json's values checked against what the model implies."""
import json
import math
import os
import shutil

import numpy as np
import pytest

from vpkl.runtime import checks
from vpkl.runtime.bundle import Bundle
from vpkl.runtime.detect import detect
from vpkl.runtime.errors import VpklInputError
from vpkl.runtime.queries import enrol
from vpkl.runtime.stream import Spotter

from conftest import EXAMPLES, run_cli

QUERY = os.path.join(EXAMPLES, "queries", "seven_test00.png")
WAV = os.path.join(EXAMPLES, "example_4.wav")
BAD_THRESHOLDS = ["abc", 5, -0.5, float("nan"), float("inf"), True, [0.5]]


@pytest.fixture(scope="module")
def shipped(shipped_bundle):
    b = Bundle.load(shipped_bundle, threads=1)
    return b, enrol(b, {"seven": [QUERY], "three": [os.path.join(EXAMPLES, "queries", "three_test00.png")]})


@pytest.mark.parametrize("value", [0, 1, 0.25, np.float32(0.5), np.float64(1.0)])
def test_threshold_accepted(value):
    assert checks.check_threshold(value) == float(value)


@pytest.mark.parametrize("value", BAD_THRESHOLDS + [None])
def test_threshold_refused_with_its_name(value):
    with pytest.raises(VpklInputError, match=r"^--threshold: expected a score in \[0, 1\]"):
        checks.check_threshold(value, "--threshold")


def test_resolve_thresholds_rule():
    kws = ["seven", "three"]
    assert checks.resolve_thresholds(None, kws, 0.6).tolist() == [0.6, 0.6]
    assert checks.resolve_thresholds(0.3, kws, 0.6).tolist() == [0.3, 0.3]
    assert checks.resolve_thresholds({"three": 0.2}, kws, 0.6).tolist() == [0.6, 0.2]
    with pytest.raises(VpklInputError, match=r"threshold: keywords \['dog'\] have no query"):
        checks.resolve_thresholds({"dog": 0.5}, kws, 0.6)
    with pytest.raises(VpklInputError, match="threshold for 'three': expected a score"):
        checks.resolve_thresholds({"three": math.nan}, kws, 0.6)


@pytest.mark.parametrize("value", BAD_THRESHOLDS + [{"seven": 5}, {"seven": math.nan}, {"dog": 0.5}])
def test_detect_and_spotter_refuse_the_same_thresholds(shipped, value):
    """detect returned nothing or everything for 5, -0.5, NaN and a traceback for "abc"; Spotter refused them."""
    b, qs = shipped
    for call in (lambda: detect(b, WAV, qs, threshold=value), lambda: Spotter(b, qs, threshold=value)):
        with pytest.raises(VpklInputError, match=r"^threshold"):
            call()


def test_detect_threshold_per_keyword(shipped):
    b, qs = shipped
    res = detect(b, WAV, qs, threshold={"three": 0.0})
    assert [r.threshold for r in res] == [b.threshold, 0.0] and res[1].detected


@pytest.mark.parametrize("threads", [-1, 1.5, True, "2"])
def test_bad_thread_count(shipped_bundle, threads):
    with pytest.raises(VpklInputError, match="^threads:"):
        Bundle.load(shipped_bundle, threads=threads)


def test_thread_count_capped_at_the_cores():
    assert checks.check_threads(10 ** 6) == (os.cpu_count() or 1) and checks.check_threads(0) == 0


def test_bad_head_precision_named_before_loading(shipped_bundle):
    with pytest.raises(VpklInputError, match="^head_precision: 'fp8', expected one of fp32, bf16, int8"):
        Bundle.load(shipped_bundle, head_precision="fp8")


def _edited(shipped_bundle, tmp_path, edit):
    b = tmp_path / "b"
    shutil.copytree(shipped_bundle, b)
    cfg = json.loads((b / "config.json").read_text())
    edit(cfg)
    (b / "config.json").write_text(json.dumps(cfg))
    return str(b)


def _set(*keys_value):
    *keys, value = keys_value

    def edit(cfg):
        for k in keys:
            d = cfg
            for part in k.split(".")[:-1]:
                d = d[part]
            d[k.split(".")[-1]] = value
    return edit


@pytest.mark.parametrize("edit, what", [
    (_set("frame_rate", 0), "frame_rate: expected a number > 0, got 0"),
    (_set("frame_rate", 100), "frame_rate: 100, but the front end gives 50 audio frames per second"),
    (_set("front_end.sample_rate", 8000), "front_end: settings do not match the model's own "
                                          "(model.front_end) in sample_rate"),
    (_set("front_end.sample_rate", "model.front_end.sample_rate", 8000), "front_end.fmax: expected a number > 0 "
                                                                         "and <= 4000, got 8000"),
    (_set("threshold", 5), "threshold: expected a score in [0, 1], got 5"),
    (_set("threshold", "abc"), "threshold: expected a score in [0, 1], got 'abc'"),
    (_set("precision", "fp64"), "precision: 'fp64', expected one of fp32, fp16, int8"),
    (_set("image.std", "model.image.std", [0.0]), "image.std: expected positive numbers"),
    (_set("frame_rate", 10 ** 30), "frame_rate: an integer of about 31 digits, but the front end gives 50"),
])
def test_config_values_checked(shipped_bundle, tmp_path, edit, what):
    """config.json is not covered by the graphs' SHA-256: an edited value was accepted and changed results
    (frame_rate 0 ended in ZeroDivisionError)."""
    b = _edited(shipped_bundle, tmp_path, edit)
    with pytest.raises(VpklInputError) as e:
        Bundle.load(b)
    assert str(e.value).startswith(os.path.join(b, "config.json") + ": ") and what in str(e.value), str(e.value)


def test_stream_with_zero_frame_rate_is_one_line(shipped_bundle, tmp_path):
    b = _edited(shipped_bundle, tmp_path, _set("frame_rate", 0))
    r = run_cli("stream", "--bundle", b, "--query", QUERY, "--file", WAV)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "config.json: frame_rate" in r.stderr


def test_bad_config_threshold_is_blamed_on_the_config(shipped_bundle, tmp_path):
    """It was reported as '--threshold: expected a score in [0, 1], got 5' though no --threshold was given."""
    b = _edited(shipped_bundle, tmp_path, _set("threshold", 5))
    r = run_cli("detect", "--bundle", b, "--query", QUERY, WAV)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "config.json: threshold: expected a score in [0, 1], got 5" in r.stderr and "--threshold" not in r.stderr


@pytest.mark.parametrize("value", ["nan", "5", "-0.5"])
def test_cli_threshold(shipped_bundle, value):
    r = run_cli("detect", "--bundle", shipped_bundle, "--query", QUERY, "--threshold", value, WAV)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"vpkl: error: --threshold: expected a score in [0, 1], got {float(value)!r}"]


@pytest.mark.parametrize("value, text", [(10 ** 5000, "an integer of about 5001 digits"), (-10 ** 30, "-an integer of about 31 digits"),
                                         (1.5, "1.5"), ("x" * 100, "'" + "x" * 56 + "...")],
                         ids=["5001 digits", "-31 digits", "1.5", "100 x"])
def test_refusals_show_a_huge_value_by_its_size(value, text):
    """Python 3.11 cannot print an int of over 4300 digits (ValueError inside the f-string that was
    to refuse it); a long value would fill the line."""
    with pytest.raises(VpklInputError) as e:
        checks.check_threshold(value)
    assert str(e.value) == f"threshold: expected a score in [0, 1], got {text}"


def test_a_config_with_a_number_python_cannot_read_is_one_line(shipped_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(shipped_bundle, b)
    text = (b / "config.json").read_text()
    (b / "config.json").write_text(text.replace('"threshold": ', '"threshold": ' + "7" * 5000 + ", \"was\": ", 1))
    with pytest.raises(VpklInputError, match="config.json: JSON that cannot be read .*4300 digits"):
        Bundle.load(str(b))


def test_huge_integers_elsewhere_are_refused_in_one_line():
    """The speech gate's settings and a scorer's n_valid converted an int past the float range
    (OverflowError) or printed one past 4300 digits (ValueError) before refusing it."""
    from vpkl.runtime.scorer import _check
    from vpkl.runtime.vad import SpeechGate
    with pytest.raises(VpklInputError, match=r"^vad threshold: expected a probability in \[0, 1\], got an integer"):
        SpeechGate(16000, threshold=10 ** 400)
    with pytest.raises(VpklInputError, match="^vad pad_s: .*an integer of about 5001 digits"):
        SpeechGate(16000, pad_s=10 ** 5000)
    with pytest.raises(VpklInputError, match="^n_valid: an integer of about 5001 digits, expected 1 to N = 3"):
        _check(np.zeros((1, 2, 4), np.float32), np.zeros((3, 4), np.float32), 10 ** 5000)
