"""ONNX (.onnx): sniffing, the structural check (`onnx.checker`, full check), and the host runner (ONNX Runtime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepipe.core.errors import InputError, expected_received
from edgepipe.core.versions import cpu_flags, pairs_saturate
from edgepipe.formats.inspect import describe
from edgepipe.formats.runner_input import check_input, input_layout
from edgepipe.formats.throughput import one_by_one, per_core

# tags of ModelProto fields that follow ir_version (field 1): producer_name .. opset_import, metadata
_NEXT_TAGS = {0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A, 0x42, 0x52, 0x5A, 0x62, 0x72}
QUANTIZED_OPS = frozenset({"QuantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger"})
# ONNX Runtime's session entry for exact u8 x s8 products on x86 (kOrtSessionOptionsAvx2PrecisionMode)
X64_QUANT_PRECISION = "session.x64quantprecision"


def looks_like(head: bytes) -> bool:
    """A heuristic (a protobuf has no magic): ir_version (field 1, a small varint) then another ModelProto field."""
    return len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 30 and head[2] in _NEXT_TAGS


def check(path: Path, label: str) -> None:
    import onnx

    try:  # a path (not a loaded proto): handles models > 2 GB and external data
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as err:  # ValidationError, InferenceError, DecodeError, OSError ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(expected_received(label, "an ONNX model that passes onnx.checker (full check)",
                                           f"{type(err).__name__}: {first[:300]} ({describe(path)})")) from None


def input_tensor(path: Path) -> dict:
    """The first graph input (name, shape, element type), the model's opset and, in a QDQ model, the
    scale and zero point of the QuantizeLinear that reads that input."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path), load_external_data=False)
    g = model.graph
    inits = {i.name for i in g.initializer}
    inp = next(i for i in g.input if i.name not in inits)
    tt = inp.type.tensor_type
    out = {"name": inp.name, "shape": [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim],
           "dtype": onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name,
           "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None)}
    quant = next((n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] == inp.name), None)
    values = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    if quant is not None and quant.input[1] in values:
        out["scale"] = float(values[quant.input[1]].reshape(-1)[0])
        if len(quant.input) > 2 and quant.input[2] in values:
            out["zero_point"] = int(values[quant.input[2]].reshape(-1)[0])
    return out


def detect_precision(path: Path, runner=None) -> str:
    """int8 when the graph holds quantize or integer ops; else fp32."""
    import onnx

    ops = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
    return "int8" if ops & QUANTIZED_OPS else "fp32"


def exact_int8_config(flags: set[str] | None = None) -> dict[str, str]:
    """The session config entries that keep ONNX Runtime's int8 products exact on this CPU (`flags`: its ISA
    flags, default /proc/cpuinfo's: on a system without it none are known and nothing is set).

    On x86 without VNNI or AMX, MLAS's u8 x s8 kernels sum pairs of products in int16 and saturate on 8-bit
    weights (int8 activations run as uint8 there too); `session.x64quantprecision` makes ONNX Runtime turn the
    int8 weights into uint8 ones for its U8U8 kernels: the scores of exact arithmetic, at the speed of a u8u8
    model. Not set on VNNI / AMX CPUs: ONNX Runtime would convert there too (its own test is any AVX2 CPU), and
    the elpv example's u8s8 model then ran 2.3x slower with bit-identical scores."""
    flags = cpu_flags()[0] if flags is None else flags
    return {X64_QUANT_PRECISION: "1"} if pairs_saturate(flags) else {}


def exact_int8_key() -> dict:
    """`exact_int8_config()` as a part of a stage key: {"session_config": ...} where it is set; nothing on CPUs
    that need none, so their keys stay as they were before the option existed."""
    config = exact_int8_config()
    return {"session_config": config} if config else {}


def session_options(threads: int, config: dict[str, str]):
    """The SessionOptions edgepipe runs a model with: `threads` intra-op threads, one inter-op thread, every graph
    optimization, and the session config entries `config` (e.g. `exact_int8_config()`)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    for key, value in config.items():
        opts.add_session_config_entry(key, value)
    return opts


class ONNXRunner:
    """ONNX Runtime, CPU execution provider. A symbolic batch means 1; NCHW only by an
    explicit `layout` as for OpenVINORunner. `predict_many` (accuracy passes) runs one session with
    one intra-op thread per thread, side by side. `config`: session config entries (default
    `exact_int8_config()`, recorded in `info`)."""

    def __init__(self, path: Path, threads: int, layout: str = "nhwc", config: dict[str, str] | None = None):
        import onnxruntime as ort

        self.runtime = "onnxruntime"
        self.config = exact_int8_config() if config is None else dict(config)
        self.session = ort.InferenceSession(str(path), session_options(threads, self.config),
                                            providers=["CPUExecutionProvider"])
        self.info = {"session_config": dict(self.config)}
        self.path, self.threads = Path(path), threads
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in inp.shape)
        if len(self.shape) != 4:
            raise InputError(f"ONNX input {inp.name!r}: expected a 4-D image tensor. Received shape: {inp.shape}")
        self.layout = input_layout(self.shape) if layout == "auto" else layout
        self.dtype = np.float16 if inp.type == "tensor(float16)" else np.float32

    @classmethod
    def from_file(cls, path: str | Path, threads: int, layout: str = "auto", **options) -> ONNXRunner:
        """A foreign .onnx (standalone validate/bench)."""
        return cls(Path(path), threads, layout)

    def predict(self, image: np.ndarray) -> np.ndarray:
        x = check_input(image, self.shape, "ONNX", self.layout).astype(self.dtype)
        return np.asarray(self.session.run(None, {self.input_name: x})[0], dtype=np.float32).reshape(-1)

    def predict_many(self, images: np.ndarray, progress=None) -> np.ndarray:
        """Scores of many images, the same as `predict` on each: one single-threaded session per thread
        this runner was given, side by side (`tests/test_throughput.py`)."""
        if self.threads <= 1:
            return one_by_one(self, images, progress)
        return per_core(lambda: ONNXRunner(self.path, 1, self.layout, self.config), self.threads, images, progress)
