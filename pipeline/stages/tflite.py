"""SavedModel -> TFLite FP32 and full-integer INT8 (built-in int8 ops only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calibration.adapters import tflite_representative


def convert_fp32(saved_model: Path, out: Path) -> Path:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    dest = Path(out) / "model_fp32.tflite"
    dest.write_bytes(conv.convert())
    return dest


def convert_int8(saved_model: Path, out: Path, calib: np.ndarray, int8_io: bool = True, recipe=None) -> Path:
    """Full-integer post-training quantization from real calibration images.

    `recipe` (pipeline.recipes.Recipe, None = default): per-tensor weights disable the
    converter's per-channel quantization; activation_bits 16 selects the 16x8 op set (int16
    activations, symmetric), with int16 I/O when `int8_io` asks for integer I/O. Recipes the
    converter cannot build were rejected by the config (pipeline.recipes.problems).
    """
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = tflite_representative(calib)
    x16 = recipe is not None and recipe.activation_bits == 16
    if x16:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    else:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if recipe is not None and recipe.weights == "per_tensor":
        conv._experimental_disable_per_channel = True  # the converter's (private) per-tensor switch
    if int8_io:
        conv.inference_input_type = tf.int16 if x16 else tf.int8
        conv.inference_output_type = tf.int16 if x16 else tf.int8
    dest = Path(out) / "model_int8.tflite"
    dest.write_bytes(conv.convert())
    return dest
