"""vpkl: visually prompted keyword localisation, exportable to ONNX and run without torch.

Subpackages (one concern each, data flowing audio -> features -> embeddings -> scores ->
detections):

- ``vpkl.runtime``: numpy + onnxruntime runtime (no torch): audio I/O, front end, bundles,
  query enrolment, ``detect``.
- ``vpkl.model``: the PyTorch model (presets ``paper`` and ``digits``).
- ``vpkl.training``: the digits training recipe (data synthesis, sampling, loop).
- ``vpkl.evaluation``: the paper's detection / localisation protocol on JSON-lines manifests.
- ``vpkl.export``: PyTorch checkpoint -> ONNX bundle, with a parity check.
"""

__version__ = "0.1.0"
