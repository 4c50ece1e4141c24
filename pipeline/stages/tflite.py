"""SavedModel -> TFLite FP32 and full-integer INT8 (built-in int8 ops only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calibration.adapters import tflite_representative
from pipeline.core.progress import bar


def convert_fp32(saved_model: Path, out: Path) -> Path:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    dest = Path(out) / "model_fp32.tflite"
    dest.write_bytes(conv.convert())
    return dest


def convert_int8(saved_model: Path, out: Path, calib: np.ndarray, int8_io: bool = True, recipe=None,
                 io_dtype: str = "int8") -> Path:
    """Full-integer post-training quantization from real calibration images.

    With `int8_io`, the input/output tensors are integer: `io_dtype` (int8, or uint8 as older
    Edge TPU pipelines expect), int16 for a 16x8 recipe. `recipe` (pipeline.quantize.recipes.Recipe,
    None = default): per-tensor weights disable the converter's per-channel quantization;
    activation_bits 16 selects the 16x8 op set (int16 activations, symmetric). Recipes the
    converter cannot build were rejected by the config (pipeline.quantize.recipes.problems).
    """
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    x16 = recipe is not None and recipe.activation_bits == 16
    if x16:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    else:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if recipe is not None and recipe.weights == "per_tensor":
        conv._experimental_disable_per_channel = True  # the converter's (private) per-tensor switch
    if int8_io:
        dtype = tf.int16 if x16 else {"int8": tf.int8, "uint8": tf.uint8}[io_dtype]
        conv.inference_input_type = dtype
        conv.inference_output_type = dtype
    dest = Path(out) / "model_int8.tflite"
    with bar(f"TFLite INT8: calibrating on {len(calib)} images", len(calib)) as advance:
        conv.representative_dataset = tflite_representative(calib, advance)
        dest.write_bytes(conv.convert())
    return dest
