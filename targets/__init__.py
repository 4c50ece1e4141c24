"""Deployment targets, by table.

Listing targets imports nothing heavy: the table holds plain data, and a target's module
(which itself imports TensorFlow / OpenVINO only inside its functions) is imported only
when that target is used.
"""

from __future__ import annotations

import importlib
import shutil
from dataclasses import asdict, dataclass
from importlib.util import find_spec


@dataclass(frozen=True)
class TargetInfo:
    name: str
    module: str
    description: str
    accepts: str  # the artifact format it consumes
    precisions: tuple[str, ...]
    runtime: str
    needs_packages: tuple[str, ...] = ()
    needs_executables: tuple[str, ...] = ()

    def host_status(self) -> dict:
        missing = [p for p in self.needs_packages if find_spec(p) is None]
        missing += [e for e in self.needs_executables if shutil.which(e) is None]
        return {"available": not missing, "missing": missing}

    def as_dict(self) -> dict:
        return {**asdict(self), **self.host_status()}


REGISTRY: dict[str, TargetInfo] = {
    t.name: t
    for t in (
        TargetInfo(
            name="tflite-arm",
            module="targets.tflite_arm",
            description="TensorFlow Lite for ARM CPUs (XNNPACK): FP32 and full-integer INT8",
            accepts="TensorFlow SavedModel",
            precisions=("fp32", "int8"),
            runtime="LiteRT (ai-edge-litert) or tflite-runtime",
            needs_packages=("tensorflow", "ai_edge_litert"),
        ),
        TargetInfo(
            name="openvino-cpu",
            module="targets.openvino_cpu",
            description="OpenVINO IR for Intel CPUs: FP32 IR and NNCF INT8 IR",
            accepts="TensorFlow SavedModel",
            precisions=("fp32", "int8"),
            runtime="OpenVINO Runtime (CPU plugin)",
            needs_packages=("openvino", "nncf"),
        ),
        TargetInfo(
            name="onnx-cpu",
            module="targets.onnx_cpu",
            description="ONNX for CPUs: FP32 via tf2onnx and QDQ INT8 via onnxruntime quantize_static",
            accepts="TensorFlow SavedModel",
            precisions=("fp32", "int8"),
            runtime="ONNX Runtime (CPUExecutionProvider)",
            needs_packages=("tf2onnx", "onnx", "onnxruntime"),
        ),
    )
}


def get(name: str) -> TargetInfo:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown target: expected one of {sorted(REGISTRY)}. Received: {name!r}"
        ) from None


def load_module(name: str):
    """Import a target's module (cheap: heavy toolkits load inside its functions)."""
    return importlib.import_module(get(name).module)
