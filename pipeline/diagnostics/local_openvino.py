"""OpenVINO: each weighted op's *local* quantization error (that op quantized alone, fed FP32 inputs)
beside its *accumulated* error (the whole NNCF INT8 IR), on the CPU plugin in f32 precision.

An NNCF IR quantizes with FakeQuantize nodes on activations (named `<producer>/fq_output_N`) and
int8 weight constants decompressed in the graph (`<op>/fq_weights_1`); fast bias correction edits
the bias constants. For op L the local model is L's own part of the INT8 IR (its input FakeQuantize, L with
its quantized weights, and its chain L -> bias Add -> ReLU -> FakeQuantize: what the next op reads), fed by
the FP32 IR's value of L's input (matched by op name: NNCF keeps the IR's op names). So L sees FP32 inputs
quantized with its own input parameters, quantized weights and its corrected bias, and its output is
quantized as the full model quantizes it. Local and accumulated errors are measured at the end of L's
chain (after the bias, activation and output FakeQuantize when there are any) against the FP32 IR's value
of the same node.

Every op's part is grafted onto one copy of the FP32 IR (`local_branch`), so one compiled model gives the
reference and every local value in one pass, and a second one (the INT8 IR) the accumulated values. Until
2026-11-30 each op had a model of its own (the INT8 IR with the other FakeQuantize ops bypassed and FP32
constants elsewhere): the same values to within 5e-5 dB on the tiny Xception, at one compile and one full
pass per op (6x the time there, and about one compile of the whole network per op on a real one).

Two ways to run the quantized models (`kernels`):
- "int8": the CPU plugin's low-precision transformations turn FakeQuantize + op into integer kernels,
  as the artifact runs on this CPU. On x86 CPUs without VNNI (AVX2 only) the u8 x s8 kernels add
  pairs of products in int16 with saturation (vpmaddubsw), an error the IR does not contain;
- "fq-math": those transformations off (`LP_TRANSFORMS_MODE: False`): FakeQuantize is computed in
  float, the quantization the IR specifies, the same on every CPU.
The difference between the two is the error the CPU's kernels add.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepipe.diagnostics.snr import SNRSums
from edgepipe.formats.openvino_ir import add_outputs

WEIGHTED = ("Convolution", "GroupConvolution", "MatMul")
CHAIN = ("Add", "Relu", "FakeQuantize")


def _consumers(output) -> list:
    return [i.get_node() for i in output.get_target_inputs()]


def chain_end(op):
    """The last node of op -> [Add with a constant] -> [Relu] -> [FakeQuantize] (single consumers)."""
    node = op
    while True:
        users = _consumers(node.output(0))
        if len(users) != 1 or users[0].get_type_name() not in CHAIN:
            return node
        nxt = users[0]
        if nxt.get_type_name() == "Add" and not any(
                i.get_source_output().get_node().get_type_name() == "Constant" for i in nxt.inputs()):
            return node
        node = nxt


def _float_end(node):
    """The chain end without its trailing FakeQuantize (the node an FP32 IR has)."""
    while node.get_type_name() == "FakeQuantize":
        node = node.input_value(0).get_node()
    return node


def _is_activation_fq(node) -> bool:
    return node.get_type_name() == "FakeQuantize" and \
        node.input_value(0).get_node().get_type_name() not in ("Constant", "Convert")


def config(threads: int, kernels: str = "int8") -> dict:
    if kernels not in ("int8", "fq-math"):
        raise ValueError(f"kernels: expected 'int8' or 'fq-math'. Received: {kernels!r}")
    cfg = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    if kernels == "fq-math":
        cfg["LP_TRANSFORMS_MODE"] = False  # the CPU plugin's switch for its low-precision transformations
    return cfg


def _input_dependent(model) -> set[int]:
    """Instance ids of the model's ops whose value depends on a model input (the others are constant
    subgraphs, e.g. decompressed weights). One pass in topological order: no recursion, however deep."""
    dep: set[int] = set()
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Parameter" or any(
                i.get_source_output().get_node().get_instance_id() in dep for i in op.inputs()):
            dep.add(op.get_instance_id())
    return dep


def _branch_names(target) -> tuple[set[str], object]:
    """The INT8 IR's nodes op `target` is measured through when quantized alone: its input FakeQuantize (when
    its input is quantized) and the nodes between, the op, and its chain up to the chain end; and that end."""
    end = chain_end(target)
    names = {target.get_friendly_name()}
    node = target
    while node is not end:
        node = _consumers(node.output(0))[0]
        names.add(node.get_friendly_name())
    path, src = [], target.input_value(0).get_node()
    while src.get_type_name() in ("Transpose", "Reshape", "Convert"):
        path.append(src)
        src = src.input_value(0).get_node()
    if _is_activation_fq(src):
        names.update(n.get_friendly_name() for n in (*path, src))
    return names, end


def local_branch(mq, f_by_name: dict, name: str):
    """Op `name` of the INT8 IR `mq` quantized alone, as a branch grafted onto the FP32 IR whose ops are
    `f_by_name`: in a copy of `mq`, every input of the branch (the op's input FakeQuantize, the op, its chain)
    that comes from outside it and depends on the model input is rewired to the FP32 IR's op of the same
    name. So the branch reads FP32 values, keeps the INT8 IR's quantized weights, corrected bias and
    quantization parameters, and its output is quantized as the full INT8 model quantizes it. Returns the
    branch's measured output (the chain end)."""
    q = mq.clone()
    by_name = {op.get_friendly_name(): op for op in q.get_ops()}
    names, end = _branch_names(by_name[name])
    depends = _input_dependent(q)
    for node in (by_name[n] for n in names):
        for inp in node.inputs():
            src = inp.get_source_output()
            producer = src.get_node()
            if producer.get_friendly_name() in names or producer.get_instance_id() not in depends:
                continue
            twin = f_by_name.get(producer.get_friendly_name())
            if twin is None or twin.get_type_name() != producer.get_type_name():
                raise ValueError(f"local error of {name!r}: expected the FP32 IR to have "
                                 f"{producer.get_type_name()} {producer.get_friendly_name()!r} as the INT8 IR does. "
                                 f"Received: {twin.get_type_name() if twin is not None else 'no such op'}")
            inp.replace_source_output(twin.output(src.get_index()))
    return end.output(0)


def local_and_accumulated(fp32_path: Path, int8_path: Path, images: np.ndarray, threads: int = 1,
                          kernels: str = "int8", progress=None) -> list[dict]:
    """Per weighted op of the INT8 IR (topological order): local and accumulated SNR (dB) at its chain end,
    the quantized models run with `kernels` (see the module doc). Two compiled models: the INT8 IR with the
    chain ends as outputs (accumulated), and the FP32 IR with every op's local branch grafted on (reference
    and local values in one pass)."""
    import openvino as ov

    cfg = config(threads, kernels)
    core = ov.Core()
    mq = core.read_model(str(int8_path))
    mf = core.read_model(str(fp32_path))
    f_by_name = {op.get_friendly_name(): op for op in mf.get_ops()}
    points = []  # (op, measure node in the INT8 IR, its float counterpart in the FP32 IR)
    for op in mq.get_ordered_ops():
        if op.get_type_name() in WEIGHTED and op.get_friendly_name() in f_by_name:
            end = chain_end(op)
            fname = _float_end(end).get_friendly_name()
            if fname in f_by_name:
                points.append((op, end, f_by_name[fname]))
    branches = [local_branch(mq, f_by_name, op.get_friendly_name()) for op, _, _ in points]
    refs = add_outputs(mf, [f.output(0) for _, _, f in points])
    locals_ = add_outputs(mf, branches)
    ends = add_outputs(mq, [end.output(0) for _, end, _ in points])
    rf = core.compile_model(mf, "CPU", cfg).create_infer_request()
    rq = core.compile_model(mq, "CPU", cfg).create_infer_request()
    local = [SNRSums() for _ in points]
    accumulated = [SNRSums() for _ in points]
    for img in images:
        x = img[None].astype(np.float32)
        rf.infer({0: x})
        rq.infer({0: x})
        for i in range(len(points)):
            ref = rf.get_output_tensor(refs[i]).data
            local[i].add(ref, rf.get_output_tensor(locals_[i]).data)
            accumulated[i].add(ref, rq.get_output_tensor(ends[i]).data)
    rows = []
    for pos, (op, end, _) in enumerate(points):
        rows.append({"position": pos, "op": op.get_type_name(), "tensor": op.get_friendly_name(),
                     "measured_at": end.get_friendly_name(), "local_snr_db": local[pos].db(),
                     "accumulated_snr_db": accumulated[pos].db()})
        if progress:
            progress(1)
    return rows
