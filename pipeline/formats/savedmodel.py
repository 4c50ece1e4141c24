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

from pipeline.core.errors import InputError, expected_received
from pipeline.formats.runner_input import check_input

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
    """The FP32 reference when the user's model is a SavedModel (its serving signature)."""

    def __init__(self, loaded_and_fn):
        self.runtime = "tensorflow"
        self._loaded, self.fn = loaded_and_fn  # keep the loaded object alive
        self.input_name, spec = next(iter(self.fn.structured_input_signature[1].items()))
        self.shape = (1, *(int(d) for d in spec.shape[1:]))

    def predict(self, image: np.ndarray) -> np.ndarray:
        out = self.fn(**{self.input_name: check_input(image, self.shape, "SavedModel")})
        return np.asarray(next(iter(out.values())))[0].astype(np.float32)
