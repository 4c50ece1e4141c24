"""Function-preserving rescalings of a Keras Xception that make per-tensor INT8 easier.

Two transforms, both exact in float arithmetic (the model's function is unchanged up to
rounding) and both keeping the architecture and every layer name:

1. **Separable activation equalization** (`equalize_separable`). Inside `SeparableConv2D`
   (keras 3: `ops.separable_conv(x, depthwise_kernel (kh,kw,cin,dm), pointwise_kernel
   (1,1,cin*dm,cout))`, then the bias) there is no nonlinearity and no bias between the
   depthwise and the pointwise convolution. TFLite lowers it to DEPTHWISE_CONV_2D + CONV_2D
   and OpenVINO to GroupConvolution + Convolution, and both quantize the intermediate
   tensor *per tensor*. Scaling depthwise output channel c by s_c and pointwise input row c
   by 1/s_c leaves the layer's output unchanged and changes that intermediate's per-channel
   ranges r_c to s_c * r_c. With r_c measured on calibration images (max |.| per channel)
   and the pointwise row range w_c = max_o |P[c, o]|, edgepipe uses
   s_c = (w_c ** (1 - alpha) / r_c ** alpha), normalised to geometric mean 1 and clamped to
   [1/max_scale, max_scale]. alpha = 1 flattens the activation ranges completely
   (s_c = r_target / r_c); alpha = 0.5 splits the imbalance between the activation and the
   pointwise weights (as SmoothQuant does), which keeps small-activation channels from
   being rounded away in the weights instead.

2. **Cross-layer weight equalization** (`cross_layer_equalization`, Nagel et al. 2019, DFQ)
   for per-tensor weight quantization. Valid exactly where a positive-homogeneous function
   sits between two linear layers: relu(s * x) = s * relu(x) for s > 0. In Xception that is
   conv -> BatchNorm -> ReLU -> conv(s). The BatchNorm is accounted for, not removed: its
   output channel i is scaled by s_i through gamma_i and beta_i (mean and variance
   untouched), which is the same as scaling the BN-folded conv weights that the converters
   produce; every consumer's input channel i is divided by s_i. With r1_i the folded
   producer's output-channel weight range and r2_i the consumers' input-channel weight
   range, s_i = sqrt(r2_i / r1_i) makes both sqrt(r1_i * r2_i). It is NOT valid (and not
   applied) across residual adds, max-pooling followed by an add, a ReLU whose input or
   output also feeds anything else, a BN without gamma, ReLU6/clipped activations, or a
   producer whose output feeds more than the BN (then the BN cannot be folded into it).
   The separable-internal pair (depthwise -> pointwise) is always valid; when
   `equalize_separable` is off, cross-layer equalization also balances its weights.

Everything here works on functional models, including nested ones (elpv-xception nests
`keras.applications.Xception` as one layer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgepipe.quantize.keras_graph import Graph, copy_model, functional_models, graph_of, is_functional, layers_by_path

CONV_CONSUMERS = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D")


@dataclass
class EqualizationReport:
    separable: list[dict] = field(default_factory=list)  # per SeparableConv2D: ranges before/after
    cross_layer: list[dict] = field(default_factory=list)  # per BN->ReLU pair equalized
    skipped: list[dict] = field(default_factory=list)  # BN->ReLU sites not equalized, with why

    def as_dict(self) -> dict:
        return {"separable": self.separable, "cross_layer": self.cross_layer, "skipped": self.skipped}


# ---- calibration statistics --------------------------------------------------------------

def depthwise_ranges(model, images: np.ndarray, batch: int = 8) -> dict[str, np.ndarray]:
    """Per-channel max |depthwise output| of every SeparableConv2D, keyed by layer path."""
    stats: dict[str, np.ndarray] = {}
    taps: dict[int, tuple] = {}
    for i in range(0, len(images), batch):
        _accumulate(model, images[i : i + batch], stats, "", taps)
    return stats


def _tap_model(model):
    """(extractor, separable layers, nested models): one model giving every layer input we need."""
    import keras

    seps = [ly for ly in model.layers if type(ly).__name__ == "SeparableConv2D"]
    subs = [ly for ly in model.layers if is_functional(ly)]
    if not seps and not subs:
        return None, seps, subs
    g = graph_of(model)
    taps = [ly.input for ly in seps]
    for sub in subs:
        prods = g.producers[sub.name]
        if len(prods) != 1 or is_functional(model.get_layer(prods[0])) or g.calls[sub.name] != 1:
            raise ValueError(f"nested model {sub.name!r}: expected a single-input model called once")
        taps.append(model.get_layer(prods[0]).output)
    if len(model.inputs) != 1:
        raise ValueError(f"model {model.name!r}: expected a single-input model. Received {len(model.inputs)} inputs")
    return keras.Model(model.inputs[0], taps), seps, subs


def _accumulate(model, x: np.ndarray, stats: dict, prefix: str, cache: dict) -> None:
    import keras

    if id(model) not in cache:
        cache[id(model)] = _tap_model(model)
    extractor, seps, subs = cache[id(model)]
    if extractor is None:
        return
    values = extractor(x, training=False)
    values = values if isinstance(values, list | tuple) else [values]
    for layer, v in zip(seps, values[: len(seps)], strict=True):
        d = keras.ops.depthwise_conv(v, layer.depthwise_kernel, strides=layer.strides, padding=layer.padding,
                                     data_format=layer.data_format, dilation_rate=layer.dilation_rate)
        axes = (0, 2, 3) if layer.data_format == "channels_first" else (0, 1, 2)
        r = np.asarray(keras.ops.max(keras.ops.abs(d), axis=axes), dtype=np.float64)
        key = prefix + layer.name
        stats[key] = np.maximum(stats[key], r) if key in stats else r
    for sub, v in zip(subs, values[len(seps):], strict=True):
        _accumulate(sub, np.asarray(v), stats, f"{prefix}{sub.name}/", cache)


# ---- the transforms ----------------------------------------------------------------------

def separable_scales(act_range: np.ndarray, w_range: np.ndarray, alpha: float, max_scale: float) -> np.ndarray:
    """s_c = w_c^(1-alpha) / r_c^alpha, geometric mean 1, clamped; dead channels keep s_c = 1."""
    live = (act_range > 0) & (w_range > 0)
    s = np.ones_like(act_range, dtype=np.float64)
    if not live.any():
        return s
    s[live] = w_range[live] ** (1.0 - alpha) / act_range[live] ** alpha
    s[live] /= np.exp(np.mean(np.log(s[live])))
    return np.clip(s, 1.0 / max_scale, max_scale)


def spread(r: np.ndarray) -> float:
    """max / median of the live per-channel ranges: how much of the per-tensor INT8 grid the
    typical channel wastes (1 = all channels use the full range)."""
    live = r[r > 0]
    return float(live.max() / np.median(live)) if live.size else 1.0


def _scale_separable(layer, s: np.ndarray) -> None:
    """depthwise output channel c *= s_c, pointwise input row c /= s_c (exact)."""
    w = layer.get_weights()
    dw, pw = w[0], w[1]
    cin, dm = dw.shape[2], dw.shape[3]
    w[0] = (dw * s.reshape(cin, dm)).astype(dw.dtype)
    w[1] = (pw / s.reshape(1, 1, -1, 1)).astype(pw.dtype)
    layer.set_weights(w)


def equalize_separable(model, images: np.ndarray, alpha: float = 0.5, max_scale: float = 100.0,
                       report: EqualizationReport | None = None) -> EqualizationReport:
    """In place: equalize the depthwise->pointwise intermediate of every SeparableConv2D."""
    report = report or EqualizationReport()
    stats = depthwise_ranges(model, images)
    layers = layers_by_path(model)
    for path, r in stats.items():
        layer = layers[path]
        pw = layer.get_weights()[1]
        s = separable_scales(r, np.abs(pw).max(axis=(0, 1, 3)).astype(np.float64), alpha, max_scale)
        _scale_separable(layer, s)
        report.separable.append({"layer": path, "channels": int(r.size), "spread_before": spread(r),
                                 "spread_after": spread(r * s), "max_scale_used": float(np.abs(np.log(s)).max())})
    return report


def _is_plain_relu(layer) -> bool:
    kind = type(layer).__name__
    if kind == "Activation":
        act = layer.get_config().get("activation")
        return act == "relu"
    if kind == "ReLU":
        c = layer.get_config()
        return c.get("max_value") is None and not c.get("negative_slope") and not c.get("threshold")
    return False


def _linear(layer) -> bool:
    return layer.get_config().get("activation", "linear") == "linear"


def _in_channel_range(layer) -> np.ndarray:
    """Per input-channel max |weight| of a consumer (what it multiplies input channel i by)."""
    k = layer.get_weights()[0]  # Conv2D (kh,kw,cin,cout) or depthwise (kh,kw,cin,dm)
    return np.abs(k).max(axis=(0, 1, 3)).astype(np.float64)


def _divide_input(layer, s: np.ndarray) -> None:
    w = layer.get_weights()
    w[0] = (w[0] / s.reshape(1, 1, -1, 1)).astype(w[0].dtype)
    layer.set_weights(w)


def _folded_out_range(producer, bn) -> np.ndarray:
    """Per output-channel max |weight| of the producer after folding the BN into it."""
    k = producer.get_weights()[1 if type(producer).__name__ == "SeparableConv2D" else 0]
    c = bn.get_config()
    mult = np.abs(bn.gamma.numpy()) / np.sqrt(bn.moving_variance.numpy() + c["epsilon"])
    if type(producer).__name__ == "DepthwiseConv2D":
        r = np.abs(k).max(axis=(0, 1)).reshape(-1)
    else:
        r = np.abs(k).max(axis=(0, 1, 2))
    return r.astype(np.float64) * mult


def _bn_relu_sites(model, g: Graph):
    """(producer, bn, relu, consumers, why-not) for every BatchNorm -> plain ReLU in this graph."""
    for bn in model.layers:
        if type(bn).__name__ != "BatchNormalization":
            continue
        cons = g.consumers.get(bn.name, [])
        if len(cons) != 1 or type(model.get_layer(cons[0])).__name__ not in ("Activation", "ReLU"):
            continue  # BN -> add / pooling: no activation between two linear layers here
        relu = model.get_layer(cons[0])
        prods = g.producers[bn.name]
        producer = model.get_layer(prods[0]) if len(prods) == 1 else None
        users = [model.get_layer(n) for n in g.consumers.get(relu.name, [])]
        why = None
        if not _is_plain_relu(relu):
            c = relu.get_config()
            why = (f"activation {c.get('activation', type(relu).__name__)!r} (max_value={c.get('max_value')}) "
                   "is not positive-homogeneous")
        elif producer is None or type(producer).__name__ not in CONV_CONSUMERS or not _linear(producer):
            why = "BN input is not a linear conv (nothing to fold the scale into)"
        elif g.consumers.get(producer.name, []) != [bn.name]:
            why = "conv output feeds more than the BN (BN cannot be folded)"
        elif not bn.scale or bn.get_config()["axis"] not in (-1, 3, [-1], [3]):
            why = "BN without gamma or not over the channel axis"
        elif {bn.name, relu.name, producer.name} & g.outputs:
            why = "a model output"
        elif not users or any(type(u).__name__ not in CONV_CONSUMERS for u in users):
            why = "ReLU output feeds a non-conv layer: " + ", ".join(sorted({type(u).__name__ for u in users}))
        elif any(type(u).__name__ == "Conv2D" and u.get_config().get("groups", 1) != 1 for u in users):
            why = "grouped conv consumer"
        elif any(g.calls[n] != 1 for n in (bn.name, relu.name, producer.name, *[u.name for u in users])):
            why = "a shared layer (called more than once)"
        yield producer, bn, relu, users, why


def _bn_pair_ranges(producer, bn, users) -> tuple[np.ndarray, np.ndarray]:
    return _folded_out_range(producer, bn), np.max([_in_channel_range(u) for u in users], axis=0)


def _sep_pair_ranges(layer) -> tuple[np.ndarray, np.ndarray]:
    dw, pw = layer.get_weights()[:2]
    return (np.abs(dw).max(axis=(0, 1)).reshape(-1).astype(np.float64),
            np.abs(pw).max(axis=(0, 1, 3)).astype(np.float64))


def _balance(r1: np.ndarray, r2: np.ndarray, max_scale: float) -> np.ndarray:
    """s with r1 * s == r2 / s == sqrt(r1 * r2) (dead channels: 1)."""
    live = (r1 > 0) & (r2 > 0)
    s = np.ones_like(r1)
    s[live] = np.sqrt(r2[live] / r1[live])
    return np.clip(s, 1.0 / max_scale, max_scale)


def _imbalance(r1: np.ndarray, r2: np.ndarray) -> float:
    """Median over live channels of max(r1, r2) / min(r1, r2) (1 = balanced)."""
    live = (r1 > 0) & (r2 > 0)
    return float(np.median(np.maximum(r1, r2)[live] / np.minimum(r1, r2)[live])) if live.any() else 1.0


def cross_layer_equalize(model, include_separable_pairs: bool, max_scale: float = 100.0,
                         report: EqualizationReport | None = None, iterations: int = 50,
                         tol: float = 1e-4) -> EqualizationReport:
    """In place: DFQ weight equalization across conv -> BN -> ReLU -> conv(s), see module doc.

    Pairs share layers (a SeparableConv's depthwise kernel is the consumer of one pair and the
    producer of the next), so, as in DFQ, all pairs are balanced repeatedly until no scale
    moves by more than `tol` (relative) or `iterations` passes were made.
    """
    report = report or EqualizationReport()
    pairs = []  # (site name, consumers, ranges(), apply(s))
    for fm in functional_models(model):
        g = graph_of(fm)
        for producer, bn, relu, users, why in _bn_relu_sites(fm, g):
            site = f"{fm.name}:{producer.name if producer is not None else '?'}->{bn.name}->{relu.name}"
            if why:
                report.skipped.append({"site": site, "why": why})
                continue
            pairs.append((site, [u.name for u in users],
                          lambda p=producer, b=bn, us=users: _bn_pair_ranges(p, b, us),
                          lambda s, b=bn, us=users: _scale_bn_pair(b, us, s)))
        if include_separable_pairs:
            for layer in fm.layers:
                if type(layer).__name__ == "SeparableConv2D":
                    pairs.append((f"{fm.name}:{layer.name} (depthwise->pointwise)", [layer.name],
                                  lambda ly=layer: _sep_pair_ranges(ly),
                                  lambda s, ly=layer: _scale_separable(ly, s)))
    before = [_imbalance(*ranges()) for _, _, ranges, _ in pairs]
    passes = 0
    for passes in range(1, iterations + 1):  # noqa: B007 (reported below)
        moved = 0.0
        for _, _, ranges, apply in pairs:
            s = _balance(*ranges(), max_scale)
            apply(s)
            moved = max(moved, float(np.abs(np.log(s)).max()) if s.size else 0.0)
        if moved < tol:
            break
    for (site, users, ranges, _), b in zip(pairs, before, strict=True):
        report.cross_layer.append({"site": site, "consumers": users, "range_ratio_before": b,
                                   "range_ratio_after": _imbalance(*ranges()), "passes": passes})
    return report


def _scale_bn_pair(bn, users, s: np.ndarray) -> None:
    """BN output channel i *= s_i (gamma and beta), every consumer's input channel i /= s_i."""
    w = bn.get_weights()  # gamma, beta, moving_mean, moving_variance (gamma first when scale=True)
    w[0] = (w[0] * s).astype(w[0].dtype)
    if bn.center:
        w[1] = (w[1] * s).astype(w[1].dtype)
    bn.set_weights(w)
    for u in users:
        _divide_input(u, s)


def equalize(model, images: np.ndarray, separable: bool = True, cross_layer: bool = False,
             alpha: float = 0.5, max_scale: float = 100.0):
    """A new model (same architecture and layer names, rescaled weights) and what was done.

    Cross-layer weight equalization runs first (it does not change the depthwise outputs),
    then separable activation equalization on calibration statistics of the result.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha: expected a value in [0, 1]. Received: {alpha}")
    if max_scale < 1.0:
        raise ValueError(f"max_scale: expected >= 1. Received: {max_scale}")
    new = copy_model(model)
    report = EqualizationReport()
    if cross_layer:
        cross_layer_equalize(new, include_separable_pairs=not separable, max_scale=max_scale, report=report)
    if separable:
        equalize_separable(new, images, alpha=alpha, max_scale=max_scale, report=report)
    return new, report


def max_output_diff(a, b, images: np.ndarray, batch: int = 8) -> float:
    """max |a(x) - b(x)| over the images (the float-equivalence check)."""
    worst = 0.0
    for i in range(0, len(images), batch):
        x = images[i : i + batch]
        ya = np.asarray(a(x, training=False), dtype=np.float64)
        yb = np.asarray(b(x, training=False), dtype=np.float64)
        worst = max(worst, float(np.abs(ya - yb).max()))
    return worst
