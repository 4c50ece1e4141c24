"""Calibration-time access to a Keras model's intermediate tensors, nested models included, and the
per-channel symmetric INT8 weight grid every converter edgepipe uses.

- `layer_inputs(model, paths, images)`: per batch, the input of each named layer (path
  `sub/layer` for a layer of a nested functional model), computed by one tap model per graph;
- `grid(kernel, kind)`: TFLite, NNCF (8-bit, no overflow fix) and ONNX Runtime (QInt8, symmetric)
  all quantize conv / dense weights per output channel, symmetric, scale = max |w| / 127, values
  in [-127, 127] (the BatchNorm folded in first, which scales each output channel and so leaves
  that grid's integers unchanged). A kernel already on that grid is reproduced exactly by them.
"""

from __future__ import annotations

import numpy as np

from edgepipe.quantize.keras_graph import functional_models, graph_of, is_functional, layers_by_path

WEIGHTED = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense")
QMAX = 127


def weighted_layers(model) -> list[tuple[str, object]]:
    """(path, layer) of every conv / dense layer (path `sub/layer` inside a nested model)."""
    return [(p, ly) for p, ly in layers_by_path(model).items() if type(ly).__name__ in WEIGHTED]


def _prefixes(model) -> dict[int, str]:
    out = {id(model): ""}
    out.update({id(ly): p + "/" for p, ly in layers_by_path(model).items() if is_functional(ly)})
    return out


def submodel_input(model, sub, images: np.ndarray) -> np.ndarray:
    """What the nested functional model `sub` receives for `images` (the images at top level)."""
    import keras

    if sub is model:
        return images
    for m in functional_models(model):
        if any(ly is sub for ly in m.layers):
            g = graph_of(m)
            prods = g.producers[sub.name]
            if len(prods) != 1:
                raise ValueError(f"nested model {sub.name!r}: expected a single-input model. Received: {prods}")
            x = submodel_input(model, m, images)
            prod = m.get_layer(prods[0])
            if type(prod).__name__ == "InputLayer":
                return x
            return np.asarray(keras.Model(m.inputs, prod.output).predict(x, batch_size=8, verbose=0))
    raise ValueError(f"expected {sub.name!r} nested in {model.name!r}. Received: not found")


def layer_inputs(model, images: np.ndarray, batch: int = 8):
    """Yield, per batch of images, {path: input of that weighted layer} for every weighted layer."""
    import keras

    graphs = []
    prefixes = _prefixes(model)
    for m in functional_models(model):
        prefix = prefixes[id(m)]
        layers = [ly for ly in m.layers if type(ly).__name__ in WEIGHTED]
        if layers:
            tap = keras.Model(m.inputs, [ly.input for ly in layers])
            graphs.append((m, prefix, layers, tap))
    feeds = {id(m): submodel_input(model, m, images) for m, *_ in graphs}
    for i in range(0, len(images), batch):
        out = {}
        for m, prefix, layers, tap in graphs:
            vals = tap(feeds[id(m)][i : i + batch], training=False)
            vals = vals if isinstance(vals, list | tuple) else [vals]
            out.update({prefix + ly.name: np.asarray(v) for ly, v in zip(layers, vals, strict=True)})
        yield out


def _round(x: np.ndarray) -> np.ndarray:
    """Round half away from zero (TFLite's and ONNX Runtime's rounding of weights)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def channel_axes(kind: str) -> tuple[int, ...]:
    """The axes a kernel's per-channel max runs over (the rest index the quantization channel)."""
    return {"Conv2D": (0, 1, 2), "Pointwise": (0, 1, 2), "DepthwiseConv2D": (0, 1), "Dense": (0,)}[kind]


def grid(kernel: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(integers in [-127, 127], per-channel scale broadcastable to the kernel) of the converters' grid."""
    k = np.asarray(kernel, dtype=np.float64)
    scale = np.abs(k).max(axis=channel_axes(kind), keepdims=True) / QMAX
    safe = np.where(scale > 0, scale, 1.0)
    return np.clip(_round(k / safe), -QMAX, QMAX), safe


def on_grid(kernel: np.ndarray, kind: str) -> np.ndarray:
    """The kernel rounded to the converters' grid (what they compute with), float32."""
    q, s = grid(kernel, kind)
    return (q * s).astype(np.float32)
