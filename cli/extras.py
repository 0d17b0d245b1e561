"""Which optional extra (pyproject.toml ``[project.optional-dependencies]``) each command needs,
and the one line that says so when its package is missing.

``pip install .`` brings the runtime only (numpy, onnxruntime, soundfile, soxr, pillow): demo,
detect, stream, evaluate and info run with it. The extras are named for what they enable.
"""
from __future__ import annotations

import sys

# command -> the extra that brings its optional packages
COMMAND_EXTRAS = {
    "train": "train",            # torch, torchvision, scikit-learn, tqdm
    "make-dataset": "dataset",   # scikit-learn (its copy of the UCI handwritten digits)
    "calibrate": "calibrate",    # onnx (onnxruntime's quantization tools)
    "vpkl-export": "export",     # torch, onnx, onnxscript
    "detect": "plot",            # matplotlib, for --plot only
    "stream": "mic",             # sounddevice, for --mic only
    "benchmarks": "bench",       # python -m vpkl.benchmarks: torch (the reference), onnx, matplotlib
}

# optional module -> the pip package (distribution) that provides it
DISTRIBUTIONS = {
    "torch": "torch", "torchvision": "torchvision", "onnx": "onnx", "onnxscript": "onnxscript",
    "sklearn": "scikit-learn", "tqdm": "tqdm", "matplotlib": "matplotlib", "sounddevice": "sounddevice",
}


def missing_extra(command: str, error: ModuleNotFoundError) -> str | None:
    """The line to print for ``error`` raised while ``command`` ran, or None when the missing
    module is not an optional dependency (a bug, to be raised as it is)."""
    module = (error.name or "").split(".")[0]
    if module not in DISTRIBUTIONS or command not in COMMAND_EXTRAS:
        return None
    extra = COMMAND_EXTRAS[command]
    prog = command if command.startswith("vpkl") else f"vpkl {command}"
    return (f"{prog}: error: needs the '{extra}' extra ({DISTRIBUTIONS[module]} is not installed): "
            f"pip install 'vpkl[{extra}]'")


def exit_missing(command: str, error: ModuleNotFoundError) -> int:
    """Print :func:`missing_extra`'s line on stderr and return the exit code 2; re-raise ``error``
    when the missing module is not an optional dependency."""
    line = missing_extra(command, error)
    if line is None:
        raise error
    print(line, file=sys.stderr)
    return 2
