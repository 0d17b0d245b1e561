"""Shared fixtures: real data from ../shared/data (or $VPKL_DATA), the shipped assets, a tiny bundle."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("VPKL_DATA", os.path.join(ROOT, "..", "shared", "data"))
ASSETS = os.path.join(ROOT, "assets")
EXAMPLES = os.path.join(ASSETS, "examples")
FSDD = os.path.join(DATA, "fsdd", "recordings")

needs_data = pytest.mark.skipif(not os.path.isdir(FSDD), reason=f"FSDD not found at {FSDD} (set VPKL_DATA)")


def run_cli(*args, module="vpkl.cli", env=None):
    """Run a vpkl command in a fresh interpreter; returns CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.fixture(scope="session")
def example_wavs():
    return sorted(os.path.join(EXAMPLES, f) for f in os.listdir(EXAMPLES) if f.endswith(".wav"))


@pytest.fixture(scope="session")
def example_queries():
    q = os.path.join(EXAMPLES, "queries")
    return sorted(os.path.join(q, f) for f in os.listdir(q))


@pytest.fixture(scope="session")
def shipped_bundle():
    return os.path.join(ASSETS, "digits")


@pytest.fixture(scope="session")
def random_bundle(tmp_path_factory, example_wavs, example_queries):
    """An untrained digits model exported to a bundle (the export checks its own parity)."""
    import torch
    from vpkl.export.onnx_export import export_bundle
    from vpkl.model.vpkl_model import build_model, save_checkpoint
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("bundle")
    ckpt = str(d / "random.ckpt")
    save_checkpoint(build_model("digits"), ckpt, threshold=0.5, keywords=["zero", "one"])
    export_bundle(ckpt, str(d / "b"), example_wavs[:2], example_queries[:3])
    return str(d / "b"), ckpt


@pytest.fixture(scope="session")
def fsdd_file():
    if not os.path.isdir(FSDD):
        pytest.skip(f"FSDD not found at {FSDD} (set VPKL_DATA)")
    return os.path.join(FSDD, "7_jackson_3.wav")


def pytest_report_header(config):
    """Say where the data tests look, and that they skip without it (a fresh clone elsewhere)."""
    if os.path.isdir(FSDD):
        return f"vpkl data: {DATA}"
    return f"vpkl data: NOT FOUND at {DATA}: the tests that need it skip; set VPKL_DATA to its folder"


def cut_digital_silence(x, step=320, shortest=1600):
    """The test's own reading of runtime/gaps.py's rule, for audio with at most one run of zeros
    of 0.1 s or more: (x without that run, the input frames that then hold the silence: from the
    first frame whose centre (320 n + 280 samples) is at the cut or later, as many as the run has
    whole frames, rounded half up)."""
    zero = np.concatenate([[False], x == 0, [False]])
    edges = np.flatnonzero(np.diff(zero.astype(np.int8)))
    runs = [(a, b - a) for a, b in zip(edges[::2], edges[1::2]) if b - a >= shortest]
    assert len(runs) <= 1
    if not runs:
        return x, []
    a, n = runs[0]
    first = max(0, -(-(a - 280) // step))
    return np.concatenate([x[:a], x[a + n:]]), list(range(first, first + (n + step // 2) // step))
