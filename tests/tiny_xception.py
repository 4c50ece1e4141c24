"""A tiny Xception with the real block structure, and a synthetic image data set.

Entry flow (two strided convs, three residual SeparableConv blocks with 1x1 strided
shortcuts), middle flow (N residual blocks of three ReLU-SeparableConv-BN), exit flow
(residual block, two SeparableConvs, global average pooling, softmax). SeparableConv2D
has no nonlinearity between its depthwise and pointwise parts, as in Xception.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ["horizontal", "vertical", "diagonal"]


def build(input_size: int = 71, classes: int = 3, width: int = 8, middle_blocks: int = 2):
    import keras
    from keras import layers

    def bn(name):  # short training runs: moving statistics must converge in ~100 steps
        return layers.BatchNormalization(momentum=0.9, name=name)

    w = width
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Conv2D(w, 3, strides=2, use_bias=False, name="block1_conv1")(inputs)
    x = bn(name="block1_conv1_bn")(x)
    x = layers.Activation("relu", name="block1_conv1_act")(x)
    x = layers.Conv2D(2 * w, 3, use_bias=False, name="block1_conv2")(x)
    x = bn(name="block1_conv2_bn")(x)
    x = layers.Activation("relu", name="block1_conv2_act")(x)

    for b, f in enumerate([4 * w, 8 * w, 16 * w], start=2):
        res = layers.Conv2D(f, 1, strides=2, padding="same", use_bias=False, name=f"conv2d_res{b}")(x)
        res = bn(name=f"bn_res{b}")(res)
        if b > 2:
            x = layers.Activation("relu", name=f"block{b}_sepconv1_act")(x)
        x = layers.SeparableConv2D(f, 3, padding="same", use_bias=False, name=f"block{b}_sepconv1")(x)
        x = bn(name=f"block{b}_sepconv1_bn")(x)
        x = layers.Activation("relu", name=f"block{b}_sepconv2_act")(x)
        x = layers.SeparableConv2D(f, 3, padding="same", use_bias=False, name=f"block{b}_sepconv2")(x)
        x = bn(name=f"block{b}_sepconv2_bn")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"block{b}_pool")(x)
        x = layers.add([x, res], name=f"add_{b}")

    f = 16 * w
    for i in range(middle_blocks):
        b = 5 + i
        res = x
        for j in range(1, 4):
            x = layers.Activation("relu", name=f"block{b}_sepconv{j}_act")(x)
            x = layers.SeparableConv2D(f, 3, padding="same", use_bias=False, name=f"block{b}_sepconv{j}")(x)
            x = bn(name=f"block{b}_sepconv{j}_bn")(x)
        x = layers.add([x, res], name=f"add_{b}")

    b = 5 + middle_blocks
    res = layers.Conv2D(24 * w, 1, strides=2, padding="same", use_bias=False, name="conv2d_exit_res")(x)
    res = bn(name="bn_exit_res")(res)
    x = layers.Activation("relu", name=f"block{b}_sepconv1_act")(x)
    x = layers.SeparableConv2D(f, 3, padding="same", use_bias=False, name=f"block{b}_sepconv1")(x)
    x = bn(name=f"block{b}_sepconv1_bn")(x)
    x = layers.Activation("relu", name=f"block{b}_sepconv2_act")(x)
    x = layers.SeparableConv2D(24 * w, 3, padding="same", use_bias=False, name=f"block{b}_sepconv2")(x)
    x = bn(name=f"block{b}_sepconv2_bn")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"block{b}_pool")(x)
    x = layers.add([x, res], name="add_exit")

    x = layers.SeparableConv2D(32 * w, 3, padding="same", use_bias=False, name=f"block{b + 1}_sepconv1")(x)
    x = bn(name=f"block{b + 1}_sepconv1_bn")(x)
    x = layers.Activation("relu", name=f"block{b + 1}_sepconv1_act")(x)
    x = layers.SeparableConv2D(32 * w, 3, padding="same", use_bias=False, name=f"block{b + 1}_sepconv2")(x)
    x = bn(name=f"block{b + 1}_sepconv2_bn")(x)
    x = layers.Activation("relu", name=f"block{b + 1}_sepconv2_act")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny_xception")


def synthetic_images(n_per_class: int, size: int = 80, seed: int = 0):
    """Stripes at three orientations with random phase, period, colour and noise (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images, labels = [], []
    for c in range(len(CLASSES)):
        for _ in range(n_per_class):
            period = rng.uniform(6, 14)
            phase = rng.uniform(0, 2 * np.pi)
            coord = [yy, xx, (xx + yy) / np.sqrt(2)][c]
            wave = 0.5 + 0.5 * np.sin(2 * np.pi * coord / period + phase)
            color = rng.uniform(0.4, 1.0, 3)
            img = wave[..., None] * color + rng.normal(0, 0.08, (size, size, 3))
            images.append(np.clip(img * 255, 0, 255).astype(np.uint8))
            labels.append(c)
    return np.stack(images), np.array(labels)


def write_folder(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    from PIL import Image

    for c in CLASSES:
        (root / c).mkdir(parents=True, exist_ok=True)
    for i, (img, lab) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(img).save(root / CLASSES[lab] / f"img_{i:04d}.png")
    return root


def train(model, images: np.ndarray, labels: np.ndarray, epochs: int = 6, seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    x = images.astype(np.float32) / 127.5 - 1.0
    x = np.stack([keras.ops.convert_to_numpy(keras.ops.image.resize(im, model.input_shape[1:3])) for im in x])
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(x, labels, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
    return hist.history["accuracy"][-1]
