"""Quantization-aware fine-tuning (QAT) at the Keras level, distilled from the FP32 model itself.

Post-training methods stall at about 20 dB output SNR on Xception because the error is spread over
every layer, two thirds of it from the 8-bit activations. QAT lets every weight adapt to the error the
converters will make: a *student* (the model, sharing its layers with a plain copy) computes with fake
quantization where the converters quantize, and is trained to reproduce the *teacher*, the FP32 model's
own outputs on the training images (no labels: the goal is fidelity to FP32, not accuracy).

- Activations: per-tensor asymmetric 8-bit (`tf.quantization.fake_quant_with_min_max_vars`: TFLite's
  nudged zero point, straight-through gradients inside the range, none outside), ranges = global
  min / max over the training images measured once on the FP32 model, as TFLite's calibrator does, and
  fixed during training (the converter re-measures them on the fine-tuned model). Quantized tensors:
  every BatchNormalization output (unless only ReLUs read it: the converters fuse conv + BN + ReLU and
  quantize the ReLU's output), every Activation, Add and pooling-average output, the output of a conv
  not followed by a BatchNormalization, and the depthwise -> pointwise intermediate inside each
  SeparableConv2D (TFLite lowers it to DEPTHWISE_CONV_2D + CONV_2D with an int8 tensor between).
  Not emulated: the input image's quantization (step 2/255 of [-1, 1]), max pooling (keeps its input's
  grid), a Dense layer's pre-softmax logits and TFLite's fixed 1/256 softmax grid.
- Weights (`weights=True`): every conv / dense kernel is fake-quantized per output channel, symmetric,
  scale = max |w| / 127 (keras_taps.grid). BatchNorm folding scales a whole output channel, which leaves
  that grid's integers unchanged, so quantizing the unfolded kernel is quantizing the folded one. Float
  shadow kernels are trained; the model's kernels hold their grid values during each step (STE).
- Loss: mean squared error between the teacher's and the student's output scores (`loss="mse"`): it is
  what the output SNR measures, and it weighs the images by how far their scores move; `loss="kl"`
  (KL(teacher || student), for softmax outputs) is available.
- BatchNormalization stays in inference mode (moving statistics unchanged, gamma / beta trained);
  Adam, a small learning rate, fixed-size batches drawn from shuffled passes over the images, stopped
  by `steps` or `max_seconds`, whichever comes first.

The returned model is a plain copy of the input (same layers, names, weight shapes, float structure:
no fake-quantization layer) with the fine-tuned weights, so every converter still builds a
full-integer graph from it. Its float function changes: a labelled transform, like bias correction.
"""

from __future__ import annotations

import time

import numpy as np

from edgepipe.core.errors import ConfigError
from edgepipe.quantize.keras_graph import copy_model, functional_models, graph_of
from edgepipe.quantize.keras_taps import QMAX, channel_axes, weighted_layers

# lr: on elpv-xception (Xception, 20 M parameters) Adam at 1e-5 raised the QAT loss within 6 steps on the
# calibration images and 1e-6 lowered it; the 71-pixel tiny test model needs 1e-5 (tests/test_qat.py)
DEFAULTS = {"steps": 200, "batch": 8, "lr": 1e-6, "max_seconds": 1200.0, "loss": "mse", "weights": True,
            "seed": 0, "eval_images": 64}
PASS_THROUGH = ("MaxPooling2D", "MaxPooling1D", "Reshape", "Flatten", "Dropout", "InputLayer")
FUSED_ACTIVATIONS = ("relu", "relu6")
CONVS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense")


def _layer_classes():
    """The fake-quantization layers (defined lazily: keras is a heavy import)."""
    import keras
    import tensorflow as tf

    class FakeQuant(keras.layers.Layer):
        """Identity while observing (records the global min / max), 8-bit fake quantization after."""

        def __init__(self, **kw):
            super().__init__(trainable=False, **kw)
            self.observing = True

        def build(self, input_shape):
            self.lo = self.add_weight(shape=(), initializer="zeros", trainable=False, name="lo")
            self.hi = self.add_weight(shape=(), initializer="zeros", trainable=False, name="hi")

        def call(self, x):
            if self.observing:  # read when a tf.function traces: observing and training are separate traces
                self.lo.assign(tf.minimum(self.lo.value, tf.reduce_min(x)))
                self.hi.assign(tf.maximum(self.hi.value, tf.reduce_max(x)))
                return x
            return tf.quantization.fake_quant_with_min_max_vars(x, self.lo.value, self.hi.value, num_bits=8)

        def compute_output_spec(self, x):
            return keras.KerasTensor(x.shape, x.dtype)

    class SeparableFQ(keras.layers.Layer):
        """A SeparableConv2D computed as depthwise -> fake quantization -> pointwise (its own weights)."""

        def __init__(self, conv, fq, **kw):
            super().__init__(**kw)
            self.conv, self.fq = conv, fq

        def build(self, input_shape):  # the wrapped conv is built; FakeQuant has no state
            self.built = True

        def call(self, x):
            c = self.conv
            y = keras.ops.depthwise_conv(x, c.depthwise_kernel, strides=c.strides, padding=c.padding,
                                         data_format=c.data_format, dilation_rate=c.dilation_rate)
            y = keras.ops.conv(self.fq(y), c.pointwise_kernel, strides=1, padding="valid", data_format=c.data_format)
            if c.use_bias:
                y = y + c.bias
            return c.activation(y) if c.activation is not None else y

        def compute_output_spec(self, x):
            return self.conv.compute_output_spec(x)

    return FakeQuant, SeparableFQ


def _readers(model) -> dict[int, list]:
    """id(layer) -> the layers reading its output inside its own graph (nested graphs included)."""
    out = {}
    for m in functional_models(model):
        g = graph_of(m)
        for ly in m.layers:
            out[id(ly)] = [m.get_layer(c) for c in g.consumers.get(ly.name, [])]
    return out


def _is_fused_activation(layer) -> bool:
    return type(layer).__name__ == "Activation" and layer.get_config().get("activation") in FUSED_ACTIVATIONS


def _quantizes_output(layer, readers: list) -> bool:
    """Whether the converters hold `layer`'s output as an int8 tensor (readers: in its own graph)."""
    import keras

    kind = type(layer).__name__
    if kind in PASS_THROUGH or isinstance(layer, keras.Model):
        return False
    if kind in CONVS and readers and all(type(r).__name__ == "BatchNormalization" for r in readers):
        return False  # folded into the BatchNormalization
    if kind == "BatchNormalization" and readers and all(_is_fused_activation(r) for r in readers):
        return False  # conv + BN + ReLU fused: the ReLU's output is the quantized tensor
    return True


def student_of(base):
    """(student model sharing `base`'s layers with fake quantization inserted, its FakeQuant layers)."""
    import keras

    FakeQuant, SeparableFQ = _layer_classes()
    readers = _readers(base)
    fqs = []

    def fq(name):
        fqs.append(FakeQuant(name=name))
        return fqs[-1]

    def call(layer, *args, **kwargs):
        if type(layer).__name__ == "SeparableConv2D" and not kwargs:
            out = SeparableFQ(layer, fq(f"{layer.name}_dw_fq"), name=f"{layer.name}_qat")(*args)
        else:
            out = layer(*args, **kwargs)
        if _quantizes_output(layer, readers.get(id(layer), [])):
            out = fq(f"{layer.name}_fq")(out)
        return out

    student = keras.models.clone_model(base, clone_function=lambda ly: ly, call_function=call, recursive=True)
    return student, fqs


def _kernels(model) -> list[tuple[object, tuple[int, ...]]]:
    """(kernel variable, axes its per-channel max runs over) of every conv / dense layer."""
    out = []
    for _, ly in weighted_layers(model):
        kind = type(ly).__name__
        if kind == "SeparableConv2D":
            out += [(ly.depthwise_kernel, channel_axes("DepthwiseConv2D")),
                    (ly.pointwise_kernel, channel_axes("Pointwise"))]
        else:
            out.append((ly.kernel, channel_axes(kind)))
    return out


def _on_grid_tf(w, axes):
    """keras_taps.on_grid in TensorFlow: per-channel symmetric, max-abs / 127, half away from zero."""
    import tensorflow as tf

    s = tf.reduce_max(tf.abs(w), axis=axes, keepdims=True) / QMAX
    s = tf.where(s > 0, s, tf.ones_like(s))
    x = w / s
    return tf.clip_by_value(tf.sign(x) * tf.floor(tf.abs(x) + 0.5), -QMAX, QMAX) * s


def _loss_fn(kind: str):
    import tensorflow as tf

    if kind == "mse":
        return lambda t, s: tf.reduce_mean(tf.reduce_sum(tf.square(t - s), axis=-1))
    if kind == "kl":
        eps = 1e-7
        return lambda t, s: tf.reduce_mean(tf.reduce_sum(t * (tf.math.log(t + eps) - tf.math.log(s + eps)), axis=-1))
    raise ConfigError(f"QAT loss: expected 'mse' or 'kl'. Received: {kind!r}")


def fine_tune(model, images: np.ndarray, params: dict | None = None):
    """(a fine-tuned plain copy of `model`, info) after QAT distillation on `images` (see the module
    docstring; `params` override DEFAULTS). The input model is not changed."""
    import keras
    import tensorflow as tf

    p = {**DEFAULTS, **(params or {})}
    unknown = sorted(set(p) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"expected QAT parameters among {sorted(DEFAULTS)}. Received: {unknown}")
    if int(p["steps"]) < 1 or int(p["batch"]) < 1 or len(images) < 1:
        raise ConfigError(f"QAT: expected steps >= 1, batch >= 1 and at least one image. "
                         f"Received: steps={p['steps']}, batch={p['batch']}, {len(images)} images")
    loss_fn = _loss_fn(p["loss"])
    t0 = time.perf_counter()
    images = np.asarray(images, dtype=np.float32)
    base = copy_model(model)
    teacher = np.asarray(base.predict(images, batch_size=8, verbose=0), dtype=np.float32)
    student, fqs = student_of(base)
    # one trace for every batch size (the last batch is usually shorter): tracing the student costs ~1 s each
    batches = [tf.TensorSpec((None, *images.shape[1:]), tf.float32)]
    observe = tf.function(lambda x: student(x, training=False), input_signature=batches)
    for i in range(0, len(images), 8):  # calibrate the ranges on the FP32 weights (FakeQuant records)
        observe(tf.constant(images[i : i + 8]))
    for f in fqs:
        f.observing = False
    t_ranges = time.perf_counter() - t0

    kernels = _kernels(base) if p["weights"] else []
    by_path = {v.path: (v, axes) for v, axes in kernels}
    shadows = {path: keras.Variable(np.asarray(v.numpy()), name=path.replace("/", "_") + "_shadow")
               for path, (v, _) in by_path.items()}
    variables = student.trainable_variables
    targets = [shadows.get(v.path, v) for v in variables]  # the optimizer updates the float shadows
    opt = keras.optimizers.Adam(float(p["lr"]))
    opt.build(targets)
    pairs = [(v, shadows[path], axes) for path, (v, axes) in by_path.items()]

    @tf.function(reduce_retracing=True)
    def step(x, t):
        for v, sh, axes in pairs:
            v.assign(_on_grid_tf(sh, axes))
        with tf.GradientTape() as tape:
            loss = loss_fn(t, student(x, training=False))
        opt.apply(tape.gradient(loss, variables), targets)
        return loss

    n_eval = min(int(p["eval_images"]), len(images))

    forward = tf.function(lambda x: student(x, training=False), input_signature=batches)

    def student_loss() -> float:  # on the first n_eval images, grid weights: the QAT objective itself
        for v, sh, axes in pairs:
            v.assign(_on_grid_tf(sh, axes))
        out = [forward(tf.constant(images[i : i + 8])) for i in range(0, n_eval, 8)]
        return float(loss_fn(teacher[:n_eval], tf.concat(out, axis=0))) if out else float("nan")

    loss_before = student_loss()
    rng = np.random.default_rng(int(p["seed"]))
    batch = min(int(p["batch"]), len(images))
    order, pos, losses, steps = rng.permutation(len(images)), 0, [], 0
    while steps < int(p["steps"]) and time.perf_counter() - t0 < float(p["max_seconds"]):
        if pos + batch > len(order):
            order, pos = np.concatenate([order[pos:], rng.permutation(len(images))]), 0
        idx = order[pos : pos + batch]
        pos += batch
        losses.append(float(step(tf.constant(images[idx]), tf.constant(teacher[idx]))))
        steps += 1
    loss_after = student_loss()
    for v, sh, _ in pairs:  # the returned model holds the float weights, not their grid values
        v.assign(sh.value)
    info = {"steps": steps, "epochs": steps * batch / len(images), "images": len(images), "batch": batch,
            "lr": float(p["lr"]), "loss": p["loss"], "weights_fake_quantized": bool(p["weights"]),
            "fake_quant_tensors": len(fqs),
            "student_loss_before": loss_before, "student_loss_after": loss_after, "eval_images": n_eval,
            "loss_first": losses[0] if losses else None,
            "loss_last": float(np.mean(losses[-max(1, len(losses) // 10):])) if losses else None,
            "seconds_ranges": round(t_ranges, 1), "seconds": round(time.perf_counter() - t0, 1),
            "losses": [round(x, 8) for x in losses]}
    return base, info
