"""TensorFlow SavedModel (a directory): sniffing, a structural check without TensorFlow, and the reference runner.

The check walks `saved_model.pb` as protobuf wire format (no TensorFlow import): every field
inside the file and at least one MetaGraphDef, so a zero-byte, truncated or foreign file is
refused; and when `variables/variables.index` is there, every data shard it comes with
(`variables.data-0000i-of-0000n`). Loading the signature is `pipeline/stages/savedmodel.py`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgepipe.core.errors import InputError, expected_received
from edgepipe.formats.runner_input import check_input
from edgepipe.formats.throughput import one_by_one

GRAPH = "saved_model.pb"
META_GRAPHS_FIELD = 2  # SavedModel.meta_graphs (field 1 is saved_model_schema_version)
_SHARD = re.compile(r"^variables\.data-(\d{5})-of-(\d{5})$")


def looks_like_dir(path: Path) -> bool:
    return (Path(path) / GRAPH).is_file()


def check(path: Path, label: str) -> None:
    graph = Path(path) / GRAPH
    buf = graph.read_bytes()
    problem = "an empty file" if not buf else wire_problem(buf, META_GRAPHS_FIELD, "MetaGraphDef")
    if problem:
        raise InputError(expected_received(f"{label} {GRAPH}", "a complete SavedModel protobuf",
                                           f"{problem} ({len(buf)} bytes)"))
    variables = Path(path) / "variables"
    if not variables.is_dir():
        return
    shards = [m for m in map(_SHARD.match, (p.name for p in variables.iterdir())) if m]
    if not (variables / "variables.index").is_file():
        if shards:
            raise InputError(expected_received(f"{label} variables", "variables.index beside its data shards",
                                               "no variables.index"))
        return
    total = {int(m[2]) for m in shards}
    have = {int(m[1]) for m in shards}
    if len(total) != 1 or have != set(range(next(iter(total)))):
        raise InputError(expected_received(f"{label} variables", "every data shard of variables.index",
                                           sorted(m[0] for m in shards) or "none"))


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError(f"a varint cut off at byte {i}")
        b = buf[i]
        value |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not b & 0x80:
            return value, i


def wire_problem(buf: bytes, required_field: int, what: str) -> str | None:
    """The first problem of `buf` read as one protobuf message's top-level fields, or None."""
    i, seen = 0, set()
    try:
        while i < len(buf):
            start = i
            key, i = _varint(buf, i)
            field, wire = key >> 3, key & 7
            if field == 0 or wire in (3, 4, 6, 7):
                return f"no protobuf field at byte {start} (key {key})"
            if wire == 0:
                _, i = _varint(buf, i)
            elif wire == 2:
                length, i = _varint(buf, i)
                i += length
            else:
                i += 8 if wire == 1 else 4
            if i > len(buf):
                return f"field {field} at byte {start} running {i - len(buf)} bytes past the end (truncated)"
            seen.add(field)
    except ValueError as err:
        return str(err)
    return None if required_field in seen else f"no {what} (field {required_field})"


class SavedModelRunner:
    """The FP32 reference when the user's model is a SavedModel (its serving signature). `predict_many`
    (accuracy passes) calls the signature on batches when its batch dimension is free, as Keras does."""

    BATCH = 16

    def __init__(self, loaded_and_fn):
        self.runtime = "tensorflow"
        self._loaded, self.fn = loaded_and_fn  # keep the loaded object alive
        self.input_name, spec = next(iter(self.fn.structured_input_signature[1].items()))
        self.shape = (1, *(int(d) for d in spec.shape[1:]))
        self.batched = spec.shape.rank is not None and spec.shape[0] is None

    def predict(self, image: np.ndarray) -> np.ndarray:
        out = self.fn(**{self.input_name: check_input(image, self.shape, "SavedModel")})
        return np.asarray(next(iter(out.values())))[0].astype(np.float32)

    def predict_many(self, images: np.ndarray, progress=None) -> np.ndarray:
        """Scores of many images: batches of 16 through the signature (per image the same scores as
        `predict` to float rounding, <= 1e-6: `tests/test_throughput.py`), or one by one when the
        signature's batch is fixed."""
        if not self.batched or len(images) == 0:
            return one_by_one(self, images, progress)
        check_input(images[0], self.shape, "SavedModel")
        out = []
        for i in range(0, len(images), self.BATCH):
            chunk = images[i : i + self.BATCH]
            out.append(np.asarray(next(iter(self.fn(**{self.input_name: chunk}).values())), dtype=np.float32))
            if progress:
                progress(len(chunk))
        return np.concatenate(out)

def _fields(buf: bytes):
    """(field number, wire type, value) of one protobuf message's top-level fields; a length-delimited
    field's value is its bytes, a varint's its int."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            length, i = _varint(buf, i)
            value, i = buf[i:i + length], i + length
        elif wire in (1, 5):
            value, i = buf[i:i + (8 if wire == 1 else 4)], i + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield field, wire, value


def _map(buf: bytes, field: int) -> dict[str, bytes]:
    """A protobuf map<string, message> field of `buf` (entries: key = 1, value = 2)."""
    out = {}
    for f, wire, entry in _fields(buf):
        if f == field and wire == 2:
            kv = {k: v for k, _, v in _fields(entry)}
            out[kv.get(1, b"").decode("utf-8", "replace")] = kv.get(2, b"")
    return out


def _shape(tensor_info: bytes) -> tuple[int, ...] | None:
    """TensorInfo.tensor_shape (field 3) -> dims (-1 unknown); None for an unknown rank."""
    for f, wire, shape in _fields(tensor_info):
        if f == 3 and wire == 2:
            dims = []
            for g, gw, dim in _fields(shape):
                if g == 3 and gw == 0 and dim:  # unknown_rank
                    return None
                if g == 2 and gw == 2:
                    size = next((v for h, hw, v in _fields(dim) if h == 1 and hw == 0), 0)
                    dims.append(size - (1 << 64) if size >= 1 << 63 else size)
            return tuple(dims)
    return None


def io_shapes(path: Path, signature: str = "serving_default") -> tuple[tuple | None, int | None]:
    """The serving signature's input shape (H, W, C) and class count, read from saved_model.pb as protobuf
    wire format (no TensorFlow import); (None, None) for what the signature does not say."""
    try:
        buf = (Path(path) / GRAPH).read_bytes()
        meta = next(v for f, w, v in _fields(buf) if f == META_GRAPHS_FIELD and w == 2)
        signatures = _map(meta, 5)  # MetaGraphDef.signature_def
        sig = signatures.get(signature) or next(iter(signatures.values()))
        inputs, outputs = _map(sig, 1), _map(sig, 2)
    except (OSError, StopIteration, ValueError):
        return None, None
    shape = _shape(next(iter(inputs.values()))) if len(inputs) == 1 else None
    out = _shape(next(iter(outputs.values()))) if len(outputs) == 1 else None
    hwc = tuple(d if d > 0 else None for d in shape[1:]) if shape and len(shape) == 4 else None
    return hwc, (out[-1] if out and len(out) == 2 and out[-1] > 0 else None)
