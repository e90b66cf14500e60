"""ONNX Runtime sessions with an explicit, validated choice of execution provider and threads."""

from __future__ import annotations

import onnxruntime as ort


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


def resolve_providers(device: str = "cpu") -> list[str]:
    """Map ``cpu``/``cuda``/``auto`` or an exact provider name to a provider list.

    ONNX Runtime lists some providers (e.g. Azure) before the CPU one, so ``cpu`` is explicit.
    """
    available = available_providers()
    aliases = {
        "cpu": "CPUExecutionProvider",
        "cuda": "CUDAExecutionProvider",
        "tensorrt": "TensorrtExecutionProvider",
        "coreml": "CoreMLExecutionProvider",
        "openvino": "OpenVINOExecutionProvider",
    }
    if device == "auto":
        preferred = [p for p in ("CUDAExecutionProvider", "CoreMLExecutionProvider") if p in available]
        return preferred + ["CPUExecutionProvider"]
    name = aliases.get(device.lower(), device)
    if name not in available:
        raise ValueError(f"device {device!r} is not available; choose one of: cpu, auto, {', '.join(available)}")
    return [name] if name == "CPUExecutionProvider" else [name, "CPUExecutionProvider"]


def create_session(
    model: str | bytes,
    *,
    device: str = "cpu",
    threads: int = 0,
    optimize: bool = True,
    save_optimized_to: str | None = None,
) -> ort.InferenceSession:
    """One session per model, built once and reused for every frame.

    ``optimize=False`` is for a graph that ONNX Runtime already optimised and saved (``save_optimized_to``, see
    :mod:`maskwatch.runtime.graph_cache`): it would only repeat that work.
    """
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if save_optimized_to is not None:
        options.optimized_model_filepath = save_optimized_to
    options.log_severity_level = 3
    # The pipeline runs two sessions back to back (detector, classifier); threads that spin after a run would steal
    # the cores the other session needs on a small CPU.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(model, sess_options=options, providers=resolve_providers(device))


def session_fingerprint(*, threads: int = 0) -> dict:
    """What a saved optimised CPU graph depends on besides the model: ONNX Runtime's version and our options."""
    return {"onnxruntime": ort.__version__, "level": "all", "spinning": 0, "threads": threads, "provider": "cpu"}
