"""The roofline of a latency figure: multiply-accumulates per image over the CPU's peak MAC rate.

`macs_per_image(model)` counts the MACs of an OpenVINO model at batch 1 from its static shapes
(Convolution, GroupConvolution, MatMul; the rest of a CNN is a rounding error). `peak(flags, vendor,
cores, clock_ghz)` is ../shared/BENCHMARKING.md's formula, cores x clock x MACs per cycle per core,
with the MACs per cycle read off the ISA flags of /proc/cpuinfo:

| flags | INT8 MACs/cycle/core | FP32 | what it assumes |
|---|---:|---:|---|
| amx_int8 | 1024 | 32 | AMX tile unit (TMUL); two 512-bit FMA units for FP32 |
| avx512_vnni, AMD | 64 | 16 | Zen 4: AVX-512 on two 256-bit pipes |
| avx512_vnni, other | 128 | 32 | two 512-bit FMA units |
| avx_vnni | 64 | 16 | VNNI on two 256-bit pipes |
| avx512bw (no VNNI), AMD | 32 | 16 | vpmaddubsw + vpmaddwd on two 256-bit pipes |
| avx512bw (no VNNI), other | 64 | 32 | vpmaddubsw + vpmaddwd on two 512-bit FMA units (Skylake-SP; cap AVX512_CORE) |
| avx2 + fma | 32 | 16 | no VNNI: vpmaddubsw + vpmaddwd, about half the VNNI rate |

The clock is not in /proc/cpuinfo on every VM (it shows the base clock or nothing): pass it, or the
cpufreq maximum is used where the kernel has it, else the 3.7 GHz of BENCHMARKING.md's Zen 4 figure;
the result says which. No toolkit import at module level: `macs_per_image` is handed an `openvino.Model`;
`count_macs` reads a model file with OpenVINO's frontends (IR, ONNX, TFLite) when asked.

In a run, the latency stage counts each artifact's MACs (`count_macs`, cached with the timings) and the
latency validator adds `record(...)` to the row's latency as `roofline`: the p50's share of this CPU's peak
for the artifact's precision (INT8 artifacts against the INT8 peak, float ones against FP32), with the peak's
assumptions. An OpenVINO IR runs on oneDNN's kernels: under a oneDNN ISA cap (`ONEDNN_MAX_CPU_ISA`) its peak is
the rate of the instructions the cap leaves (`onednn_flags`); the other runtimes' peaks are the CPU's. The Keras
reference has none (it is not a file OpenVINO reads), nor has a precision without a
peak row (16x8).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from edgepipe.core.errors import runtime_reason
from edgepipe.core.versions import ISA_CAP_EXACT_INT8, cpu_flags, onednn_flags, onednn_isa_cap

# (flag, vendor or None for any) -> (int8, fp32 MACs per cycle per core, what it assumes); first match wins
PEAKS = (
    ("amx_int8", None, 1024, 32, "AMX int8 tiles; FP32 on two 512-bit FMA units"),
    ("avx512_vnni", "AuthenticAMD", 64, 16, "AVX-512 VNNI on two 256-bit pipes (AMD Zen 4)"),
    ("avx512_vnni", None, 128, 32, "AVX-512 VNNI on two 512-bit FMA units"),
    ("avx_vnni", None, 64, 16, "AVX-VNNI on two 256-bit pipes"),
    ("avx512bw", "AuthenticAMD", 32, 16, "AVX-512 without VNNI (vpmaddubsw + vpmaddwd) on two 256-bit pipes"),
    ("avx512bw", None, 64, 32, "AVX-512 without VNNI (vpmaddubsw + vpmaddwd) on two 512-bit FMA units"),
    ("avx2", None, 32, 16, "AVX2 without VNNI (vpmaddubsw + vpmaddwd); two 256-bit FMA pipes"),
)
DEFAULT_CLOCK_GHZ = 3.7  # ../shared/BENCHMARKING.md's AMD Zen 4 figure
CPUFREQ_MAX = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"


def clock_ghz(given: float | None = None, cpufreq: str = CPUFREQ_MAX) -> tuple[float, str]:
    """(GHz, where it came from)."""
    if given is not None:
        return given, "given"
    try:
        return int(Path(cpufreq).read_text().strip()) / 1e6, "cpufreq maximum"
    except (OSError, ValueError):
        return DEFAULT_CLOCK_GHZ, "BENCHMARKING.md's Zen 4 figure (no cpufreq here)"


def peak(flags: set[str], vendor: str, cores: int, ghz: float) -> dict | None:
    """Peak INT8 and FP32 MACs per second of `cores` cores, or None for an ISA not in PEAKS."""
    for flag, want_vendor, int8, fp32, assumes in PEAKS:
        if flag in flags and (want_vendor is None or want_vendor == vendor):
            if flag == "avx2" and "fma" not in flags:
                continue
            return {"int8_macs_per_s": cores * ghz * 1e9 * int8, "fp32_macs_per_s": cores * ghz * 1e9 * fp32,
                    "int8_macs_per_cycle": int8, "fp32_macs_per_cycle": fp32, "flag": flag, "assumes": assumes,
                    "cores": cores, "clock_ghz": ghz}
    return None


def host_peak(cores: int | None = None, given_ghz: float | None = None, onednn: bool = False) -> dict | None:
    """`peak` of this machine (all its cores unless `cores`), with the clock's source. `onednn`: for a runtime on
    oneDNN's kernels (OpenVINO), without the int8 instructions this process's ISA cap (`ONEDNN_MAX_CPU_ISA`) takes
    away: under the cap AVX512_CORE a VNNI CPU is held against the rate of AVX-512 without VNNI."""
    flags, vendor = cpu_flags()
    if onednn:
        flags = onednn_flags(flags)
        if onednn_isa_cap() in NARROW_CAPS:
            flags = {f for f in flags if not f.startswith(("avx512", "amx"))}
    ghz, source = clock_ghz(given_ghz)
    found = peak(flags, vendor, cores or os.cpu_count() or 1, ghz)
    if found is not None:
        found["clock_source"] = source
    return found


def macs_per_image(model) -> int:
    """MACs of one image through an `openvino.Model` whose shapes are static at batch 1."""
    total = 0
    for op in model.get_ops():
        kind = op.get_type_name()
        if kind not in ("Convolution", "GroupConvolution", "MatMul"):
            continue
        out = [int(d) for d in op.get_output_shape(0)]
        weights = [int(d) for d in op.get_input_shape(1)]
        if kind == "Convolution":  # weights [Cout, Cin, kh, kw...]
            total += math.prod(out) * math.prod(weights[1:])
        elif kind == "GroupConvolution":  # weights [G, Cout/G, Cin/G, kh, kw...]
            total += math.prod(out) * math.prod(weights[2:])
        else:
            a = [int(d) for d in op.get_input_shape(0)]
            k = a[-2] if op.get_attributes().get("transpose_a") else a[-1]
            total += math.prod(out) * k
    return total


def count_macs(path) -> tuple[int | None, str | None]:
    """(MACs per image, None) of a model file OpenVINO reads (.xml, .onnx, .tflite) at batch 1 (a dynamic
    batch is set to 1), or (None, why not): no OpenVINO, a file its frontends cannot read (an Edge TPU
    model's custom op), or shapes that stay dynamic."""
    try:
        import openvino as ov
    except ImportError:
        return None, "OpenVINO is not installed (it counts the MACs)"
    try:
        model = ov.Core().read_model(str(path))
        shape = model.input(0).get_partial_shape()
        if shape.rank.is_static and shape.rank.get_length() > 0 and shape[0].is_dynamic:
            model.reshape({model.input(0): [1, *list(shape)[1:]]})
        return macs_per_image(model), None
    except Exception as err:  # the frontends raise RuntimeError/OpConversionFailure; shapes ValueError
        return None, f"MACs not counted: {type(err).__name__}: {runtime_reason(err, 160)}"


# oneDNN caps below AVX-512 (no 512-bit kernels): the caps versions.py knows that are not AVX-512 or AVX10 ones
NARROW_CAPS = {c for c in ISA_CAP_EXACT_INT8 if not c.startswith(("AVX512", "AVX10"))}
ONEDNN_FORMATS = ("openvino-ir",)  # formats whose runtime runs oneDNN's kernels (and honours its cap)
# an artifact's precision -> the peak it is held against (float formats run as FP32 on a CPU)
PEAK_OF = {"int8": "int8", "fp32": "fp32", "fp16": "fp32"}


def record(p50_ms: float, macs: int, precision: str, threads: int, given_ghz: float | None = None,
           fmt: str | None = None) -> dict | None:
    """The `roofline` entry of a latency result: the p50's share of this CPU's peak for `precision` on the
    cores `threads` occupy; None for a precision without a peak row or a CPU not in PEAKS. `fmt`: the artifact's
    format; an OpenVINO IR runs on oneDNN's kernels, so a oneDNN ISA cap lowers its peak (`host_peak`)."""
    kind = PEAK_OF.get(precision)
    cores = max(1, min(threads, os.cpu_count() or 1))
    found = host_peak(cores, given_ghz, onednn=fmt in ONEDNN_FORMATS) if kind else None
    if found is None or not p50_ms:
        return None
    rate = found[f"{kind}_macs_per_s"]
    return {"share": round(share(p50_ms, macs, rate), 4), "of_peak": kind, "macs_per_image": macs,
            "peak_macs_per_s": rate, "roof_ms": round(1e3 * macs / rate, 3), "isa": found["flag"],
            "assumes": found["assumes"], "cores": found["cores"], "clock_ghz": found["clock_ghz"],
            "clock_source": found["clock_source"]}


def share(p50_ms: float, macs: int, macs_per_s: float) -> float:
    """Fraction of the peak a p50 reaches: (MACs / peak) / p50."""
    return (macs / macs_per_s) / (p50_ms / 1e3)
