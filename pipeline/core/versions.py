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

# oneDNN's ISA cap (ONEDNN_MAX_CPU_ISA, formerly DNNL_MAX_CPU_ISA; OpenVINO's CPU plugin honours it): which of
# EXACT_INT8 each cap still lets the kernels use. A cap not listed here (ALL, DEFAULT, a misspelling) caps nothing.
ISA_CAP_EXACT_INT8 = {
    **dict.fromkeys(("SSE41", "AVX", "AVX2", "AVX512_CORE"), frozenset()),
    **dict.fromkeys(("AVX2_VNNI", "AVX2_VNNI_2"), frozenset({"avx_vnni"})),
    **dict.fromkeys(("AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX10_2_512"),
                    frozenset({"avx512_vnni"})),
    **dict.fromkeys(("AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16",
                     "AVX10_2_512_AMX_2"), frozenset({"avx512_vnni", "amx_int8"})),
}


def onednn_isa_cap(environ=None) -> str | None:
    """The oneDNN ISA cap this process runs under (upper case), or None."""
    env = os.environ if environ is None else environ
    cap = env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA")
    return cap.strip().upper() if cap and cap.strip() else None


def onednn_flags(flags: set[str] | None = None, cap: str | None = None) -> set[str]:
    """The CPU's flags (default: this CPU's) as oneDNN's kernels (OpenVINO's) may use them: under an ISA cap
    (default: this process's, `onednn_isa_cap`) without the int8 dot-product instructions (EXACT_INT8) the cap
    excludes. Only those are modelled: the rest of a cap shows in the kernels' own names."""
    flags = cpu_flags()[0] if flags is None else set(flags)
    cap = onednn_isa_cap() if cap is None else cap.upper()
    return flags - (EXACT_INT8 - ISA_CAP_EXACT_INT8.get(cap, EXACT_INT8))


def int8_saturates(flags: set[str] | None = None, cap: str | None = None) -> bool:
    """Whether this x86 CPU's u8 x s8 int8 kernels in OpenVINO can saturate: without VNNI or AMX, oneDNN sums
    pairs of products in int16 (vpmaddubsw), which saturates on 8-bit weights. Such a CPU scores an INT8 model
    made for hardware that accumulates exactly (an NPU) worse than that hardware runs it. `flags`, `cap`: as
    `onednn_flags` (e.g. the cap AVX2 makes a VNNI CPU's kernels saturate too)."""
    return pairs_saturate(onednn_flags(flags, cap))


def pairs_saturate(flags: set[str]) -> bool:
    """Whether an x86 CPU with these flags sums pairs of u8 x s8 products in int16 (vpmaddubsw, which saturates on
    8-bit weights) in its int8 kernels: one with AVX2 or AVX-512F but neither VNNI nor AMX. OpenVINO's oneDNN
    (`int8_saturates`, with its ISA cap) and ONNX Runtime's MLAS (formats/onnx.py) both do."""
    return bool(flags & {"avx2", "avx512f"}) and not flags & EXACT_INT8


def host_facts() -> dict:
    cap = onednn_isa_cap()
    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "isa_flags": sorted(cpu_flags()[0] & ISA_FLAGS),
        **({"onednn_isa_cap": cap} if cap else {}),  # OpenVINO's kernels ran below the CPU's ISA
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "tools": tool_versions(*TOOLS),
    }
