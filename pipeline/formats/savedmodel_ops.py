"""Untrusted SavedModels cannot run side effects: every op in the graph, checked before TensorFlow sees it.

Loading a SavedModel runs its graphs (resource initializers on load, the serving function on
every prediction), and a graph can hold ops that write or read files, run Python (`PyFunc`,
`EagerPyFunc`), print, or talk to the outside. Without `--trust-model` (config `model.trust`)
`check_savedmodel` reads `saved_model.pb` with a small protobuf wire-format reader (no TensorFlow
import, bounded: the file is capped and the message nesting is fixed) and collects the ops of the
top-level graph and of every function in its function library. It refuses the model, naming the
ops, when any op is outside `PURE_OPS` (tensor math, shapes, control flow that calls other
checked functions, and the model's own variables).

The one exception is checkpoint I/O (`SAVER_OPS`: SaveV2, RestoreV2, ...), which every exported
SavedModel holds in its saver functions: it is allowed only in functions reachable solely from
the two top-level nodes the `saver_def` names, and never reachable from a signature, from an
object-graph function (what `tf.saved_model.load` may call) or from any other node or function.
A text `saved_model.pbtxt` cannot be checked this way and is refused without trust.

Other formats that can carry code: a `.keras` file is loaded with Keras' `safe_mode` (Lambda
layers and custom objects refused), a legacy `.h5` is refused without trust. A `.tflite`, `.onnx`
or OpenVINO IR runs only the runtime's built-in kernels (edgepipe registers no custom-op
library), and a foreign one is first run in a limited child process (`edgepipe.engine.probe`).
"""

from __future__ import annotations

from pathlib import Path

from edgepipe.core import safeio
from edgepipe.core.errors import InputError, expected_received

MAX_PB = 2 * safeio.GiB  # protobuf's own limit for one message

CALL_OPS = {"StatefulPartitionedCall", "PartitionedCall", "If", "StatelessIf", "While", "StatelessWhile", "Case",
            "StatelessCase"}
VARIABLE_OPS = {"VarHandleOp", "ReadVariableOp", "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp",
                "VarIsInitializedOp", "DestroyResourceOp", "DisableCopyOnRead"}
PURE_OPS = CALL_OPS | VARIABLE_OPS | {
    # graph plumbing
    "Placeholder", "PlaceholderWithDefault", "Const", "Identity", "IdentityN", "NoOp", "StopGradient",
    "PreventGradient", "Snapshot", "EnsureShape", "CheckNumerics", "Assert",
    # element-wise math
    "Add", "AddV2", "AddN", "Sub", "Mul", "MulNoNan", "Div", "DivNoNan", "RealDiv", "FloorDiv", "FloorMod", "Mod",
    "Maximum", "Minimum", "Pow", "SquaredDifference", "Neg", "Abs", "Sign", "Square", "Sqrt", "Rsqrt", "Reciprocal",
    "Inv", "Exp", "Expm1", "Log", "Log1p", "Sin", "Cos", "Tan", "Atan", "Atan2", "Erf", "Erfc", "Floor", "Ceil",
    "Round", "Rint", "ClipByValue", "Cast", "Bitcast", "IsNan", "IsInf", "IsFinite", "Select", "SelectV2",
    "Equal", "NotEqual", "Less", "LessEqual", "Greater", "GreaterEqual", "LogicalAnd", "LogicalOr", "LogicalNot",
    # activations
    "Relu", "Relu6", "Elu", "Selu", "LeakyRelu", "Sigmoid", "Tanh", "Softplus", "Softsign", "Softmax",
    "LogSoftmax", "Gelu",
    # reductions, matrix math
    "Sum", "Mean", "Max", "Min", "Prod", "All", "Any", "ArgMax", "ArgMin", "Cumsum", "Cumprod", "MatMul",
    "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum", "TopKV2", "L2Loss",
    # convolutions, pooling, normalisation, resizing
    "Conv2D", "Conv3D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "Conv3DBackpropInputV2", "BiasAdd",
    "MaxPool", "MaxPoolV2", "MaxPool3D", "AvgPool", "AvgPool3D", "FusedBatchNorm", "FusedBatchNormV2",
    "FusedBatchNormV3", "LRN", "ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic", "ResizeArea",
    "ScaleAndTranslate", "DepthToSpace", "SpaceToDepth", "SpaceToBatchND", "BatchToSpaceND",
    # shapes and indexing
    "Reshape", "Squeeze", "ExpandDims", "Transpose", "ConcatV2", "Concat", "Pack", "Unpack", "Split", "SplitV",
    "Slice", "StridedSlice", "Gather", "GatherV2", "GatherNd", "Tile", "Pad", "PadV2", "MirrorPad", "Fill",
    "ZerosLike", "OnesLike", "Shape", "ShapeN", "Size", "Rank", "Range", "BroadcastTo", "BroadcastArgs",
    "BroadcastGradientArgs", "OneHot", "Reverse", "ReverseV2", "Where", "MatrixBandPart", "Cross",
}
SAVER_OPS = {"SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename", "StringJoin", "StaticRegexFullMatch"}


# ---- protobuf wire format -----------------------------------------------------------------------
class _Malformed(ValueError):
    pass


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise _Malformed("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def fields(buf):
    """(field number, value) of one message: an int (varint / fixed) or a memoryview (length-delimited)."""
    buf = memoryview(buf)
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            if i + size > n:
                raise _Malformed("a field runs past the end of its message")
            value, i = buf[i:i + size], i + size
        elif wire in (1, 5):
            step = 8 if wire == 1 else 4
            if i + step > n:
                raise _Malformed("truncated fixed-width field")
            value, i = int.from_bytes(buf[i:i + step], "little"), i + step
        else:
            raise _Malformed(f"unsupported wire type {wire}")
        yield num, value


def _sub(buf, num: int) -> list[memoryview]:
    return [v for f, v in fields(buf) if f == num and isinstance(v, memoryview)]


def _str(v: memoryview) -> str:
    return bytes(v).decode("utf-8", "replace")


def _text(buf, num: int) -> list[str]:
    return [_str(v) for v in _sub(buf, num)]


def _attr_functions(attr_value: bytes, depth: int = 0) -> set[str]:
    """Function names an AttrValue refers to: `func` (10), `list.func` (1 -> 9), and nested NameAttrList attrs."""
    if depth > 8:
        raise _Malformed("attributes nested too deep")
    out: set[str] = set()
    name_lists = _sub(attr_value, 10) + [f for lst in _sub(attr_value, 1) for f in _sub(lst, 9)]
    for nal in name_lists:
        out.update(_text(nal, 1))
        for entry in _sub(nal, 2):  # map<string, AttrValue>
            for v in _sub(entry, 2):
                out |= _attr_functions(v, depth + 1)
    return out


def _node(buf: bytes) -> tuple[str, str, set[str], list[str]]:
    """NodeDef -> (name, op, functions its attributes call, input node names)."""
    name, op, calls, inputs = "", "", set(), []
    for num, v in fields(buf):
        if not isinstance(v, memoryview):
            continue
        if num == 1:
            name = _str(v)
        elif num == 2:
            op = _str(v)
        elif num == 3:
            inputs.append(_str(v).lstrip("^").split(":")[0])
        elif num == 5:
            for value in _sub(v, 2):
                calls |= _attr_functions(value)
    return name, op, calls, inputs


def read_graph(pb: bytes) -> dict:
    """The parts of a SavedModel the check needs: top-level nodes, library functions, saver, signatures."""
    top: list[tuple[str, str, set[str], list[str]]] = []
    library: dict[str, tuple[set[str], set[str]]] = {}
    saver_nodes: set[str] = set()
    signature_nodes: set[str] = set()
    object_functions: set[str] = set()
    for meta in _sub(pb, 2):  # SavedModel.meta_graphs
        for graph in _sub(meta, 2):  # MetaGraphDef.graph_def
            top += [_node(n) for n in _sub(graph, 1)]
            for lib in _sub(graph, 2):  # GraphDef.library
                for fdef in _sub(lib, 1):  # FunctionDefLibrary.function
                    names = [n for sig in _sub(fdef, 1) for n in _text(sig, 1)]
                    ops, calls = set(), set()
                    for node in _sub(fdef, 3):
                        _, op, c, _ = _node(node)
                        ops.add(op)
                        calls |= c
                    for fname in names or [""]:
                        prev = library.get(fname, (set(), set()))
                        library[fname] = (prev[0] | ops, prev[1] | calls)
        for saver in _sub(meta, 3):  # MetaGraphDef.saver_def: save_tensor_name (2), restore_op_name (3)
            saver_nodes |= {t.lstrip("^").split(":")[0] for t in _text(saver, 2) + _text(saver, 3)}
        for entry in _sub(meta, 5):  # signature_def map entries
            for sig in _sub(entry, 2):
                for io in _sub(sig, 1) + _sub(sig, 2):
                    for info in _sub(io, 2):  # TensorInfo: name (1), coo_sparse (4)
                        names = _text(info, 1) + [t for coo in _sub(info, 4) for t in _text(coo, 1) + _text(coo, 2)
                                                  + _text(coo, 3)]
                        signature_nodes |= {t.lstrip("^").split(":")[0] for t in names}
        for objects in _sub(meta, 7):  # object_graph_def.concrete_functions (2): map keys
            for entry in _sub(objects, 2):
                object_functions |= set(_text(entry, 1))
    return {"top": top, "library": library, "saver_nodes": saver_nodes, "signature_nodes": signature_nodes,
            "object_functions": object_functions}


def _reach(roots: set[str], library: dict, top_ops: bool = False) -> set[str]:
    seen, todo = set(), [r for r in roots if r in library]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        ops, calls = library[f]
        todo += [c for c in calls | {o for o in ops if o in library} if c not in seen and c in library]
    return seen


def _ancestors(top: list, saver_nodes: set[str]) -> set[str]:
    """Top-level nodes that anything outside the saver needs (transitively through its inputs)."""
    inputs = {name: ins for name, _, _, ins in top}
    seen, todo = set(), [name for name in inputs if name not in saver_nodes]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo += [i for i in inputs.get(n, ()) if i not in seen]
    return seen


def forbidden_ops(pb: bytes) -> dict[str, set[str]]:
    """Where each op outside the allowlist is: {op: {"graph" | function name, ...}}."""
    g = read_graph(pb)
    library, top = g["library"], g["top"]

    def node_calls(node) -> set[str]:
        _, op, calls, _ = node
        return calls | ({op} if op in library else set())

    saver = g["saver_nodes"] - g["signature_nodes"] - _ancestors(top, g["saver_nodes"])
    saver_roots = {f for node in top if node[0] in saver for f in node_calls(node)}
    saver_reach = _reach(saver_roots, library)
    other_roots = {f for node in top if node[0] not in saver for f in node_calls(node)}
    other_roots |= g["object_functions"] | (set(library) - saver_reach)
    executable = _reach(other_roots, library)
    saver_only = saver_reach - executable
    bad: dict[str, set[str]] = {}
    for _, op, _, _ in top:
        if op not in PURE_OPS and op not in library:
            bad.setdefault(op, set()).add("the top-level graph")
    for fname, (ops, _) in library.items():
        allowed = PURE_OPS | SAVER_OPS if fname in saver_only else PURE_OPS
        for op in ops:
            if op not in allowed and op not in library:
                bad.setdefault(op, set()).add(f"function {fname!r}")
    return bad


def check_savedmodel(path: Path) -> None:
    """Refuse a SavedModel directory whose graphs hold ops outside the allowlist (InputError naming them)."""
    path = Path(path)
    label = f"model {str(path)!r}"
    pb_path = path / "saved_model.pb"
    if not pb_path.exists() and (path / "saved_model.pbtxt").exists():
        raise InputError(expected_received(label, "a binary saved_model.pb whose ops edgepipe can check",
                                           "a text saved_model.pbtxt; pass --trust-model (model.trust: true) "
                                           "only if you trust it"))
    pb = safeio.read_bytes(pb_path, "SavedModel graph", MAX_PB)
    try:
        bad = forbidden_ops(pb)
    except _Malformed as err:
        raise InputError(expected_received(label, "a readable saved_model.pb protobuf", str(err))) from None
    if bad:
        shown = "; ".join(f"{op} (in {', '.join(sorted(where)[:3])})" for op, where in sorted(bad.items())[:12])
        raise InputError(expected_received(
            label, "a SavedModel whose graphs use only pure tensor ops (an untrusted model must not run side "
                   "effects: file I/O, Python calls, printing, ...)",
            f"{len(bad)} other op type(s): {shown}; pass --trust-model (model.trust: true) only if you trust it"))
