"""The minimum TFLite runtime version a .tflite file needs, from its operator versions.

A TFLite model stores a version per operator code; a runtime older than the version that
introduced it refuses the model ("Didn't find op for builtin opcode 'X' version 'N'"). The table
below is the subset of TFLite's own map, `FindMinimumRuntimeVersionForOp` in
tensorflow/compiler/mlir/lite/tools/versioning/runtime_version.cc (TensorFlow 2.21 era), for the
ops edgepipe's image classifiers and the Edge TPU table use. Versions are TensorFlow release
numbers, which `tflite-runtime` wheels follow. The converter also writes its own computation into
the `min_runtime_version` metadata; both are reported, and the larger one is the requirement.

An op (or op version) missing from this subset is listed under `unknown`, never ignored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from edgepipe.formats.tflite import op_name, read_tflite, seq, text

# (op, version) -> minimum runtime version, from runtime_version.cc.
MIN_RUNTIME: dict[tuple[str, int], str] = {
    **{("ADD", v): r for v, r in {1: "1.5.0", 2: "1.14.0", 3: "2.4.0", 4: "2.6.0", 5: "2.13.0"}.items()},
    **{("AVERAGE_POOL_2D", v): r for v, r in {1: "1.5.0", 2: "1.14.0", 3: "2.3.0"}.items()},
    **{("CONCATENATION", v): r for v, r in {1: "1.5.0", 2: "1.14.0", 3: "2.3.0", 4: "2.14.0", 5: "2.21.0"}.items()},
    **{("CONV_2D", v): r for v, r in {1: "1.5.0", 2: "1.14.0", 3: "1.14.0", 4: "2.3.0", 5: "2.4.0", 6: "2.9.0",
                                      7: "2.11.0", 8: "2.15.0"}.items()},
    **{("CUMSUM", 1): "2.4.0"},
    **{("DEPTHWISE_CONV_2D", v): r for v, r in {1: "1.5.0", 2: "1.12.0", 3: "1.14.0", 4: "2.2.0", 5: "2.3.0",
                                                6: "2.3.0", 7: "2.11.0"}.items()},
    **{("DEQUANTIZE", v): r for v, r in {1: "1.13.1", 2: "1.14.0", 3: "1.15.0", 4: "2.2.0", 5: "2.7.0",
                                         6: "2.18.0", 7: "2.21.0"}.items()},
    **{("EXPAND_DIMS", 1): "1.10.0"},
    **{("FULLY_CONNECTED", v): r for v, r in {1: "1.5.0", 2: "1.10.0", 3: "1.14.0", 4: "1.14.0", 5: "2.0.0",
                                              6: "2.1.0", 7: "2.3.0", 8: "2.3.0", 9: "2.3.0", 10: "2.11.0",
                                              11: "2.15.0", 12: "2.17.0", 13: "2.18.0", 14: "2.21.0"}.items()},
    **{("L2_NORMALIZATION", v): r for v, r in {1: "1.5.0", 2: "1.14.0"}.items()},
    **{("LOGISTIC", v): r for v, r in {1: "1.14.0", 2: "1.14.0", 3: "2.3.0"}.items()},
    **{("MAX_POOL_2D", v): r for v, r in {1: "1.5.0", 2: "1.14.0", 3: "2.3.0"}.items()},
    **{("MAXIMUM", v): r for v, r in {1: "1.14.0", 2: "1.14.0", 3: "2.3.0", 4: "2.3.0"}.items()},
    **{("MEAN", v): r for v, r in {1: "1.6.0", 2: "1.14.0", 3: "2.4.0"}.items()},
    **{("MINIMUM", v): r for v, r in {1: "1.14.0", 2: "1.14.0", 3: "2.3.0", 4: "2.3.0"}.items()},
    **{("MUL", v): r for v, r in {1: "1.5.0", 2: "1.14.0", 3: "1.15.0", 4: "2.3.0", 5: "2.6.0", 6: "2.11.0",
                                  7: "2.13.0"}.items()},
    **{("PAD", v): r for v, r in {1: "1.5.0", 2: "1.14.0", 3: "2.4.0", 4: "2.6.0", 5: "2.20.0"}.items()},
    **{("QUANTIZE", v): r for v, r in {1: "1.14.0", 2: "1.15.0", 3: "2.7.0", 4: "2.21.0", 5: "2.21.0",
                                       6: "2.21.0"}.items()},
    **{("RELU", v): r for v, r in {1: "1.5.0", 2: "2.1.0", 3: "2.5.0"}.items()},
    **{("RELU6", v): r for v, r in {1: "1.5.0", 2: "1.14.0", 3: "2.5.0"}.items()},
    **{("RESHAPE", 1): "1.5.0"},
    **{("RESIZE_BILINEAR", v): r for v, r in {1: "1.7.0", 2: "1.14.0", 3: "2.2.0", 4: "2.5.0"}.items()},
    **{("SOFTMAX", v): r for v, r in {1: "1.5.0", 2: "1.14.0", 3: "2.3.0"}.items()},
    **{("SQUEEZE", v): r for v, r in {1: "1.6.0", 2: "2.5.0"}.items()},
    **{("STRIDED_SLICE", v): r for v, r in {1: "1.6.0", 2: "1.14.0", 3: "2.1.0", 4: "2.2.0", 5: "2.5.0",
                                            6: "2.6.0", 7: "2.14.0", 8: "2.14.0"}.items()},
    **{("SUB", v): r for v, r in {1: "1.6.0", 2: "1.14.0", 3: "2.3.0", 4: "2.4.0", 5: "2.4.0"}.items()},
    **{("TANH", v): r for v, r in {1: "1.14.0", 2: "1.14.0", 3: "2.3.0"}.items()},
    **{("TRANSPOSE", v): r for v, r in {1: "1.6.0", 2: "1.14.0", 3: "1.15.0", 4: "2.3.0", 5: "2.4.0",
                                        6: "2.12.0", 7: "2.14.4"}.items()},
}


def version_key(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".") if p.isdigit())


@dataclass(frozen=True)
class RuntimeRequirement:
    ops: tuple[dict, ...]  # {"op", "version", "min_runtime"} per operator code
    computed: str | None  # max over the ops edgepipe's table knows
    metadata: str | None  # the converter's own `min_runtime_version` metadata, if present
    required: str | None  # the larger of the two
    unknown: tuple[str, ...]  # "OP vN" not in the table (requirement may be higher)

    def to_json(self) -> dict:
        d = asdict(self)
        return {**d, "ops": list(d["ops"]), "unknown": list(d["unknown"])}


def min_runtime_version(path: str | Path) -> RuntimeRequirement:
    """Read the flatbuffer (the structural reader of `tflite.py`; no interpreter) and compute the requirement."""
    schema, model = read_tflite(Path(path), what="TFLite model")
    ops, unknown = [], []
    for i, code in enumerate(seq(model.operatorCodes)):
        name, version = op_name(schema, model, i), int(code.version or 1)
        need = MIN_RUNTIME.get((name, version))
        ops.append({"op": name, "version": version, "min_runtime": need})
        if need is None:
            unknown.append(f"{name} v{version}")
    known = [o["min_runtime"] for o in ops if o["min_runtime"]]
    computed = max(known, key=version_key) if known else None
    meta = _metadata_version(model)
    candidates = [v for v in (computed, meta) if v]
    required = max(candidates, key=version_key) if candidates else None
    return RuntimeRequirement(tuple(ops), computed, meta, required, tuple(unknown))


def _metadata_version(model) -> str | None:
    for md in model.metadata or []:
        name = text(md.name)
        if name == "min_runtime_version":
            data = model.buffers[md.buffer].data
            if data is None:
                return None
            version = bytes(bytearray(data)).split(b"\0", 1)[0].decode("ascii", "replace").strip()
            return version or None
    return None
