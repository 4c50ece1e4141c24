"""TFLite (.tflite): sniffing, the structural check of the flatbuffer, its reading helpers, and the host runner.

The check parses the flatbuffer with the TFLite schema (`ai_edge_litert.schema_py_generated`,
no interpreter) and verifies it before anything reads it: indices in range, buffers inside the
file, constant data the size its shape says. `read_tflite`, `op_name` and `seq` are the readers
the Edge TPU pre-flight and the minimum-runtime computation (`tflite_versions.py`) share.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgepipe.core import safeio
from edgepipe.core.errors import InputError, expected_received
from edgepipe.formats.inspect import describe
from edgepipe.formats.registry import get
from edgepipe.formats.runner_input import check_input
from edgepipe.formats.throughput import one_by_one, per_core

EXPECTED = get("tflite").expected
# byte size of the TFLite tensor types whose constant data size follows from the shape
_ITEMSIZE = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1, "INT16": 2,
             "COMPLEX64": 8, "INT8": 1, "FLOAT64": 8, "COMPLEX128": 16, "UINT64": 8, "UINT32": 4,
             "UINT16": 2, "BFLOAT16": 2}


def looks_like(head: bytes) -> bool:
    return head[4:8] == b"TFL3"


def check(path: Path, label: str) -> None:
    _read(Path(path), label)


# ---- reading the flatbuffer ----------------------------------------------------------------
def tflite_schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - TensorFlow's copy of the same schema
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def read_tflite(path: Path, what: str = "model"):
    """Parse and verify a .tflite flatbuffer: (schema module, ModelT). Runs no kernel."""
    return _read(Path(path), f"{what} {str(path)!r}")


def seq(v) -> list:
    """Object-API vectors are numpy arrays, lists or None."""
    return [] if v is None else list(v)


def text(v) -> str:
    """A flatbuffer string field (tensor, metadata or custom-op name) as text: the file is untrusted, so bytes that
    are not UTF-8 are replaced, not raised on."""
    return v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)


def enum_names(cls) -> dict[int, str]:
    """{value: name} of a schema enum (BuiltinOperator, TensorType)."""
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def op_name(schema, model, opcode_index: int) -> str:
    code = model.operatorCodes[opcode_index]
    # builtin_code holds codes >= 127; older files only set deprecated_builtin_code (int8, <= 127).
    builtin = max(code.builtinCode or 0, code.deprecatedBuiltinCode or 0)
    name = enum_names(schema.BuiltinOperator).get(builtin, f"BUILTIN_{builtin}")
    if name == "CUSTOM":
        return f"CUSTOM({text(code.customCode)})"
    return name


def _read(path: Path, label: str):
    if safeio.stat_problem(path) is not None:
        raise InputError(expected_received(label, EXPECTED, describe(path)))
    buf = safeio.read_bytes(path, "model", safeio.MAX_MODEL, label)
    if len(buf) < 8 or not looks_like(buf):
        raise InputError(expected_received(label, EXPECTED, describe(path)))
    schema = tflite_schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(buf, 0)
        problem = _problem(schema, model, len(buf))
    except Exception as exc:  # truncated/corrupt buffers fail in many ways inside flatbuffers
        problem = f"an unreadable flatbuffer ({type(exc).__name__}: {exc})"
    if problem:
        raise InputError(expected_received(label, "a complete, consistent TFLite flatbuffer",
                                           f"{problem} ({len(buf)} bytes)"))
    return schema, model


def _problem(schema, model, file_size: int) -> str | None:
    """The first structural inconsistency, or None. Indices in range, buffers inside the file."""
    if model.version != 3:
        return f"schema version {model.version} (expected 3)"
    subgraphs, buffers, codes = seq(model.subgraphs), seq(model.buffers), seq(model.operatorCodes)
    if not subgraphs:
        return "no subgraphs"
    for i, b in enumerate(buffers):
        if (b.offset or 0) > 1 and b.offset + (b.size or 0) > file_size:
            return f"buffer {i} at bytes {b.offset}..{b.offset + b.size} past the end of the file"
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    for s, sg in enumerate(subgraphs):
        tensors = seq(sg.tensors)
        n = len(tensors)
        for role, idx in (("input", seq(sg.inputs)), ("output", seq(sg.outputs))):
            if not idx and s == 0:
                return f"subgraph {s} has no {role}s"
            if any(not 0 <= int(j) < n for j in idx):
                return f"subgraph {s} {role} index out of range {list(map(int, idx))} for {n} tensors"
        for t_i, t in enumerate(tensors):
            if not 0 <= t.buffer < max(1, len(buffers)):
                return f"tensor {t_i} refers to buffer {t.buffer} of {len(buffers)}"
            if any(int(d) < -1 for d in seq(t.shape)):
                return f"tensor {t_i} has shape {list(map(int, seq(t.shape)))}"
            data = buffers[t.buffer].data if t.buffer < len(buffers) else None
            itemsize = _ITEMSIZE.get(types.get(t.type, ""))
            if data is not None and len(data) and itemsize and t.sparsity is None and all(
                    int(d) >= 0 for d in seq(t.shape)):
                want = math.prod(int(d) for d in seq(t.shape)) * itemsize
                if len(data) != want:
                    return f"tensor {t_i} constant data has {len(data)} bytes for shape {list(seq(t.shape))} " \
                           f"({want} expected)"
        for o_i, op in enumerate(seq(sg.operators)):
            if not 0 <= op.opcodeIndex < len(codes):
                return f"subgraph {s} operator {o_i} has opcode index {op.opcodeIndex} of {len(codes)}"
            ios = seq(op.inputs) + seq(op.outputs)
            if any(not -1 <= int(j) < n for j in ios):
                return f"subgraph {s} operator {o_i} refers to tensor indices {list(map(int, ios))} of {n}"
    return None


def input_tensor(path: Path) -> dict:
    """The first input tensor as stored in the flatbuffer (no interpreter): name, shape, type and, for an
    integer input, its quantization (real = scale * (q - zero_point))."""
    schema, model = read_tflite(Path(path), what="TFLite model")
    sg = model.subgraphs[0]
    t = sg.tensors[int(seq(sg.inputs)[0])]
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    q = t.quantization
    scale, zero = (seq(q.scale), seq(q.zeroPoint)) if q is not None else ([], [])
    out = {"name": text(t.name), "shape": [int(d) for d in seq(t.shape)],
           "dtype": types.get(t.type, str(t.type)).lower()}
    if scale:
        out.update(scale=float(scale[0]), zero_point=int(zero[0]) if zero else 0)
    return out


# ---- the host runner -----------------------------------------------------------------------
def tflite_interpreter_class():
    """LiteRT first; tflite-runtime on boards that only have it; TensorFlow's as a last resort."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, "tensorflow"


def model_source(path: str | Path) -> dict:
    """LiteRT's model argument: `model_path`, or the file's bytes when the path is not valid UTF-8 (LiteRT takes the
    path as a UTF-8 string only: a path with a Latin-1 byte was a TypeError, the artifact "not loadable")."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return {"model_content": Path(path).read_bytes()}
    return {"model_path": str(path)}


class TFLiteRunner:
    """`xnnpack=False` uses the builtin kernels without the default XNNPACK delegate; `delegates`
    are loaded delegates (e.g. libedgetpu's), applied before the default ones. `preserve_all_tensors`
    (diagnostics only) keeps every intermediate tensor readable, which also means the builtin kernels.
    `predict_many` (accuracy passes) runs one single-threaded interpreter per thread, side by side."""

    def __init__(self, path: Path, threads: int, xnnpack: bool = True, delegates: list | None = None,
                 preserve_all_tensors: bool = False):
        cls, self.runtime = tflite_interpreter_class()
        kw = {}
        if delegates:
            kw["experimental_delegates"] = delegates
        if preserve_all_tensors:
            kw["experimental_preserve_all_tensors"] = True
            xnnpack = False
        if not xnnpack:
            from importlib import import_module

            resolver = import_module(cls.__module__).OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            kw["experimental_op_resolver_type"] = resolver
        self.interp = cls(**model_source(path), num_threads=threads, **kw)
        self.path = Path(path)
        self.info = {"threads": threads, "xnnpack": xnnpack}
        self.one_device = bool(delegates) or preserve_all_tensors  # an accelerator, or a diagnostic interpreter
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.shape = tuple(int(v) for v in self.inp["shape"])

    @classmethod
    def from_file(cls, path: str | Path, threads: int, layout: str = "auto", **options) -> TFLiteRunner:
        """A foreign .tflite (standalone validate/bench): TFLite models are NHWC, `layout` changes nothing."""
        return cls(Path(path), threads)

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        # one quantization for host and boards; device_runner is a stdlib + numpy leaf module
        from edgepipe.boards.device_runner import quantize_input

        return quantize_input(np, x, self.inp["dtype"], self.inp["quantization"])

    def predict(self, image: np.ndarray) -> np.ndarray:
        x = check_input(image, self.shape, "TFLite")
        self.interp.set_tensor(self.inp["index"], self._quantize(x))
        self.interp.invoke()
        y = self.interp.get_tensor(self.out["index"])[0]
        if self.out["dtype"] != np.float32:
            scale, zp = self.out["quantization"]
            y = (y.astype(np.float32) - zp) * scale
        return y.astype(np.float32)

    def predict_many(self, images: np.ndarray, progress=None) -> np.ndarray:
        """Scores of many images, the same as `predict` on each: one interpreter with 1 thread per thread
        this runner was given, side by side (XNNPACK's results do not depend on its thread count:
        `tests/test_throughput.py`). With delegates (one accelerator) or preserved tensors, image by image."""
        threads = self.info["threads"]
        if self.one_device or threads <= 1:
            return one_by_one(self, images, progress)
        return per_core(lambda: TFLiteRunner(self.path, 1, xnnpack=self.info["xnnpack"]), threads, images, progress)


def detect_precision(path: Path, runner=None) -> str:
    """int8 when the graph holds quantized int8/uint8 tensors (read from an opened runner); else fp32."""
    if runner is None:
        return "fp32"
    quantized = any(d["dtype"] in (np.int8, np.uint8) and d["quantization"][0] != 0.0
                    for d in runner.interp.get_tensor_details())
    return "int8" if quantized else "fp32"
