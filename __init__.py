"""vpkl: visually prompted keyword localisation, exportable to ONNX and run without torch.

Show vpkl an image of a concept (a handwritten "7") and audio: it says whether the depicted
word is spoken (a detection score S against a threshold) and where (the frame, 50 per second).
``import vpkl`` gives the runtime (numpy + onnxruntime; it never imports torch)::

    import vpkl

    model = vpkl.Model()                                 # the shipped digits bundle; Model("path/to/bundle")
    model.enrol(vpkl.EXAMPLES + "/queries")              # a folder, image files, or {keyword: [images]}
    for r in model.detect(vpkl.EXAMPLES + "/example_4.wav"):  # a path (any format, rate, channels) or samples
        print(r.keyword, r.score, r.detected, r.frame, r.time_s)
    stream = model.stream()                              # a Spotter: one per stream, many at once
    for d in stream.run(vpkl.EXAMPLES + "/example_2.wav"):  # a path, an array, or an iterable of chunks
        print(d.keyword, d.score, d.time_s, d.delay_s)

Bad input raises :class:`VpklInputError` (a ValueError) whose message names the input.
``vpkl.EXAMPLES`` is the folder of the shipped examples (utterances, query images).

Subpackages (one concern each, data flowing audio -> features -> embeddings -> scores ->
detections):

- ``vpkl.runtime``: numpy + onnxruntime runtime (no torch): audio I/O, front end, bundles,
  query enrolment, ``detect``, streaming; :class:`Model` is in ``vpkl.runtime.api``.
- ``vpkl.model``: the PyTorch model (presets ``paper`` and ``digits``).
- ``vpkl.training``: the digits training recipe (data synthesis, sampling, loop).
- ``vpkl.evaluation``: the paper's detection / localisation protocol on JSON-lines manifests.
- ``vpkl.export``: PyTorch checkpoint -> ONNX bundle, with a parity check.
- ``vpkl.calibration``: int8 bundles; ``vpkl.benchmarks``: the benchmark suite; ``vpkl.cli``: the
  ``vpkl`` command.
"""

__version__ = "0.1.0"

# The runtime's names load on first use (PEP 562), so that `import vpkl.model` for training, or
# the `vpkl` command's --help, does not pay for onnxruntime; `from vpkl import Model` works as usual.
_EXPORTS = {"Model": "vpkl.runtime.api", "Bundle": "vpkl.runtime.bundle", "QuerySet": "vpkl.runtime.queries",
            "KeywordResult": "vpkl.runtime.detect", "Spotter": "vpkl.runtime.stream",
            "StreamConfig": "vpkl.runtime.stream", "Detection": "vpkl.runtime.stream",
            "VpklInputError": "vpkl.runtime.errors", "EXAMPLES": "vpkl.runtime.demo"}
__all__ = [*_EXPORTS, "__version__"]
_SUBPACKAGES = ("runtime", "model", "training", "evaluation", "export", "calibration", "benchmarks", "cli")

TYPE_CHECKING = False
if TYPE_CHECKING:  # for type checkers and IDEs, which do not run __getattr__
    from vpkl.runtime.api import Model
    from vpkl.runtime.bundle import Bundle
    from vpkl.runtime.detect import KeywordResult
    from vpkl.runtime.errors import VpklInputError
    from vpkl.runtime.queries import QuerySet
    from vpkl.runtime.stream import Detection, Spotter, StreamConfig


def __getattr__(name: str):
    import importlib
    if name in _SUBPACKAGES:   # vpkl.runtime without importing it first
        return importlib.import_module(f"vpkl.{name}")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vpkl' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups do not come here
    return value


def __dir__() -> list:
    return sorted({*globals(), *_EXPORTS})
