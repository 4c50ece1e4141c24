"""SavedModel -> TFLite FP32 and full-integer INT8 (built-in int8 ops only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calibration.adapters import tflite_representative
from pipeline.progress import bar


def convert_fp32(saved_model: Path, out: Path) -> Path:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    dest = Path(out) / "model_fp32.tflite"
    dest.write_bytes(conv.convert())
    return dest


def convert_int8(saved_model: Path, out: Path, calib: np.ndarray, int8_io: bool = True,
                 io_dtype: str = "int8") -> Path:
    """Full-integer post-training quantization from real calibration images. With `int8_io`, the
    input/output tensors are `io_dtype` (int8, or uint8 as older Edge TPU pipelines expect)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        dtype = {"int8": tf.int8, "uint8": tf.uint8}[io_dtype]
        conv.inference_input_type = dtype
        conv.inference_output_type = dtype
    dest = Path(out) / "model_int8.tflite"
    with bar(f"TFLite INT8: calibrating on {len(calib)} images", len(calib)) as advance:
        conv.representative_dataset = tflite_representative(calib, advance)
        dest.write_bytes(conv.convert())
    return dest
