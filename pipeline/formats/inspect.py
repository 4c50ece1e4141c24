"""Identify and structurally validate model files before any runtime kernel sees them.

`describe(path)` says what a file looks like from its magic bytes (for error messages);
`check_model_file(path, fmt)` verifies a .keras / .tflite / .onnx / OpenVINO IR file without
running it: a zero-byte, truncated or wrong-kind file is an `InputError` that names the file,
what was expected and what it looks like. Only the parsers are imported (the TFLite
flatbuffer schema, `onnx`), never an interpreter.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

from pipeline.core.errors import InputError, expected_received

FORMAT_OF_SUFFIX = {".keras": "keras", ".tflite": "tflite", ".onnx": "onnx", ".xml": "openvino-ir"}
EXPECTED = {
    "keras": "a .keras zip archive",
    "tflite": "a TFLite flatbuffer (identifier 'TFL3')",
    "onnx": "an ONNX protobuf model",
    "openvino-ir": "an OpenVINO IR .xml file with its .bin",
}
# byte size of the TFLite tensor types whose constant data size follows from the shape
_TFLITE_ITEMSIZE = {"FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1, "INT16": 2,
                    "COMPLEX64": 8, "INT8": 1, "FLOAT64": 8, "COMPLEX128": 16, "UINT64": 8, "UINT32": 4,
                    "UINT16": 2, "BFLOAT16": 2}
_IR_ITEMSIZE = {"f64": 8, "f32": 4, "f16": 2, "bf16": 2, "i64": 8, "i32": 4, "i16": 2, "i8": 1, "u64": 8,
                "u32": 4, "u16": 2, "u8": 1, "boolean": 1}
_MAGIC = ((b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"\x1f\x8b", "a gzip archive"),
          (b"%PDF", "a PDF document"), (b"\x7fELF", "an ELF executable"), (b"PK\x03\x04", "a zip archive"),
          (b"PK\x05\x06", "an empty zip archive"), (b"\x89HDF\r\n\x1a\n", "an HDF5 file"))
# tags of ModelProto fields that follow ir_version (field 1): producer_name .. opset_import, metadata
_ONNX_NEXT_TAGS = {0x12, 0x1A, 0x22, 0x2A, 0x32, 0x3A, 0x42, 0x52, 0x5A, 0x62, 0x72}


def sniff(path: Path) -> str:
    """The kind of a file from its first bytes: empty, zip, hdf5, tflite, onnx, openvino-xml, xml, text, ..."""
    path = Path(path)
    if not path.exists():
        return "missing"
    if path.is_dir():
        return "savedmodel" if (path / "saved_model.pb").is_file() else "directory"
    with path.open("rb") as f:
        head = f.read(4096)
    if not head:
        return "empty"
    if head[4:8] == b"TFL3":
        return "tflite"
    if head.startswith(b"PK"):
        return "zip"
    if head.startswith(b"\x89HDF"):
        return "hdf5"
    if len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 30 and head[2] in _ONNX_NEXT_TAGS:
        return "onnx"
    text = _as_text(head)
    if text is not None:
        stripped = text.lstrip("\ufeff \t\r\n")
        if stripped.startswith("<"):
            return "openvino-xml" if "<net" in text else "xml"
        return "text"
    return "unknown"


def describe(path: Path) -> str:
    """What a file looks like, for messages: 'an empty file (0 bytes)', 'a TFLite flatbuffer (1234 bytes)'..."""
    path = Path(path)
    kind = sniff(path)
    if kind == "missing":
        return "no such file or directory"
    if kind in ("directory", "savedmodel"):
        return "a SavedModel directory" if kind == "savedmodel" else "a directory"
    size = path.stat().st_size
    if kind == "empty":
        return "an empty file (0 bytes)"
    with path.open("rb") as f:
        head = f.read(16)
    named = {"tflite": "a TFLite flatbuffer", "onnx": "an ONNX protobuf", "openvino-xml": "an OpenVINO IR XML file",
             "xml": "an XML file", "text": "a text file"}
    if kind in named:
        return f"{named[kind]} ({size} bytes)"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return f"{name} ({size} bytes)"
    return f"{size} bytes of unknown content starting {head[:8]!r}"


def _as_text(head: bytes) -> str | None:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not just a multi-byte character cut at the end of the sample
            return None
        text = head[:err.start].decode("utf-8")
    printable = sum(ch.isprintable() or ch in "\t\r\n" for ch in text)
    return text if text and printable >= 0.95 * len(text) else None


def format_of(path: Path) -> str | None:
    return FORMAT_OF_SUFFIX.get(Path(path).suffix.lower())


def check_model_file(path: Path, fmt: str | None = None, what: str = "model") -> None:
    """Structural validation; `fmt` defaults to the format the file's extension names."""
    path = Path(path)
    fmt = fmt or format_of(path)
    label = f"{what} {str(path)!r}"
    if fmt not in EXPECTED:
        raise InputError(expected_received(label, f"one of {sorted(FORMAT_OF_SUFFIX)}", describe(path)))
    if not path.is_file():
        raise InputError(expected_received(label, EXPECTED[fmt], describe(path)))
    wanted = {"keras": "zip", "tflite": "tflite", "onnx": "onnx", "openvino-ir": "openvino-xml"}[fmt]
    kind = sniff(path)
    if kind != wanted and not (fmt == "onnx" and kind == "unknown"):  # the ONNX sniff is a heuristic
        raise InputError(expected_received(label, EXPECTED[fmt], describe(path)))
    {"keras": _check_keras, "tflite": _check_tflite, "onnx": _check_onnx, "openvino-ir": _check_ir}[fmt](path, label)


# ---- .keras -------------------------------------------------------------------------------
def _check_keras(path: Path, label: str) -> None:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            bad = z.testzip()  # reads every member: CRC errors and truncation show here
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise InputError(expected_received(label, "a complete .keras zip archive",
                                           f"a damaged zip archive ({err})")) from err
    if bad is not None:
        raise InputError(expected_received(label, "a .keras archive with intact members",
                                           f"a CRC error in {bad!r}"))
    if "config.json" not in names:
        raise InputError(expected_received(label, "a .keras archive with config.json",
                                           f"a zip archive with {sorted(names)[:5]}"))


# ---- .tflite ------------------------------------------------------------------------------
def tflite_schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - TensorFlow's copy of the same schema
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def read_tflite(path: Path, what: str = "model"):
    """Parse and verify a .tflite flatbuffer: (schema module, ModelT). Runs no kernel."""
    return _read_tflite(Path(path), f"{what} {str(path)!r}")


def _read_tflite(path: Path, label: str):
    if not path.is_file():
        raise InputError(expected_received(label, EXPECTED["tflite"], describe(path)))
    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise InputError(expected_received(label, EXPECTED["tflite"], describe(path)))
    schema = tflite_schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(buf, 0)
        problem = _tflite_problem(schema, model, len(buf))
    except Exception as exc:  # truncated/corrupt buffers fail in many ways inside flatbuffers
        problem = f"an unreadable flatbuffer ({type(exc).__name__}: {exc})"
    if problem:
        raise InputError(expected_received(label, "a complete, consistent TFLite flatbuffer",
                                           f"{problem} ({len(buf)} bytes)"))
    return schema, model


def _check_tflite(path: Path, label: str) -> None:
    _read_tflite(path, label)


def _seq(v) -> list:
    return [] if v is None else list(v)


def _tflite_problem(schema, model, file_size: int) -> str | None:
    """The first structural inconsistency, or None. Indices in range, buffers inside the file."""
    if model.version != 3:
        return f"schema version {model.version} (expected 3)"
    subgraphs, buffers, codes = _seq(model.subgraphs), _seq(model.buffers), _seq(model.operatorCodes)
    if not subgraphs:
        return "no subgraphs"
    for i, b in enumerate(buffers):
        if (b.offset or 0) > 1 and b.offset + (b.size or 0) > file_size:
            return f"buffer {i} at bytes {b.offset}..{b.offset + b.size} past the end of the file"
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    for s, sg in enumerate(subgraphs):
        tensors = _seq(sg.tensors)
        n = len(tensors)
        for role, idx in (("input", _seq(sg.inputs)), ("output", _seq(sg.outputs))):
            if not idx and s == 0:
                return f"subgraph {s} has no {role}s"
            if any(not 0 <= int(j) < n for j in idx):
                return f"subgraph {s} {role} index out of range {list(map(int, idx))} for {n} tensors"
        for t_i, t in enumerate(tensors):
            if not 0 <= t.buffer < max(1, len(buffers)):
                return f"tensor {t_i} refers to buffer {t.buffer} of {len(buffers)}"
            if any(int(d) < -1 for d in _seq(t.shape)):
                return f"tensor {t_i} has shape {list(map(int, _seq(t.shape)))}"
            data = buffers[t.buffer].data if t.buffer < len(buffers) else None
            itemsize = _TFLITE_ITEMSIZE.get(types.get(t.type, ""))
            if data is not None and len(data) and itemsize and t.sparsity is None and all(
                    int(d) >= 0 for d in _seq(t.shape)):
                want = math.prod(int(d) for d in _seq(t.shape)) * itemsize
                if len(data) != want:
                    return f"tensor {t_i} constant data has {len(data)} bytes for shape {list(_seq(t.shape))} " \
                           f"({want} expected)"
        for o_i, op in enumerate(_seq(sg.operators)):
            if not 0 <= op.opcodeIndex < len(codes):
                return f"subgraph {s} operator {o_i} has opcode index {op.opcodeIndex} of {len(codes)}"
            ios = _seq(op.inputs) + _seq(op.outputs)
            if any(not -1 <= int(j) < n for j in ios):
                return f"subgraph {s} operator {o_i} refers to tensor indices {list(map(int, ios))} of {n}"
    return None


# ---- .onnx --------------------------------------------------------------------------------
def _check_onnx(path: Path, label: str) -> None:
    import onnx

    try:  # a path (not a loaded proto): handles models > 2 GB and external data
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as err:  # ValidationError, InferenceError, DecodeError, OSError ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(expected_received(label, "an ONNX model that passes onnx.checker (full check)",
                                           f"{type(err).__name__}: {first[:300]} ({describe(path)})")) from None


# ---- OpenVINO IR --------------------------------------------------------------------------
def _check_ir(path: Path, label: str) -> None:
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise InputError(expected_received(label, "well-formed IR XML", f"a parse error: {err}")) from None
    layers = root.findall("./layers/layer")
    if root.tag != "net" or not layers:
        raise InputError(expected_received(label, "an IR <net> with <layers>",
                                           f"root <{root.tag}> with {len(layers)} layers"))
    ids = {layer.get("id") for layer in layers}
    for edge in root.findall("./edges/edge"):
        if edge.get("from-layer") not in ids or edge.get("to-layer") not in ids:
            raise InputError(expected_received(label, "edges between existing layers",
                                               f"an edge {edge.get('from-layer')} -> {edge.get('to-layer')}"))
    end = 0
    for layer in layers:
        data = layer.find("data")
        if layer.get("type") != "Const" or data is None or data.get("offset") is None:
            continue
        try:
            offset, size = int(data.get("offset")), int(data.get("size"))
        except (TypeError, ValueError):
            raise InputError(expected_received(label, "integer offset/size on Const layers",
                                               f"{dict(data.attrib)} on layer {layer.get('id')}")) from None
        itemsize = _IR_ITEMSIZE.get(data.get("element_type", ""))
        shape = data.get("shape")
        if itemsize and shape is not None:
            dims = [int(d) for d in shape.split(",") if d.strip()] if shape.strip() else []
            if size != math.prod(dims) * itemsize:
                raise InputError(expected_received(
                    label, f"Const layer {layer.get('id')} of {math.prod(dims) * itemsize} bytes "
                    f"({data.get('element_type')} {dims})", f"size={size}"))
        end = max(end, offset + size)
    bin_path = path.with_suffix(".bin")
    have = bin_path.stat().st_size if bin_path.is_file() else None
    if end and (have is None or have < end):
        raise InputError(expected_received(
            f"{label} weights {bin_path.name!r}", f"at least {end} bytes (the Const layers' extent)",
            "no such file" if have is None else f"{have} bytes (truncated)"))
