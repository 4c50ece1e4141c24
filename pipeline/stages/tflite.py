"""SavedModel -> TFLite FP32 (built-in ops). Full-integer INT8 is the TFLite quantizer's
(pipeline/quantize/quantizers/tflite.py)."""

from __future__ import annotations

from pathlib import Path


def convert_fp32(saved_model: Path, out: Path) -> Path:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    dest = Path(out) / "model_fp32.tflite"
    dest.write_bytes(conv.convert())
    return dest
