"""Bias correction for the converters without one (TFLite, ONNX Runtime), folded into the Keras model.

Rounding a kernel to the converters' per-channel INT8 grid (keras_taps.grid) shifts each output
channel's mean: E[conv(x, W_q)] - E[conv(x, W)] = mean over calibration pixels of conv(x, W_q - W),
computed exactly (padding included) on the FP32 inputs of every layer. A SeparableConv2D shifts through
both halves: P_q^T mean(dw(x, D_q - D)) + (P_q - P)^T mean(dw(x, D)). The shift is subtracted where
the converter will fold it into the layer's bias: the layer's own bias, or, for the bias-free convs
of Xception, the following BatchNormalization's moving mean (BN(y + d) with mean + d is BN(y)).

The float model changes (by the expected rounding shift, a small bias per channel), so this is a
labelled transform, not a function-preserving one: the INT8 model built from it is closer to the
original float model, which is the point. NNCF has its own (fast / full) bias correction.
"""

from __future__ import annotations

import numpy as np

from edgepipe.quantize.keras_graph import copy_model, functional_models, graph_of, layers_by_path
from edgepipe.quantize.keras_taps import layer_inputs, on_grid, weighted_layers


def _conv(layer, x, kernel):
    import keras

    kind = type(layer).__name__
    if kind == "Dense":
        return keras.ops.matmul(x, kernel)
    kw = {"strides": layer.strides, "padding": layer.padding, "data_format": layer.data_format,
          "dilation_rate": layer.dilation_rate}
    if kind == "DepthwiseConv2D":
        return keras.ops.depthwise_conv(x, kernel, **kw)
    return keras.ops.conv(x, kernel, **kw)


def _mean_channels(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v.reshape(-1, v.shape[-1]).mean(axis=0)


def output_shifts(model, images: np.ndarray, batch: int = 8) -> dict[str, np.ndarray]:
    """Per weighted layer (path): the mean per-channel output shift its grid rounding causes."""
    import keras

    layers = dict(weighted_layers(model))
    grids = {}
    for path, ly in layers.items():
        kind = type(ly).__name__
        w = ly.get_weights()
        if kind == "SeparableConv2D":
            grids[path] = (on_grid(w[0], "DepthwiseConv2D"), on_grid(w[1], "Pointwise"))
        else:
            grids[path] = (on_grid(w[0], kind),)
    sums = {p: None for p in layers}
    n = 0
    for inputs in layer_inputs(model, images, batch):
        n_b = None
        for path, x in inputs.items():
            ly = layers[path]
            w = ly.get_weights()
            if type(ly).__name__ == "SeparableConv2D":
                dq, pq = grids[path]
                kw = {"strides": ly.strides, "padding": ly.padding, "data_format": ly.data_format,
                      "dilation_rate": ly.dilation_rate}
                d_err = _mean_channels(keras.ops.depthwise_conv(x, dq - w[0], **kw))
                d_mean = _mean_channels(keras.ops.depthwise_conv(x, w[0], **kw))
                p_q, p = pq.reshape(pq.shape[2], -1), w[1].reshape(w[1].shape[2], -1)
                shift = p_q.T.astype(np.float64) @ d_err + (p_q - p).T.astype(np.float64) @ d_mean
            else:
                shift = _mean_channels(_conv(ly, x, grids[path][0] - w[0]))
            sums[path] = shift * len(x) if sums[path] is None else sums[path] + shift * len(x)
            n_b = len(x)
        n += n_b or 0
    return {p: s / n for p, s in sums.items() if s is not None}


def _bias_sink(model, path: str):
    """(how, layer) where a shift of `path`'s output can be folded: its bias, or the BN reading it."""
    layers = layers_by_path(model)
    layer = layers[path]
    if getattr(layer, "use_bias", False):
        return "bias", layer
    graph_model = next(m for m in functional_models(model) if any(ly is layer for ly in m.layers))
    users = graph_of(graph_model).consumers.get(layer.name, [])
    if len(users) == 1:
        bn = graph_model.get_layer(users[0])
        if type(bn).__name__ == "BatchNormalization":
            return "bn", bn
    return None, None


def correct_weight_bias(model, images: np.ndarray, batch: int = 8):
    """A copy of `model` whose biases absorb the expected output shift of INT8 weight rounding, and a
    report (per layer: the shift's size relative to the output's channel std, where it went)."""
    new = copy_model(model)
    shifts = output_shifts(new, images, batch)
    report = {"layers": [], "skipped": []}
    for path, shift in shifts.items():
        how, sink = _bias_sink(new, path)
        if sink is None:
            report["skipped"].append({"layer": path, "why": "no bias and no BatchNormalization after it"})
            continue
        w = sink.get_weights()
        if how == "bias":
            w[-1] = (w[-1] - shift).astype(w[-1].dtype)
        else:  # gamma, beta, moving_mean, moving_variance (without gamma/beta: mean is index 0)
            i = len(w) - 2
            w[i] = (w[i] + shift).astype(w[i].dtype)
        sink.set_weights(w)
        report["layers"].append({"layer": path, "into": f"{how}:{sink.name}",
                                 "max_abs_shift": float(np.abs(shift).max()),
                                 "mean_abs_shift": float(np.abs(shift).mean())})
    report["n_corrected"] = len(report["layers"])
    return new, report
