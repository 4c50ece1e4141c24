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


def host_facts() -> dict:
    flags = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    flags = sorted(have & ISA_FLAGS)
                    break
    except OSError:
        pass
    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "isa_flags": flags,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "tools": tool_versions(*TOOLS),
    }
