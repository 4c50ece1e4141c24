"""Deployment targets, by table.

Listing targets imports nothing heavy: the table holds plain data, and a target's module
(which itself imports TensorFlow / OpenVINO only inside its functions) is imported only
when that target is used.
"""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import asdict, dataclass

from edgepipe.core.extras import pip_hint
from edgepipe.targets import host


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
    artifact: str = ""  # what it produces
    compiler: str | None = None  # the device compiler it runs, when there is one
    install: str = ""  # how to get what is missing
    device: str | None = None  # key in targets.host.DEVICES: the hardware it runs on
    device_libraries: tuple[str, ...] = ()  # runtime libraries the device needs (e.g. "edgetpu")
    notes: str = ""

    def host_status(self) -> dict:
        """What this host has for this target (probed without importing any toolkit)."""
        packages = {p: host.has_package(p) for p in self.needs_packages}
        executables = {e: host.has_executable(e) for e in self.needs_executables}
        compiler = host.has_executable(self.compiler) if self.compiler else None
        dev = host.DEVICES[self.device] if self.device else None
        libraries = {f"lib{name}": host.has_library(name) for name in self.device_libraries}
        device = dev.present() if dev else None
        missing = [p for p, ok in packages.items() if not ok] + [e for e, ok in executables.items() if not ok]
        if compiler is False:
            missing.append(self.compiler)
        missing += [lib for lib, ok in libraries.items() if not ok]
        if device is False:
            missing.append(f"device: {dev.key}")
        return {
            "available": not missing,
            "missing": missing,
            "host": {"packages": packages, "executables": executables, "compiler": compiler,
                     "libraries": libraries, "device": device},
        }

    def how_to_finish(self, status: dict | None = None) -> str:
        """The exact way to complete this target on this host ("" when nothing is missing): the extra
        that brings missing Python packages (`pipeline/core/extras.py`), then `install` for a missing
        compiler, executable, library or device."""
        status = status if status is not None else self.host_status()
        packages = [p for p, ok in status["host"]["packages"].items() if not ok]
        others = [m for m in status["missing"] if m not in packages]
        steps = [pip_hint(packages)] if packages else []
        if others:
            steps.append(self.install or f"install {', '.join(others)}")
        return "; ".join(steps) + ("; then rerun" if steps else "")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["device"] = host.DEVICES[self.device].name if self.device else None
        status = self.host_status()
        return {**d, **status, "how_to_finish": self.how_to_finish(status)}


REGISTRY: dict[str, TargetInfo] = {
    t.name: t
    for t in (
        TargetInfo(
            name="tflite-arm",
            module="edgepipe.targets.tflite_arm",
            description="TensorFlow Lite for ARM CPUs (XNNPACK): FP32 and full-integer INT8",
            accepts="TensorFlow SavedModel",
            precisions=("fp32", "int8"),
            runtime="LiteRT (ai-edge-litert) or tflite-runtime",
            needs_packages=("tensorflow", "ai_edge_litert"),
            artifact=".tflite FP32 and INT8, with the minimum TFLite runtime version their op versions need",
        ),
        TargetInfo(
            name="openvino-cpu",
            module="edgepipe.targets.openvino_cpu",
            description="OpenVINO IR for Intel CPUs: FP32 IR and NNCF INT8 IR",
            accepts="TensorFlow SavedModel",
            precisions=("fp32", "int8"),
            runtime="OpenVINO Runtime (CPU plugin)",
            needs_packages=("openvino", "nncf"),
            artifact="OpenVINO IR (.xml/.bin) + a CPU blob compiled for this host (export_model)",
            notes="the blob is specific to the CPU and OpenVINO version it was compiled with",
        ),
        TargetInfo(
            name="coral-edgetpu",
            module="edgepipe.targets.coral_edgetpu",
            description="Coral Edge TPU: full-integer TFLite (builtin int8 ops, static batch 1), edgetpu_compiler",
            accepts="TensorFlow SavedModel",
            precisions=("int8",),
            runtime="LiteRT + libedgetpu delegate (libedgetpu.so.1)",
            needs_packages=("tensorflow", "ai_edge_litert"),
            artifact="Edge-TPU-ready INT8 .tflite + pre-flight report; *_edgetpu.tflite when compiled",
            compiler="edgetpu_compiler",
            install=("x86-64 Debian/Ubuntu: curl https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo "
                     "apt-key add -; echo 'deb https://packages.cloud.google.com/apt coral-edgetpu-stable main' | "
                     "sudo tee /etc/apt/sources.list.d/coral-edgetpu.list; sudo apt-get update; sudo apt-get "
                     "install edgetpu-compiler libedgetpu1-std (the compiler, or Coral's Colab notebook, makes the "
                     "*_edgetpu.tflite; latency needs an attached Edge TPU: USB Accelerator or PCIe /dev/apex_0)"),
            device="edgetpu",
            device_libraries=("edgetpu",),
            notes="without the compiler: pre-flight report and CPU accuracy of the same int8 model",
        ),
        TargetInfo(
            name="openvino-npu",
            module="edgepipe.targets.openvino_npu",
            description="Intel NPU (Core Ultra): static batch-1 NNCF INT8 IR for NPU; MYRIAD FP16 IR option",
            accepts="TensorFlow SavedModel",
            precisions=("int8", "fp16"),
            runtime="OpenVINO Runtime (NPU plugin); MYRIAD: OpenVINO 2022.3 LTS only",
            needs_packages=("openvino", "nncf"),
            artifact="OpenVINO IR (NPU-ready INT8) + NPU blob when an NPU is present; FP16 IR for MYRIAD",
            install=("run on a machine with an Intel NPU (Core Ultra) and its Linux driver "
                     "(github.com/intel/linux-npu-driver: /dev/accel/accel0), where OpenVINO lists the device 'NPU'"),
            device="npu",
            notes="MYRIAD (Neural Compute Stick 2) was removed in OpenVINO 2023.0: its FP16 IR needs 2022.3 LTS",
        ),
        TargetInfo(
            name="onnx-cpu",
            module="edgepipe.targets.onnx_cpu",
            description="ONNX for CPUs: FP32 via tf2onnx and QDQ INT8 via onnxruntime quantize_static",
            accepts="TensorFlow SavedModel",
            precisions=("fp32", "int8"),
            runtime="ONNX Runtime (CPUExecutionProvider)",
            needs_packages=("tf2onnx", "onnx", "onnxruntime"),
            artifact=".onnx FP32 (tf2onnx, opset 17 unless set) and QDQ INT8, both run by ONNX Runtime's CPU provider",
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


class RegistryModule(types.ModuleType):
    """This package, callable: `edgepipe.targets()` lists every target with what this host has."""

    def __call__(self) -> list[dict]:
        return [info.as_dict() for info in REGISTRY.values()]


sys.modules[__name__].__class__ = RegistryModule
