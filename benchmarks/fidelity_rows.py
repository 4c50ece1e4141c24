"""The rows of bench_fidelity.py: (name, toolchain, kind, Keras transform chain, recipe).

`chain` is a tuple of (transform, params) steps applied to the Keras model before conversion
(fidelity_build.transforms); `recipe` is a edgepipe.quantize.recipes.Recipe as a dict.
Kinds: plain (edgepipe's `default` recipe, the latency baseline of its toolchain), by-hand (the
toolchain's defaults run by hand), fp32 / fp16 / bf16 (floors), method.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TOOLS = {"tflite": "tflite-arm", "nncf": "openvino-cpu", "ort": "onnx-cpu"}


@dataclass(frozen=True)
class Row:
    name: str
    tool: str
    kind: str
    chain: tuple = ()
    recipe: dict = field(default_factory=dict)
    native: dict = field(default_factory=dict)
    calibration_size: int | None = None  # N calibration images, the subset the pipeline picks for N (None = all)


def _m(tool: str, label: str, chain: tuple = (), native: dict | None = None, calibration_size: int | None = None,
       **recipe) -> Row:
    return Row(f"{TOOLS[tool]}/int8 {label}", tool, "method", chain, recipe, native or {}, calibration_size)


OVERFLOW = {"overflow_fix": "enable"}  # NNCF: 7-bit weights everywhere (int16 saturation on non-VNNI CPUs)
REDUCE = {"reduce_range": True}  # ORT: 7-bit weights (the same fix)
U8U8 = {"activation_type": "QUInt8", "weight_type": "QUInt8"}  # ORT: the u8 x u8 kernels
U8S8 = {"activation_type": "QUInt8", "weight_type": "QInt8"}  # ORT: the u8 x s8 kernels (VNNI's vpdpbusd)
NPU = {"target_device": "NPU"}  # NNCF's NPU hardware config (openvino-npu's IR), scored on the CPU plugin


EQ_SEP = ("eq-sep", {"alpha": 0.5})
RESEQ = ("reseq", {"images": 64})
BIASCORR = ("biascorr", {"images": 64})
GPTQ = ("gptq", {"images": 32})
# QAT on the 300 calibration images, bounded at 20 min of fine-tuning on 2 cores (~12 s per batch-8 step)
QAT = ("qat", {"images": 300, "steps": 100, "batch": 8, "lr": 1e-6, "max_seconds": 1200})

PLAIN = {t: f"{a}/int8 plain" for t, a in TOOLS.items()}

ROWS: list[Row] = [
    # the plain artifacts (latency baselines), the by-hand defaults, the floors
    *[Row(PLAIN[t], t, "plain") for t in TOOLS],
    Row("tflite by hand (TFLiteConverter default PTQ)", "tflite", "by-hand"),
    Row("openvino by hand (nncf.quantize defaults)", "nncf", "by-hand"),
    Row("onnx by hand (quantize_static defaults)", "ort", "by-hand"),
    Row("tflite/fp32 (float floor)", "tflite", "fp32"),
    Row("tflite/fp16 weights (floor)", "tflite", "fp16"),
    Row("openvino/bf16 (floor)", "nncf", "bf16"),
    # methods alone: this CPU's kernels first (x86 without VNNI: int16 saturation of u8 x s8 pairs)
    _m("nncf", "overflow-fix", native=OVERFLOW),
    _m("ort", "reduce-range", native=REDUCE),
    _m("ort", "u8u8", native=U8U8),
    _m("nncf", "eq-sep + overflow-fix", (EQ_SEP,), native=OVERFLOW),  # the no-saturation recipe on eq-sep
    _m("ort", "eq-sep + reduce-range", (EQ_SEP,), native=REDUCE),
    *[_m(t, "eq-sep", (EQ_SEP,)) for t in TOOLS],
    *[_m(t, "reseq", (RESEQ,)) for t in TOOLS],
    *[_m(t, "biascorr", (BIASCORR,)) for t in ("tflite", "ort")],
    _m("nncf", "mse ranges", calibration="mse"),
    _m("ort", "percentile ranges", calibration="percentile"),
    _m("ort", "entropy ranges", calibration="kl"),
    *[_m(t, "gptq", (GPTQ,)) for t in ("tflite", "ort")],
    _m("nncf", "gptq", (GPTQ,)),
    _m("tflite", "qat", (QAT,)),
    _m("nncf", "qat + overflow-fix", (QAT,), native=OVERFLOW),  # the same fine-tuned source, cached
    # (not "qat + reduce-range": that name holds a result built before fidelity_build keyed ORT stages by the
    # ONNX file, i.e. the plain model's artifact)
    _m("ort", "qat, reduce-range", (QAT,), native=REDUCE),
    _m("tflite", "eq-sep + qat", (EQ_SEP, QAT)),  # a second fine-tuning run (~25 min)
    # combinations of what helped alone, each one stage on top of cached sources
    _m("ort", "eq-sep + u8u8", (EQ_SEP,), native=U8U8),
    _m("ort", "qat + u8u8", (QAT,), native=U8U8),
    _m("ort", "qat + u8s8", (QAT,), native=U8S8),
    _m("tflite", "eq-sep + biascorr", (EQ_SEP, BIASCORR)),
    # calibration size (issue 17, must-have 3): `faithful`'s choice per toolchain on a 100-image subset (the
    # subset `calibration_size: 100` gives in the pipeline: equalization statistics and quantizer both use it)
    _m("tflite", "eq-sep, 100 calibration images", (EQ_SEP,), calibration_size=100),
    _m("nncf", "eq-sep + overflow-fix, 100 calibration images", (EQ_SEP,), native=OVERFLOW, calibration_size=100),
    _m("ort", "eq-sep + u8u8, 100 calibration images", (EQ_SEP,), native=U8U8, calibration_size=100),
    # ONNX Runtime's u8 x s8 kernels (uint8 activations, int8 weights): with 7-bit weights no pair of products
    # leaves int16 (255 * 64 * 2 < 32767), so they cannot saturate on x86 without VNNI either
    _m("ort", "eq-sep + u8s8 + reduce-range, 100 calibration images", (EQ_SEP,), native={**U8S8, **REDUCE},
       calibration_size=100),
    _m("ort", "eq-sep + u8s8, 100 calibration images", (EQ_SEP,), native=U8S8, calibration_size=100),
    # openvino-npu's `faithful` IR (eq-sep, NNCF's NPU config, 8-bit weights) at both sizes; scored on the CPU
    # plugin, so only a CPU whose int8 kernels do not saturate (VNNI, AMX) measures the IR itself
    _m("nncf", "eq-sep, NPU config", (EQ_SEP,), native=NPU),
    _m("nncf", "eq-sep, NPU config, 100 calibration images", (EQ_SEP,), native=NPU, calibration_size=100),
]
