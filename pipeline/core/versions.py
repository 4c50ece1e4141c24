"""Tool versions (from package metadata: no heavy imports) and host facts."""

from __future__ import annotations

import os
import platform
from importlib import metadata

TOOLS = {
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "keras": ("keras",),
    "ai-edge-litert": ("ai-edge-litert",),
    "openvino": ("openvino",),
    "nncf": ("nncf",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime",),
    "tf2onnx": ("tf2onnx",),
    "numpy": ("numpy",),
    "pillow": ("pillow",),
}


def version_of(tool: str) -> str | None:
    for dist in TOOLS.get(tool, (tool,)):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def tool_versions(*tools: str) -> dict[str, str | None]:
    return {t: version_of(t) for t in tools}


ISA_FLAGS = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8", "amx_bf16",
             "neon", "asimd", "fma"}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags(path: str = "/proc/cpuinfo") -> tuple[set[str], str]:
    """(every ISA flag, vendor id) of the first CPU in /proc/cpuinfo; empty where there is none."""
    flags: set[str] = set()
    vendor = ""
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "vendor_id" and not vendor:
                    vendor = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return flags, vendor


EXACT_INT8 = {"avx512_vnni", "avx_vnni", "amx_int8"}  # int8 dot products that accumulate in int32 directly


def int8_saturates(flags: set[str] | None = None) -> bool:
    """Whether this x86 CPU's u8 x s8 int8 kernels can saturate: without VNNI or AMX, oneDNN (OpenVINO, ONNX
    Runtime) sums pairs of products in int16 (vpmaddubsw), which saturates on 8-bit weights. Such a CPU scores
    an INT8 model made for hardware that accumulates exactly (an NPU) worse than that hardware runs it."""
    flags = cpu_flags()[0] if flags is None else flags
    return bool(flags & {"avx2", "avx512f"}) and not flags & EXACT_INT8


def host_facts() -> dict:
    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "isa_flags": sorted(cpu_flags()[0] & ISA_FLAGS),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "tools": tool_versions(*TOOLS),
    }
