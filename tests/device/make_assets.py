"""Regenerate tests/device/assets (needs TensorFlow; run in the main environment, not on boards).

    PYTHONPATH=$PWD python tests/device/make_assets.py

A tiny full-integer INT8 TFLite classifier (8x8x3 -> 3 classes, int8 I/O, a few KB) and 6
labeled preprocessed images in [-1, 1]: what the on-device runner tests need without
TensorFlow (the old-style `device-old` tox env has only numpy and tflite-runtime).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ASSETS = Path(__file__).parent / "assets"


def images(n_per_class: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class k: channel k bright, the others dark (plus noise): separable by a linear model."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k in range(3):
        for _ in range(n_per_class):
            x = rng.uniform(-1.0, -0.6, size=(8, 8, 3)).astype(np.float32)
            x[..., k] = rng.uniform(0.6, 1.0, size=(8, 8))
            xs.append(x)
            ys.append(k)
    return np.stack(xs).astype(np.float32), np.array(ys, dtype=np.int64)


def main() -> None:
    import tensorflow as tf

    ASSETS.mkdir(parents=True, exist_ok=True)
    x_train, y_train = images(40, seed=1)
    inp = tf.keras.Input((8, 8, 3), batch_size=1)
    h = tf.keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    h = tf.keras.layers.Flatten()(h)
    out = tf.keras.layers.Dense(3, activation="softmax")(h)
    model = tf.keras.Model(inp, out)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=30, batch_size=1, verbose=0)

    def rep():
        for x in x_train[:30]:
            yield [x[None]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    (ASSETS / "tiny_int8.tflite").write_bytes(conv.convert())
    x, y = images(2, seed=0)
    np.save(ASSETS / "sample_images.npy", x)
    np.save(ASSETS / "sample_labels.npy", y)
    future_op_version()


def future_op_version() -> None:
    """The same model claiming CONV_2D version 99: what an old runtime sees in a model from a newer converter."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(ASSETS / "tiny_int8.tflite"))
    conv = next(oc for oc in model.operatorCodes if oc.builtinCode == 3)  # CONV_2D
    conv.version = 99
    flatbuffer_utils.write_model(model, str(ASSETS / "tiny_int8_conv_v99.tflite"))


if __name__ == "__main__":
    main()
