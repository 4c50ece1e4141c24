"""Keras model -> TensorFlow SavedModel with a static batch-1 signature (done once)."""

from __future__ import annotations

from pathlib import Path


def export_savedmodel(model, out: Path, shape: tuple[int, int, int]) -> Path:
    import tensorflow as tf

    dest = Path(out) / "saved_model"
    sig = [tf.TensorSpec((1, *shape), tf.float32, name="input")]
    model.export(str(dest), format="tf_saved_model", input_signature=sig, verbose=False)
    return dest
