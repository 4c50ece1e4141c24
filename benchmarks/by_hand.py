"""Each toolchain's INT8 quantization run by hand, with its documented defaults: the baseline rows of
bench_quant.py and bench_fidelity.py (what a user gets without edgepipe). Stage functions: each writes
into `out` and returns its stage metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tflite_by_hand(saved_model: Path, out: Path, images: np.ndarray) -> dict:
    """TFLiteConverter's default post-training quantization, as its documentation shows it."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([img[None]] for img in images)
    (out / "model.tflite").write_bytes(conv.convert())
    return {}


def nncf_by_hand(saved_model: Path, out: Path, images: np.ndarray, shape) -> dict:
    """ov.convert_model + nncf.quantize with every default (batch fixed to 1 for the runner)."""
    import nncf
    import openvino as ov

    model = ov.convert_model(str(saved_model))
    model.reshape([1, *shape])
    qmodel = nncf.quantize(model, nncf.Dataset(images, lambda img: img[None]))
    ov.save_model(qmodel, str(out / "model.xml"))
    return {}


def ort_by_hand(model: Path, out: Path, images: np.ndarray) -> dict:
    """onnxruntime.quantization.quantize_static with its defaults (QDQ, per-tensor, MinMax, int8);
    `CalibMaxIntermediateOutputs` only bounds memory (MinMax otherwise keeps every image's activations)."""
    from onnxruntime.quantization import quantize_static

    from edgepipe.calibration.adapters import onnx_calibration_reader

    quantize_static(str(model), str(out / "model.onnx"), onnx_calibration_reader(model, images),
                    extra_options={"CalibMaxIntermediateOutputs": 16})
    return {}
