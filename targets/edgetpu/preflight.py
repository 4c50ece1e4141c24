"""Coral Edge TPU pre-flight: what `edgetpu_compiler` would map, without the compiler.

Reads a .tflite flatbuffer with the TFLite schema (no interpreter, no TensorFlow at import time),
lists subgraph 0's operators in execution order, checks each against the Edge TPU's documented
op table and general requirements, and finds the first op that falls back to the CPU: the
compiler makes a single Edge TPU partition, so that op and every op after it run on the CPU.

It is an estimate, not a compiler: limitations that depend on the compiler's internals (sizes it
will not map, op versions) are not modelled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from edgepipe.core.errors import expected_received
from edgepipe.formats.tflite import enum_names, op_name, read_tflite, seq, text
from edgepipe.targets.edgetpu import ops as edgetpu_ops

# Edge TPU on-chip SRAM for parameters. Approximate: of the 8 MB, some is used for other things
# (the compiled executable, activations), so not all of it can cache weights.
EDGETPU_SRAM_BYTES = 8 * 1024 * 1024
# Assumption: ~6.5 MiB of the 8 MiB is usable for parameter caching. Models whose parameters do
# not fit stream the rest from host memory on every inference; `edgetpu_compiler --num_segments`
# splits them across several Edge TPUs (pipelining) so that each segment fits.
USABLE_SRAM_BYTES = int(6.5 * 1024 * 1024)

ACTIVATION_DTYPES = frozenset({"int8", "uint8"})
CONSTANT_DTYPES = frozenset({"int8", "uint8", "int32", "int64"})  # weights; int32 bias; shape/axis params
MAX_NON_UNIT_DIMS = 3  # only the 3 innermost dimensions may be > 1


@dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    constant: bool


@dataclass(frozen=True)
class OpReport:
    index: int
    op: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    supported: bool
    reasons: tuple[str, ...]
    placement: str  # "edgetpu" or "cpu"
    note: str = ""  # the documented limitation, when there is one


@dataclass(frozen=True)
class PreflightReport:
    path: str
    ops: tuple[OpReport, ...]
    cpu_from_index: int | None
    param_bytes: int
    sram_bytes: int
    usable_sram_bytes: int
    recommended_segments: int

    @property
    def fits_in_sram(self) -> bool:
        return self.param_bytes <= self.usable_sram_bytes

    @property
    def all_on_edgetpu(self) -> bool:
        return self.cpu_from_index is None

    def to_json(self) -> dict:
        d = asdict(self)
        d["fits_in_sram"] = self.fits_in_sram
        d["all_on_edgetpu"] = self.all_on_edgetpu
        return d


def recommend_segments(param_bytes: int, usable_sram_bytes: int = USABLE_SRAM_BYTES) -> int:
    """Edge TPUs to pipeline across so each segment's parameters fit on-chip: ceil(params / usable)."""
    if param_bytes < 0 or usable_sram_bytes <= 0:
        raise ValueError(
            expected_received("segment math", "param_bytes >= 0 and usable_sram_bytes > 0",
                              (param_bytes, usable_sram_bytes))
        )
    return max(1, math.ceil(param_bytes / usable_sram_bytes))


def load_model(path: Path):
    """The parsed flatbuffer, verified (indices in range, buffers inside the file) before anything reads it."""
    return read_tflite(path, what="Edge TPU pre-flight input")


def _buffer_bytes(model, buffer_index: int) -> int:
    if not buffer_index or buffer_index >= len(seq(model.buffers)):
        return 0
    b = model.buffers[buffer_index]
    if b.data is not None and len(b.data):
        return len(b.data)
    return int(b.size or 0) if (b.offset or 0) > 1 else 0  # large models keep buffers after the flatbuffer


def _tensor(model, sg, index: int, dtype_names: dict[int, str]) -> TensorInfo:
    t = sg.tensors[index]
    shape = tuple(int(v) for v in (seq(t.shapeSignature) or seq(t.shape)))
    name = text(t.name)
    return TensorInfo(int(index), name, dtype_names.get(t.type, str(t.type)).lower(), shape,
                      _buffer_bytes(model, t.buffer) > 0)


def _tensor_reasons(op: str, slot: int, role: str, t: TensorInfo) -> list[str]:
    where = f"{role} {slot} ({t.name})"
    reasons = []
    if t.constant:
        if t.dtype not in CONSTANT_DTYPES:
            reasons.append(f"{where} is a {t.dtype} constant: expected 8-bit quantized weights (int32 bias)")
        elif t.dtype in {"int32", "int64"} and op in edgetpu_ops.BIAS_INPUT and slot == 1:
            reasons.append(f"{where} weights are {t.dtype}: expected int8/uint8")
        return reasons
    if t.dtype not in ACTIVATION_DTYPES:
        reasons.append(f"{where} is {t.dtype}: expected a quantized 8-bit tensor (int8/uint8)")
    # A -1 in shape_signature (e.g. Keras batch None) makes edgetpu_compiler fail outright ("delegate that only
    # supports static-sized tensors", google-coral/edgetpu#829); edgepipe's SavedModel export fixes batch 1.
    if any(d < 0 for d in t.shape):
        reasons.append(f"{where} has a dynamic shape {list(t.shape)}: expected static shapes (batch fixed to 1)")
    elif len(t.shape) > 1 and t.shape[0] != 1 and len(t.shape) >= 4:
        reasons.append(f"{where} has batch {t.shape[0]}: expected batch 1")
    outer = t.shape[:-MAX_NON_UNIT_DIMS]
    if any(d > 1 for d in outer):
        reasons.append(f"{where} shape {list(t.shape)}: expected only the 3 innermost dimensions to be > 1")
    return reasons


def _option_reasons(op: str, options, inputs: tuple[TensorInfo, ...]) -> list[str]:
    reasons = []
    fused = getattr(options, "fusedActivationFunction", 0) or 0
    if op in edgetpu_ops.NO_FUSED_ACTIVATION and fused:
        reasons.append(f"{op} has a fused activation: expected none")
    if op in edgetpu_ops.SAME_DILATION and options is not None:
        h, w = getattr(options, "dilationHFactor", 1), getattr(options, "dilationWFactor", 1)
        if h != w:
            reasons.append(f"{op} dilation (h={h}, w={w}): expected the same dilation in x and y")
    if op == "SOFTMAX" and inputs:
        shape = inputs[0].shape
        if sum(1 for d in shape if d > 1) > 1:
            reasons.append(f"SOFTMAX input shape {list(shape)}: expected a 1-D input (one dimension > 1)")
        if math.prod(abs(d) for d in shape) > edgetpu_ops.SOFTMAX_MAX_ELEMENTS:
            reasons.append(f"SOFTMAX input has {math.prod(shape)} elements: expected at most 16000")
    if op == "CONCATENATION" and any(t.constant for t in inputs) and len(inputs) != 2:
        reasons.append("CONCATENATION with a constant input: expected exactly 2 inputs (zero padding)")
    return reasons


def _check_op(op: str, options, inputs, outputs) -> tuple[bool, list[str]]:
    if op == f"CUSTOM({edgetpu_ops.EDGETPU_CUSTOM_OP})":
        return True, []  # already compiled for the Edge TPU
    if op not in edgetpu_ops.SUPPORTED_OPS:
        return False, [f"{op} is not in the Edge TPU supported-operations table"]
    reasons = []
    for role, tensors in (("input", inputs), ("output", outputs)):
        for slot, t in enumerate(tensors):
            if t is not None:
                reasons += _tensor_reasons(op, slot, role, t)
    reasons += _option_reasons(op, options, tuple(t for t in inputs if t is not None))
    return not reasons, reasons


def analyze(path: str | Path) -> PreflightReport:
    """Pre-flight a .tflite model for the Edge TPU (subgraph 0, the one the compiler maps)."""
    path = Path(path)
    schema, model = load_model(path)
    sg = model.subgraphs[0]
    dtype_names = enum_names(schema.TensorType)
    ops: list[OpReport] = []
    cpu_from: int | None = None
    for i, operator in enumerate(seq(sg.operators)):
        name = op_name(schema, model, operator.opcodeIndex)
        ins = tuple(_tensor(model, sg, j, dtype_names) if j >= 0 else None for j in seq(operator.inputs))
        outs = tuple(_tensor(model, sg, j, dtype_names) for j in seq(operator.outputs))
        supported, reasons = _check_op(name, operator.builtinOptions, ins, outs)
        if not supported and cpu_from is None:
            cpu_from = i
        placement = "cpu" if cpu_from is not None else "edgetpu"
        if supported and placement == "cpu":
            reasons = reasons + [f"after op {cpu_from}, the first CPU op: the compiler maps one Edge TPU partition"]
        ops.append(OpReport(i, name, tuple(t for t in ins if t is not None), outs, supported, tuple(reasons),
                            placement, edgetpu_ops.SUPPORTED_OPS.get(name, "")))
    param_bytes = _param_bytes(model, sg)
    return PreflightReport(str(path), tuple(ops), cpu_from, param_bytes, EDGETPU_SRAM_BYTES, USABLE_SRAM_BYTES,
                           recommend_segments(param_bytes))


def _param_bytes(model, sg) -> int:
    """Bytes of constant tensors (non-empty buffer); a buffer shared by several tensors counts once."""
    buffers = {t.buffer for t in seq(sg.tensors) if _buffer_bytes(model, t.buffer) > 0}
    return sum(_buffer_bytes(model, b) for b in buffers)


def _fmt_tensors(tensors) -> str:
    return ", ".join(f"{t.dtype}{list(t.shape)}" + ("*" if t.constant else "") for t in tensors)


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.2f} MiB" if n >= 1024 * 1024 else f"{n / 1024:.1f} KiB ({n} bytes)"


def render_table(report: PreflightReport):
    """A readable rich Table: one row per op, with the verdict and the memory estimate as caption."""
    from rich.table import Table

    where = "all ops on the Edge TPU" if report.all_on_edgetpu else f"CPU from op {report.cpu_from_index}"
    table = Table(title=f"Edge TPU pre-flight: {Path(report.path).name} ({where})", show_lines=False)
    for col, kw in (("#", {"justify": "right"}), ("op", {}), ("inputs (* = constant)", {}), ("outputs", {}),
                    ("placement", {}), ("reasons", {})):
        table.add_column(col, **kw)
    for op in report.ops:
        style = "green" if op.placement == "edgetpu" else ("red" if not op.supported else "yellow")
        table.add_row(str(op.index), op.op, _fmt_tensors(op.inputs), _fmt_tensors(op.outputs),
                      f"[{style}]{op.placement}[/{style}]", "; ".join(op.reasons))
    fit = "fits" if report.fits_in_sram else "does not fit"
    table.caption = (f"parameters {_mib(report.param_bytes)} {fit} in ~{_mib(report.usable_sram_bytes)} usable of "
                     f"{_mib(report.sram_bytes)} SRAM (approximate); recommended segments: "
                     f"{report.recommended_segments}")
    return table
