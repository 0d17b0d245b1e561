"""fp16 bundles: the branches' graphs in float16, inputs and outputs kept float32.

Converted with onnxruntime's own converter (``onnxruntime.transformers.float16``), which casts
at the graph's inputs and outputs so callers do not change. The weights are stored in fp16
(half the size). Where an execution provider has fp16 kernels (GPUs) the graphs compute in
fp16; onnxruntime's CPU provider has none for most of these ops and inserts casts to float32
when it loads the graph (the optimised audio_causal graph holds 27 Casts, the file 6), so on a
CPU an fp16 bundle saves size, not time. What stays float32 and why:

- ``head.onnx`` whole: it holds no weights (fp16 would save nothing), and its min-max
  normalisation and argmax compare attention values that differ by less than fp16's
  resolution (3 significant digits), so the localised frame could move;
- the converter's default block list (ops without fp16 kernels or that lose range).

LSTM and LayerNorm are converted: on the digits recipe's 400 validation utterances, keeping
them float32 gave exactly the same detection and localisation F1 as converting them (both
equal to fp32's, 0.950 and 0.933), for a bundle 62% larger.
"""
from __future__ import annotations

import onnx
from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

FP16_GRAPHS = ("image.onnx", "audio_causal.onnx", "audio_bidir.onnx")
PARITY_TOL_FP16 = 5e-3  # on S (measured on the shipped digits model: 4.3e-4); fp32 bundles are held to 1e-4


def convert_to_fp16(path: str) -> None:
    """Rewrite the ONNX graph file at ``path`` in fp16, its inputs and outputs float32.

    Raises:
        onnx's and the converter's own errors for a file that is not a loadable ONNX graph.
    """
    model = convert_float_to_float16(onnx.load(path), keep_io_types=True, op_block_list=list(DEFAULT_OP_BLOCK_LIST))
    onnx.save(model, path)


def fp16_bundle(src: str, out: str, force: bool = False) -> None:
    """Write an fp16 copy of the fp32 bundle ``src`` to ``out`` (no checkpoint or torch needed).

    Unlike ``vpkl-export --fp16`` there is no PyTorch model to check parity against: compare the
    two bundles with ``vpkl detect`` or ``python -m vpkl.benchmarks`` (|S - S_fp32| rows).

    Raises:
        VpklInputError: ``src`` is not an fp32 bundle, or ``out`` exists (without ``force``) and is
            not a bundle folder.
    """
    import json
    import os
    import shutil

    from vpkl.runtime.bundle import BUNDLE_FILES, Bundle, graph_digests
    from vpkl.runtime.errors import VpklInputError

    from .folders import building, check_out_dir
    bundle = Bundle.load(src)
    if bundle.precision != "fp32":
        raise VpklInputError(f"{src}: is already an {bundle.precision} bundle; convert the fp32 bundle")
    check_out_dir(out, [src], force)
    with building(out, ".vpkl-fp16-") as tmp:
        for g in BUNDLE_FILES[1:]:
            shutil.copy(os.path.join(src, g), os.path.join(tmp, g))
            if g in FP16_GRAPHS:
                convert_to_fp16(os.path.join(tmp, g))
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(dict(bundle.config, precision="fp16", sha256=graph_digests(tmp)), f, indent=2)
        Bundle.load(tmp)
