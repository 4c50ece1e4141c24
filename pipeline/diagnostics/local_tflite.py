"""TFLite: each op's *local* quantization error (that op quantized alone, fed FP32 inputs) beside its
*accumulated* error (every op quantized), from one calibration.

The converter is run once in calibrate-only mode (`_experimental_calibrate_only`, as TFLite's own
QuantizationDebugger does): a float model carrying every tensor's calibrated min/max. From it,
`mlir_quantize` builds in a fraction of a second (a) the fully quantized model (the converter's INT8
model; float I/O) and (b) for each op L, a model where every other op is denylisted (stays float), so
L sees FP32 inputs quantized with its input tensor's calibrated parameters and produces a quantized
output. Both are run with every tensor kept, and L's output tensor (dequantized) is compared with the
same tensor of the calibrated float model on the same images.

These are private TensorFlow Lite APIs (the ones QuantizationDebugger uses); they are imported lazily
and only here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from edgepipe.diagnostics.snr import SNRSums

SKIP_OPS = {"QUANTIZE", "DEQUANTIZE"}
WEIGHTED = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


def calibrate(saved_model: Path, images: np.ndarray, per_tensor: bool = False) -> bytes:
    """The calibrated float model (min/max of every tensor on `images`), as the converter records it."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([img[None].astype(np.float32)] for img in images)
    conv.experimental_mlir_quantizer = True
    conv._experimental_calibrate_only = True  # the calibrated float model QuantizationDebugger starts from
    if per_tensor:
        conv._experimental_disable_per_channel = True
    return conv.convert()


def quantize(calibrated: bytes, denylisted_nodes: list[str] | None = None, per_tensor: bool = False) -> bytes:
    """INT8 model from a calibrated one (float I/O); `denylisted_nodes` (op output tensor names) stay float."""
    from tensorflow.lite.python import convert

    return convert.mlir_quantize(calibrated, disable_per_channel=per_tensor, fully_quantize=False,
                                 denylisted_nodes=denylisted_nodes or None)


def _interpreter(content: bytes, threads: int):
    from edgepipe.formats.runners import TFLiteRunner

    with tempfile.NamedTemporaryFile(suffix=".tflite", delete=False) as f:
        f.write(content)
        path = Path(f.name)
    try:
        return TFLiteRunner(path, threads, preserve_all_tensors=True)
    finally:
        path.unlink()


def op_outputs(runner) -> list[tuple[str, str, int]]:
    """(op type, output tensor name, tensor index) in execution order."""
    out = []
    for op in runner.interp._get_ops_details():
        if op["op_name"] in SKIP_OPS or not len(op["outputs"]):
            continue
        i = int(op["outputs"][0])
        out.append((op["op_name"], runner.interp._get_tensor_details(i, 0)["name"], i))
    return out


def weight_names(runner) -> dict[str, str]:
    """Output tensor name -> weight tensor name of every conv / fully-connected op (the weights carry the
    name of the Keras layer that computes the op; a fused output name starts with the activation's)."""
    out = {}
    for op in runner.interp._get_ops_details():
        if op["op_name"] in WEIGHTED and len(op["inputs"]) > 1 and len(op["outputs"]):
            name = runner.interp._get_tensor_details(int(op["outputs"][0]), 0)["name"]
            out[name] = runner.interp._get_tensor_details(int(op["inputs"][1]), 0)["name"]
    return out


def _value(runner, index: int) -> np.ndarray:
    det = runner.interp._get_tensor_details(index, 0)
    v = runner.interp.get_tensor(index)
    if v.dtype != np.float32:
        scale, zp = det["quantization"]
        v = (v.astype(np.float32) - zp) * scale
    return v


def local_and_accumulated(calibrated: bytes, images: np.ndarray, ops: list[str] | None = None,
                          threads: int = 1, per_tensor: bool = False, chunk: int = 16, progress=None) -> list[dict]:
    """Per op of the calibrated model (execution order): local and accumulated SNR (dB) of its output.
    `ops`: output tensor names to measure locally (default: every op). The FP32 tensors are kept for
    `chunk` ops at a time (all of Xception's tensors for a few images would take gigabytes)."""
    ref = _interpreter(calibrated, threads)
    order = op_outputs(ref)
    weights = weight_names(ref)
    full = _interpreter(quantize(calibrated, per_tensor=per_tensor), threads)
    f_idx = {name: i for _, name, i in op_outputs(full)}
    acc = {name: SNRSums() for _, name, _ in order}
    for img in images:
        ref.predict(img)
        full.predict(img)
        for _, name, i in order:
            if name in f_idx:
                r, v = _value(ref, i), _value(full, f_idx[name])
                if v.shape == r.shape:
                    acc[name].add(r, v)
    del full
    names = [name for _, name, _ in order]
    wanted = [(name, i) for _, name, i in order if ops is None or name in set(ops)]
    local = {}
    for start in range(0, len(wanted), chunk):
        part = wanted[start : start + chunk]
        refs = []
        for img in images:
            ref.predict(img)
            refs.append({name: _value(ref, i).copy() for name, i in part})
        for name, _ in part:
            sel = _interpreter(quantize(calibrated, [n for n in names if n != name], per_tensor), threads)
            idx = {n: i for _, n, i in op_outputs(sel)}
            if name in idx:
                s = SNRSums()
                for img, r in zip(images, refs, strict=True):
                    sel.predict(img)
                    v = _value(sel, idx[name])
                    if v.shape == r[name].shape:
                        s.add(r[name], v)
                local[name] = s
            del sel
            if progress:
                progress(1)
    rows = []
    for pos, (op, name, _) in enumerate(order):
        rows.append({"position": pos, "op": op, "tensor": name[:300], "weights": weights.get(name, "")[:300],
                     "local_snr_db": local[name].db() if name in local else None,
                     "accumulated_snr_db": acc[name].db() if acc[name].sig > 0 else None})
    return rows
