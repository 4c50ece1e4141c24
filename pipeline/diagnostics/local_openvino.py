"""OpenVINO: each weighted op's *local* quantization error (that op quantized alone, fed FP32 inputs)
beside its *accumulated* error (the whole NNCF INT8 IR), on the CPU plugin in f32 precision.

An NNCF IR quantizes with FakeQuantize nodes on activations (named `<producer>/fq_output_N`) and
int8 weight constants decompressed in the graph (`<op>/fq_weights_1`); fast bias correction edits
the bias constants. For op L the local model is the INT8 IR with

- every activation FakeQuantize bypassed except the one feeding L and the one ending L's chain
  (L -> bias Add -> ReLU -> FakeQuantize: what the next op reads),
- every other weighted op's weights and every other constant replaced by the FP32 IR's (matched by
  op name: NNCF keeps the IR's op names),

so L sees FP32 inputs quantized with its own input parameters, quantized weights and its corrected bias,
and its output is quantized as the full model quantizes it. Local and accumulated errors are measured
at the end of L's chain (after the bias, activation and output FakeQuantize when there are any) against
the FP32 IR's value of the same node.

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


def local_model(int8_path: Path, fp32_consts: dict, keep: str):
    """The INT8 IR with only op `keep` quantized (see the module doc); returns (model, measure node name)."""
    import openvino as ov
    import openvino.opset13 as ops

    m = ov.Core().read_model(str(int8_path))
    by_name = {op.get_friendly_name(): op for op in m.get_ops()}
    target = by_name[keep]
    end = chain_end(target)
    kept = {end.get_friendly_name()} if end.get_type_name() == "FakeQuantize" else set()
    src = target.input_value(0).get_node()
    while src.get_type_name() in ("Transpose", "Reshape", "Convert"):
        src = src.input_value(0).get_node()
    if _is_activation_fq(src):
        kept.add(src.get_friendly_name())
    own = {keep}  # L and its chain keep their (quantized / corrected) constants
    node = target
    while node is not end:
        node = _consumers(node.output(0))[0]
        own.add(node.get_friendly_name())
    for op in list(m.get_ordered_ops()):
        name = op.get_friendly_name()
        if _is_activation_fq(op) and name not in kept:
            for target_in in list(op.output(0).get_target_inputs()):
                target_in.replace_source_output(op.input_value(0))
        elif name not in own and name in fp32_consts:
            for i, data in fp32_consts[name].items():
                if i < op.get_input_size():
                    const = ops.constant(data)
                    op.input(i).replace_source_output(const.output(0))
    m.validate_nodes_and_infer_types()
    return m, end.get_friendly_name()


def fp32_constants(fp32_path: Path) -> dict:
    """op name -> {input index: constant data} for every op input fed directly by a Constant."""
    import openvino as ov

    out: dict = {}
    for op in ov.Core().read_model(str(fp32_path)).get_ops():
        for i, inp in enumerate(op.inputs()):
            src = inp.get_source_output().get_node()
            if src.get_type_name() == "Constant":
                out.setdefault(op.get_friendly_name(), {})[i] = src.get_data().copy()
    return out


def config(threads: int, kernels: str = "int8") -> dict:
    if kernels not in ("int8", "fq-math"):
        raise ValueError(f"kernels: expected 'int8' or 'fq-math'. Received: {kernels!r}")
    cfg = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    if kernels == "fq-math":
        cfg["LP_TRANSFORMS_MODE"] = False  # the CPU plugin's switch for its low-precision transformations
    return cfg


def _run(core, model, names: list[str], images: np.ndarray, cfg: dict) -> list[dict]:
    by_name = {op.get_friendly_name(): op for op in model.get_ops()}
    outs = [by_name[n].output(0) for n in names]
    model.add_outputs(outs)
    n0 = len(model.outputs) - len(outs)
    compiled = core.compile_model(model, "CPU", cfg)
    req = compiled.create_infer_request()
    res = []
    for img in images:
        req.infer({0: img[None].astype(np.float32)})
        res.append({n: req.get_output_tensor(n0 + k).data.copy() for k, n in enumerate(names)})
    return res


def _snr(refs: list, vals: list, rname: str, qname: str) -> float | None:
    sig = err = 0.0
    for r, v in zip(refs, vals, strict=True):
        a, b = r[rname].astype(np.float64), v[qname].astype(np.float64)
        if a.shape != b.shape:
            return None
        sig += float((a ** 2).sum())
        err += float(((a - b) ** 2).sum())
    if err == 0:
        return 999.0
    return float(10 * np.log10(sig / err)) if sig > 0 else -999.0


def local_and_accumulated(fp32_path: Path, int8_path: Path, images: np.ndarray, threads: int = 1,
                          kernels: str = "int8", progress=None) -> list[dict]:
    """Per weighted op of the INT8 IR (topological order): local and accumulated SNR (dB) at its chain end,
    the quantized models run with `kernels` (see the module doc)."""
    qcfg, fcfg = config(threads, kernels), config(threads)
    import openvino as ov

    core = ov.Core()
    mq = core.read_model(str(int8_path))
    mf = core.read_model(str(fp32_path))
    f_names = {op.get_friendly_name() for op in mf.get_ops()}
    ops = [op for op in mq.get_ordered_ops() if op.get_type_name() in WEIGHTED and op.get_friendly_name() in f_names]
    points = []  # (op name, op type, measure node in the INT8 IR, its float counterpart)
    for op in ops:
        end = chain_end(op)
        fname = _float_end(end).get_friendly_name()
        if fname in f_names:
            points.append((op.get_friendly_name(), op.get_type_name(), end.get_friendly_name(), fname))
    refs = _run(core, mf, sorted({p[3] for p in points}), images, fcfg)
    full = _run(core, mq, sorted({p[2] for p in points}), images, qcfg)
    consts = fp32_constants(fp32_path)
    rows = []
    for pos, (name, kind, qname, fname) in enumerate(points):
        model, end = local_model(int8_path, consts, name)
        local = _snr(refs, _run(core, model, [end], images, qcfg), fname, end)
        rows.append({"position": pos, "op": kind, "tensor": name, "measured_at": qname,
                     "local_snr_db": local, "accumulated_snr_db": _snr(refs, full, fname, qname)})
        if progress:
            progress(1)
    return rows
