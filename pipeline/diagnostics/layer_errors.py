"""Per-layer quantization error of an INT8 artifact vs its FP32 sibling, mapped to Keras layer names.

Both models run on the same few validation images with their intermediate tensors exposed:
- TFLite: both interpreters keep every tensor (`experimental_preserve_all_tensors`, built-in
  kernels); op output tensors are matched by name (the converter keeps the TF names, which
  carry the Keras layer scopes) and INT8 tensors are dequantized with their own parameters.
- OpenVINO: outputs are added for the FP32 IR's compute ops and for the same friendly names in
  the NNCF IR, where the value taken is the FakeQuantize output that follows the op (the
  quantized activation the next layer sees) when there is one.
- ONNX: graph outputs are added for the FP32 model's compute-node outputs and, in the QDQ model,
  for the DequantizeLinear output that follows the same tensor.

Per matched tensor: MSE, cosine similarity and SNR (dB) of INT8 vs FP32 over all images. Rows
are sorted worst first (lowest SNR) and capped.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np

N_IMAGES = 16
FORMAT = 2  # of the rows; part of the stage key
MAX_ROWS = 25
_SCOPE_SUFFIX = re.compile(r"_\d+$")


# ---- names -------------------------------------------------------------------------------
def keras_layer_names(model_path: Path) -> set[str]:
    """Layer names from a .keras archive's config.json (no TensorFlow import); empty if unavailable."""
    names: set[str] = set()
    try:
        with zipfile.ZipFile(model_path) as z:
            cfg = json.loads(z.read("config.json"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
        return names

    def walk(node):
        if isinstance(node, dict):
            if "class_name" in node and isinstance(node.get("config"), dict) and "name" in node["config"]:
                names.add(node["config"]["name"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(cfg)
    return names


def keras_layers(tensor_name: str, known: set[str]) -> list[str]:
    """The Keras layers named in a (possibly fused, ';'-joined) TF/TFLite/OV/ONNX tensor name, in the
    order they appear (the first is the layer whose output the tensor is). Keras 3 call scopes add a
    `_N` suffix (`block1_conv1_1/convolution`), which is removed when that gives a known layer."""
    out: list[str] = []
    for part in tensor_name.split(";"):
        segs = [s for s in part.split(":")[0].split("/") if s]
        layer = None
        for seg in reversed(segs[:-1] or segs):
            for cand in (seg, _SCOPE_SUFFIX.sub("", seg)):
                if cand in known:
                    layer = cand
                    break
            if layer:
                break
        if layer is None and not known and len(segs) >= 2:
            layer = _SCOPE_SUFFIX.sub("", segs[-2])
        if layer and layer not in out:
            out.append(layer)
    return out


# ---- statistics --------------------------------------------------------------------------
class _Acc:
    """Streaming sums for MSE, cosine and SNR of one tensor over several images."""

    __slots__ = ("n", "ref2", "q2", "err2", "dot")

    def __init__(self):
        self.n = self.ref2 = self.q2 = self.err2 = self.dot = 0.0

    def add(self, ref: np.ndarray, q: np.ndarray) -> None:
        ref = ref.astype(np.float64).ravel()
        q = q.astype(np.float64).ravel()
        d = ref - q
        self.n += ref.size
        self.ref2 += float(ref @ ref)
        self.q2 += float(q @ q)
        self.err2 += float(d @ d)
        self.dot += float(ref @ q)

    def metrics(self) -> dict:
        cos = self.dot / np.sqrt(self.ref2 * self.q2) if self.ref2 > 0 and self.q2 > 0 else (
            1.0 if self.ref2 == self.q2 else 0.0)
        snr = 10 * np.log10(self.ref2 / self.err2) if self.err2 > 0 else float("inf")
        return {"mse": self.err2 / max(self.n, 1), "cosine": float(cos), "snr_db": float(snr)}


def summarize(accs: dict[str, _Acc], order: list[str], known: set[str], text: dict[str, str] | None = None,
              ops: dict[str, str] | None = None, cap: int = MAX_ROWS) -> list[dict]:
    """Rows worst first. `text[key]` is the name text the Keras layers are read from (default: the key);
    `ops[key]` the op type in the artifact (e.g. GroupConvolution = the depthwise half of a SeparableConv2D)."""
    rows = []
    for pos, key in enumerate(order):
        acc = accs.get(key)
        if acc is None or acc.n == 0:
            continue
        layers = keras_layers((text or {}).get(key, key), known)
        rows.append({"layer": layers[0] if layers else key, "fused": layers[1:], "op": (ops or {}).get(key),
                     "tensor": key[:200], "position": pos, **acc.metrics()})
    rows.sort(key=lambda r: (r["snr_db"], -r["mse"]))
    for r in rows:
        if not np.isfinite(r["snr_db"]):
            r["snr_db"] = 999.0  # identical tensors; JSON has no infinity
    return rows[:cap]


# ---- backends ----------------------------------------------------------------------------
def tflite_errors(fp32: Path, int8: Path, images: np.ndarray, threads: int = 1) -> tuple[dict, list, dict, dict]:
    from edgepipe.formats.runners import TFLiteRunner

    runners = [TFLiteRunner(p, threads, preserve_all_tensors=True) for p in (fp32, int8)]

    op_of: dict[str, str] = {}

    def op_outputs(r) -> dict[str, int]:
        out = {}
        for op in r.interp._get_ops_details():
            for i in op["outputs"]:
                if i >= 0:
                    name = r.interp._get_tensor_details(i, 0)["name"]
                    out[name] = i
                    op_of.setdefault(name, op["op_name"])
        return out

    f_out, q_out = op_outputs(runners[0]), op_outputs(runners[1])
    order = [n for n in f_out if n in q_out]
    accs = {n: _Acc() for n in order}
    for img in images:
        for r in runners:
            r.predict(img)
        for name in order:
            ref = runners[0].interp.get_tensor(f_out[name])
            det = runners[1].interp._get_tensor_details(q_out[name], 0)
            q = runners[1].interp.get_tensor(q_out[name])
            if q.dtype != np.float32:
                scale, zp = det["quantization"]
                if scale == 0:
                    continue
                q = (q.astype(np.float32) - zp) * scale
            if ref.shape == q.shape:
                accs[name].add(ref, q)
    return accs, order, {}, op_of


_OV_WEIGHTED = {"Convolution", "GroupConvolution", "MatMul"}


def _keras_kernels(keras_model) -> list[tuple[str, np.ndarray]]:
    """(layer name, kernel as output-channel rows) for every conv/dense kernel of a Keras model."""
    out = []
    stack = [keras_model]
    while stack:
        m = stack.pop()
        for layer in getattr(m, "layers", []):
            if hasattr(layer, "layers"):
                stack.append(layer)
                continue
            kind = type(layer).__name__
            w = [np.asarray(v) for v in layer.get_weights()]
            if kind == "SeparableConv2D":
                dw, pw = w[0], w[1]  # (kh, kw, cin, m), (1, 1, cin*m, cout)
                out.append((layer.name, dw.reshape(-1, dw.shape[2] * dw.shape[3]).T))
                out.append((layer.name, pw.reshape(pw.shape[2], pw.shape[3]).T))
            elif kind == "DepthwiseConv2D":
                out.append((layer.name, w[0].reshape(-1, w[0].shape[2] * w[0].shape[3]).T))
            elif kind == "Conv2D":
                k = w[0]
                out.append((layer.name, k.transpose(3, 2, 0, 1).reshape(k.shape[3], -1)))
            elif kind == "Dense":
                out.append((layer.name, w[0].T))
    return out


def _rows(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    n = np.linalg.norm(a, axis=1, keepdims=True)
    return a / np.where(n == 0, 1, n)


def openvino_layer_names(model, keras_model) -> dict[str, str]:
    """Friendly name -> Keras layer for the IR's weighted ops. OpenVINO's TF frontend renames most ops
    (transpose sinking gives `Transpose_1234`), so ops are matched by their weights instead: per output
    channel, the IR kernel is the Keras kernel up to the folded BatchNorm scale (|cosine| ~ 1)."""
    if keras_model is None:
        return {}
    cands = [(name, _rows(k)) for name, k in _keras_kernels(keras_model)]
    names = {}
    for op in model.get_ops():
        if op.get_type_name() not in _OV_WEIGHTED:
            continue
        src = op.input_value(1).get_node()
        if src.get_type_name() != "Constant":
            continue
        w = src.get_data()
        if op.get_type_name() == "GroupConvolution":
            w = w.reshape(w.shape[0], -1)
        elif op.get_type_name() == "Convolution":
            w = w.reshape(w.shape[0], -1)
        else:  # MatMul: (cin, cout) or (cout, cin) by transpose_b
            w = w.T if not op.get_attributes().get("transpose_b", False) else w
        w = _rows(w)
        best, score = None, 0.98
        for name, k in cands:
            if k.shape == w.shape:
                s = float(np.abs((k * w).sum(axis=1)).mean())
                if s > score:
                    best, score = name, s
        if best:
            names[op.get_friendly_name()] = best
    return names


def openvino_errors(fp32: Path, int8: Path, images: np.ndarray, keras_model=None,
                    threads: int = 1) -> tuple[dict, list, dict, dict]:
    import openvino as ov

    from edgepipe.formats.openvino_ir import add_outputs

    core = ov.Core()
    mf, mq = core.read_model(str(fp32)), core.read_model(str(int8))
    layer_of = openvino_layer_names(mf, keras_model)
    # get_ordered_ops: topological order, so `position` is the depth in the network (get_ops is not ordered)
    f_ops = {op.get_friendly_name(): op for op in mf.get_ordered_ops() if op.get_type_name() in _OV_WEIGHTED}
    q_ops = {op.get_friendly_name(): op for op in mq.get_ops()}
    order, f_outs, q_outs = [], [], []
    for name, op in f_ops.items():
        qop = q_ops.get(name)
        if qop is None or qop.get_type_name() != op.get_type_name():
            continue
        order.append(name)
        f_outs.append(op.output(0))
        q_outs.append(qop.output(0))
    f_index, q_index = add_outputs(mf, f_outs), add_outputs(mq, q_outs)
    cfg = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    cf, cq = core.compile_model(mf, "CPU", cfg), core.compile_model(mq, "CPU", cfg)
    accs = {n: _Acc() for n in order}
    rf, rq = cf.create_infer_request(), cq.create_infer_request()
    for img in images:
        x = img[None].astype(np.float32)
        rf.infer({0: x})
        rq.infer({0: x})
        for k, name in enumerate(order):
            ref = rf.get_output_tensor(f_index[k]).data
            q = rq.get_output_tensor(q_index[k]).data
            if ref.shape == q.shape:
                accs[name].add(ref, q)
    return accs, order, {n: layer_of.get(n, n) for n in order}, {n: f_ops[n].get_type_name() for n in order}


_ONNX_TYPES = {"Conv", "Add", "MaxPool", "Relu", "MatMul", "Gemm", "ReduceMean", "GlobalAveragePool", "Softmax",
               "Mul", "AveragePool"}


def onnx_errors(fp32: Path, int8: Path, images: np.ndarray, workdir: Path,
                threads: int = 1) -> tuple[dict, list, dict, dict]:
    import onnx
    import onnxruntime as ort

    from edgepipe.formats.onnx import exact_int8_config, session_options

    mf, mq = onnx.load(str(fp32)), onnx.load(str(int8))
    inits = {i.name for i in mf.graph.initializer}
    f_nodes = [n for n in mf.graph.node if n.op_type in _ONNX_TYPES]
    f_tensors = [n.output[0] for n in f_nodes]
    # tf2onnx names fused nodes `Conv__139`; their folded weights keep the TF names (`block1_conv1_1/...`)
    text = {n.output[0]: ";".join([n.name, *(i for i in n.input if i in inits)]) for n in f_nodes}
    q_produced = {o for n in mq.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in mq.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def quantized(t: str) -> str:
        for q in consumers.get(t, []):
            if q.op_type == "QuantizeLinear":
                for dq in consumers.get(q.output[0], []):
                    if dq.op_type == "DequantizeLinear":
                        return dq.output[0]
        return t

    order = [t for t in f_tensors if t in q_produced]
    pairs = {t: quantized(t) for t in order}
    existing_f = {o.name for o in mf.graph.output}
    existing_q = {o.name for o in mq.graph.output}
    for m, names, existing in ((mf, order, existing_f), (mq, list(pairs.values()), existing_q)):
        for name in dict.fromkeys(names):
            if name not in existing:
                m.graph.output.append(onnx.ValueInfoProto(name=name))
    paths = []
    for tag, m in (("fp32", mf), ("int8", mq)):
        p = Path(workdir) / f"debug_{tag}.onnx"
        onnx.save(m, str(p))
        paths.append(p)
    so = session_options(threads, exact_int8_config())  # as the deployed runner computes the int8 model
    sf, sq = (ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]) for p in paths)
    f_names = [o.name for o in sf.get_outputs()]
    q_names = [o.name for o in sq.get_outputs()]
    in_f, in_q = sf.get_inputs()[0].name, sq.get_inputs()[0].name
    accs = {t: _Acc() for t in order}
    for img in images:
        x = img[None].astype(np.float32)
        of = dict(zip(f_names, sf.run(None, {in_f: x}), strict=True))
        oq = dict(zip(q_names, sq.run(None, {in_q: x}), strict=True))
        for t in order:
            ref, q = of[t], oq[pairs[t]]
            if ref.shape == q.shape and ref.dtype == np.float32 and q.dtype == np.float32:
                accs[t].add(ref, q)
    for p in paths:
        p.unlink()
    return accs, order, text, {n.output[0]: n.op_type for n in f_nodes}


def per_layer_report(kind: str, fp32: Path, int8: Path, images: np.ndarray, known: set[str],
                     workdir: Path, keras_model=None, threads: int = 1) -> list[dict]:
    if kind == "tflite":
        accs, order, text, ops = tflite_errors(fp32, int8, images, threads)
    elif kind == "openvino":
        accs, order, text, ops = openvino_errors(fp32, int8, images, keras_model, threads)
    elif kind == "onnx":
        accs, order, text, ops = onnx_errors(fp32, int8, images, workdir, threads)
    else:
        raise ValueError(f"per-layer report: expected kind tflite, openvino or onnx. Received: {kind!r}")
    return summarize(accs, order, known, text, ops)


# ---- the cached stage --------------------------------------------------------------------
def layer_error_stage(ctx, kind: str, fp32, int8, n_images: int | None = None) -> list[dict]:
    """Cached per (both artifacts' hashes, images, tool versions): the `per_layer` rows of an INT8 artifact."""
    from edgepipe.core.hashing import stable_hash
    from edgepipe.core.versions import tool_versions

    valid = ctx.validation
    # the count, not the images: a cached stage must not decode them (a warm rerun decodes no image)
    n = min(len(valid), n_images or ctx.cfg.diagnostics.per_layer_images or N_IMAGES)
    tools = {"tflite": ("ai-edge-litert",), "openvino": ("openvino",), "onnx": ("onnx", "onnxruntime")}[kind]
    known = set() if ctx.is_savedmodel else keras_layer_names(ctx.model_path)
    params = {"kind": kind, "fp32": fp32.sha256, "int8": int8.sha256, "data": valid.sha256, "n": n,
              "layers": stable_hash(sorted(known)), "max_rows": MAX_ROWS, "format": FORMAT,
              **tool_versions(*tools)}
    if kind == "onnx":  # the session config onnx_errors runs the INT8 model with
        from edgepipe.formats.onnx import exact_int8_key

        params.update(exact_int8_key())

    def fn(out: Path) -> dict:
        keras_model = ctx.keras_model() if kind == "openvino" and not ctx.is_savedmodel else None
        rows = per_layer_report(kind, fp32.path, int8.path, valid.images[:n], known, out, keras_model,
                                ctx.cfg.threads)
        (out / "per_layer.json").write_text(json.dumps(rows, indent=1))
        return {"rows": len(rows)}

    res = ctx.stage(f"layers-{int8.name.replace('/', '-')}", params, fn)
    return json.loads((res.path / "per_layer.json").read_text())
