"""onnxruntime execution providers for a bundle's sessions: CPU by default, CUDA or TensorRT on a GPU.

A provider list is onnxruntime's own (``InferenceSession(providers=...)``): names such as
``"CUDAExecutionProvider"`` or ``(name, {option: value})`` pairs, tried in order, each graph
node going to the first provider that can run it. vpkl appends ``CPUExecutionProvider`` when
it is not listed, so a node no GPU provider takes still runs. Only providers this onnxruntime
build offers (``onnxruntime.get_available_providers()``) are accepted; the others name the
package that brings them. The native scoring head (:mod:`vpkl.runtime.scorer`) runs on the
CPU whatever the provider.
"""
from __future__ import annotations

import os

import onnxruntime as ort

from .errors import VpklInputError

CPU = "CPUExecutionProvider"

# short name (the CLI's --provider) -> (onnxruntime's provider name, the pip package that brings it)
PROVIDERS = {
    "cpu": (CPU, "onnxruntime"),
    "cuda": ("CUDAExecutionProvider",
             "onnxruntime-gpu (in place of onnxruntime; with the CUDA and cuDNN libraries its release names)"),
    "tensorrt": ("TensorrtExecutionProvider",
                 "onnxruntime-gpu (in place of onnxruntime) with NVIDIA TensorRT (pip install tensorrt)"),
    "tensorrt-rtx": ("NvTensorRtRtxExecutionProvider", "onnxruntime-trt-rtx (in place of onnxruntime)"),
}
_PACKAGE = {name: package for name, package in PROVIDERS.values()}


def provider_list(name: str = "cpu", fp16: bool = False, cache_dir: str | None = None) -> list:
    """onnxruntime's provider list for one provider by short name, with its usual options.

    Args:
        name: "cpu", "cuda", "tensorrt" or "tensorrt-rtx" (:data:`PROVIDERS`).
        fp16: TensorRT only: let TensorRT build fp16 kernels (``trt_fp16_enable``); the other
            providers compute in the bundle's precision (an fp16 bundle: ``vpkl-export --fp16``).
        cache_dir: TensorRT: the engine cache folder (``trt_engine_cache_enable``,
            ``trt_engine_cache_path``); TensorRT-RTX: its runtime cache folder
            (``nv_runtime_cache_path``). Built engines are reused from there on the next load.
    Returns:
        A list for :func:`session_providers` / ``Bundle.load(providers=...)``: TensorRT gets
        CUDA after it for the nodes TensorRT does not take, then the CPU.
    Raises:
        VpklInputError: an unknown name (named ``provider``), ``fp16`` or ``cache_dir`` with a
            provider that has no such option (named ``fp16`` / ``cache_dir``).
    """
    if name not in PROVIDERS:
        raise VpklInputError(f"provider: {name!r}, expected one of {', '.join(PROVIDERS)}")
    if fp16 and name != "tensorrt":
        raise VpklInputError(f"fp16: only with the tensorrt provider, got {name}; for the others export an fp16 "
                             "bundle (vpkl-export --fp16)")
    if cache_dir is not None and name not in ("tensorrt", "tensorrt-rtx"):
        raise VpklInputError(f"cache_dir: only with the tensorrt and tensorrt-rtx providers, got {name}")
    ort_name = PROVIDERS[name][0]
    if name == "tensorrt":
        opts = {"trt_fp16_enable": "1" if fp16 else "0"}
        if cache_dir is not None:
            opts.update(trt_engine_cache_enable="1", trt_engine_cache_path=os.fspath(cache_dir))
        return [(ort_name, opts), PROVIDERS["cuda"][0], CPU]
    if name == "tensorrt-rtx" and cache_dir is not None:
        return [(ort_name, {"nv_runtime_cache_path": os.fspath(cache_dir)}), CPU]
    return [ort_name] if name == "cpu" else [ort_name, CPU]


def session_providers(providers=None) -> list:
    """Check an onnxruntime provider list and complete it with the CPU provider.

    Args:
        providers: None (the CPU only), or a list of provider names and (name, options dict)
            pairs, as ``onnxruntime.InferenceSession`` takes them.
    Returns:
        The list to give onnxruntime, ending with ``CPUExecutionProvider``.
    Raises:
        VpklInputError (named ``providers``): not such a list, or a provider this onnxruntime
            does not offer, with the package that brings it.
    """
    if providers is None:
        return [CPU]
    if isinstance(providers, (str, bytes)) or not isinstance(providers, (list, tuple)):
        raise VpklInputError(f"providers: expected a list such as ['CUDAExecutionProvider'], got {providers!r}")
    out, available = [], ort.get_available_providers()
    for p in providers:
        name = p[0] if isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], dict) else p
        if not isinstance(name, str):
            raise VpklInputError(f"providers: {p!r}, expected a provider name or a (name, options dict) pair")
        if name not in available:
            package = _PACKAGE.get(name)
            raise VpklInputError(f"providers: {name} is not available in this onnxruntime "
                                 f"(it offers {', '.join(available)}); "
                                 + (f"it comes with the package {package}" if package else
                                    "see onnxruntime.ai/docs/execution-providers for its package"))
        out.append(p)
    if CPU not in [p[0] if isinstance(p, tuple) else p for p in out]:
        out.append(CPU)
    return out


def check_started(session: ort.InferenceSession, providers: list, path: str) -> None:
    """onnxruntime falls back to the CPU with only a warning when a provider's libraries fail to
    load (CUDA, cuDNN, TensorRT): raise instead, so that a GPU run is never silently a CPU run.

    Raises:
        VpklInputError: a requested provider is not among the session's, naming the graph.
    """
    started = set(session.get_providers())
    for p in providers:
        name = p[0] if isinstance(p, tuple) else p
        if name not in started:
            raise VpklInputError(f"providers: {name} could not start for {path} (onnxruntime fell back to "
                                 f"{', '.join(session.get_providers())}); are its GPU libraries installed? "
                                 f"It needs {_PACKAGE.get(name, 'its onnxruntime package')}")
