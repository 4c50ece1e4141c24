"""Residual-stream equalization: a function-preserving per-channel rescaling of Xception's residual adds.

In Xception every residual `Add` (entry flow, the 728-channel middle flow, exit flow) joins branches
that end in a BatchNormalization (possibly followed by a MaxPooling2D), and its output is read only by
a ReLU that feeds convolutions, by a convolution directly (the strided 1x1 shortcut, the exit
SeparableConv), or by the next `Add` (the identity shortcut of the middle flow). A *segment* is a set
of adds linked by identity shortcuts (the middle flow is one segment of nine adds; each entry/exit
add is a segment of its own). Scaling channel c of every tensor of a segment by s_c > 0:

- is produced by scaling the BN's gamma and beta of every branch that ends in the segment's adds
  (max-pooling commutes with a positive per-channel scale, an identity shortcut carries it);
- passes through each reading ReLU (relu(s x) = s relu(x) for s > 0);
- is undone in every reading convolution by dividing its kernel's input channel c by s_c.

So the float function is unchanged (up to rounding) and the converters, which quantize each stream
tensor (the adds' outputs and the ReLU outputs) *per tensor*, see channels whose ranges have been
evened out: with r_c the channel's max |x| on calibration images, s_c = r_c ** -alpha (geometric mean
1, clamped to [1/max_scale, max_scale]); alpha = 1 gives every channel the same range (at every add
of a segment at once, when the channels' relative ranges agree between adds, which is what the
per-add normalisation below averages over). The weights absorbing 1/s_c are quantized per output
channel (BN folds into the branch's last pointwise conv; depthwise kernels are per channel), so
their grids do not change, except the 1x1 shortcut convs reading a stream, whose rows get rescaled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgepipe.quantize.keras_graph import copy_model, functional_models, graph_of

READERS = ("SeparableConv2D", "DepthwiseConv2D", "Conv2D")


@dataclass
class Segment:
    model: str  # the functional (sub)model the adds live in
    adds: list[str]  # in graph order
    producers: list[str] = field(default_factory=list)  # BN layers whose gamma/beta get * s
    readers: list[str] = field(default_factory=list)  # conv layers whose input channels get / s


def _relu_plain(layer) -> bool:
    kind = type(layer).__name__
    if kind == "Activation":
        return layer.get_config().get("activation") == "relu"
    if kind == "ReLU":
        c = layer.get_config()
        return c.get("max_value") is None and not c.get("negative_slope") and not c.get("threshold")
    return False


def _producer_bn(m, g, name: str, add: str) -> str | None:
    """The BN a branch ends in (through at most one MaxPooling2D), when that path feeds only `add`."""
    layer = m.get_layer(name)
    nxt = add
    if type(layer).__name__ == "MaxPooling2D":
        if g.consumers.get(name, []) != [nxt]:
            return None
        nxt = name
        prods = g.producers[name]
        if len(prods) != 1:
            return None
        layer = m.get_layer(prods[0])
    if type(layer).__name__ != "BatchNormalization" or not (layer.scale and layer.center):
        return None
    if g.consumers.get(layer.name, []) != [nxt] or g.calls[layer.name] != 1:
        return None
    return layer.name


def find_segments(model) -> tuple[list[Segment], list[dict]]:
    """Every residual segment that can be rescaled, and the adds that cannot (with why)."""
    segments, skipped = [], []
    for m in functional_models(model):
        g = graph_of(m)
        order = [ly.name for ly in m.layers]
        adds = [n for n in order if type(m.get_layer(n)).__name__ == "Add"]
        root = {a: a for a in adds}
        for a in adds:  # identity shortcuts: an add reading another add directly (graph order)
            for p in g.producers[a]:
                if p in root:
                    old, new = root[a], root[p]
                    root = {k: new if v == old else v for k, v in root.items()}
        groups: dict[str, list[str]] = {}
        for a in adds:
            groups.setdefault(root[a], []).append(a)
        for members in groups.values():
            seg, why = _check_segment(m, g, members)
            if seg is None:
                skipped.append({"adds": members, "why": why})
            else:
                segments.append(seg)
    return segments, skipped


def _check_segment(m, g, adds: list[str]) -> tuple[Segment | None, str]:
    seg = Segment(m.name, adds)
    members = set(adds)
    for a in adds:
        if a in g.outputs or g.calls[a] != 1:
            return None, f"{a}: a model output or a shared layer"
        for p in g.producers[a]:
            if p in members:
                continue
            bn = _producer_bn(m, g, p, a)
            if bn is None:
                return None, (f"{a}: input {p} is not a BatchNormalization (through at most one max-pool) "
                              "feeding only it")
            seg.producers.append(bn)
        for c in g.consumers.get(a, []):
            if c in members:
                continue
            layer = m.get_layer(c)
            kind = type(layer).__name__
            if kind in READERS:
                readers = [c]
            elif _relu_plain(layer):
                readers = g.consumers.get(c, [])
                if not readers or any(type(m.get_layer(r)).__name__ not in READERS for r in readers):
                    return None, f"{a}: ReLU {c} feeds a non-conv layer"
                if c in g.outputs:
                    return None, f"{a}: ReLU {c} is a model output"
            else:
                return None, f"{a}: read by {kind} {c} (expected ReLU, a convolution or the next add)"
            for r in readers:
                rl = m.get_layer(r)
                if type(rl).__name__ == "Conv2D" and rl.get_config().get("groups", 1) != 1:
                    return None, f"{a}: grouped conv reader {r}"
                if g.calls[r] != 1:
                    return None, f"{a}: shared reader {r}"
            seg.readers.extend(readers)
    return seg, ""


# ---- statistics ----------------------------------------------------------------------------
def _submodel_input(model, sub_name: str, images: np.ndarray) -> np.ndarray:
    """The input the nested model `sub_name` sees for `images` (the images themselves at top level)."""
    import keras

    if sub_name == model.name:
        return images
    for m in functional_models(model):
        names = [ly.name for ly in m.layers]
        if sub_name in names:
            g = graph_of(m)
            prods = g.producers[sub_name]
            if len(prods) != 1:
                raise ValueError(f"nested model {sub_name!r}: expected a single-input model. Received: {prods}")
            prod = m.get_layer(prods[0])
            if type(prod).__name__ == "InputLayer":
                return _submodel_input(model, m.name, images)
            x = _submodel_input(model, m.name, images)
            return np.asarray(keras.Model(m.inputs, prod.output).predict(x, batch_size=8, verbose=0))
    raise ValueError(f"expected a nested model named {sub_name!r}. Received: none in {model.name!r}")


def add_outputs(model, seg: Segment, images: np.ndarray, batch: int = 8):
    """Yield, per batch of images, the list of the segment's add outputs (NHWC arrays)."""
    import keras

    sub = next(m for m in functional_models(model) if m.name == seg.model)
    x = _submodel_input(model, seg.model, images)
    tap = keras.Model(sub.inputs, [sub.get_layer(a).output for a in seg.adds])
    for i in range(0, len(x), batch):
        out = tap(x[i : i + batch], training=False)
        yield [np.asarray(v) for v in (out if isinstance(out, list | tuple) else [out])]


def channel_ranges(model, seg: Segment, images: np.ndarray) -> np.ndarray:
    """(2, adds, channels): per channel of every add output, its largest positive value and its
    largest negative magnitude (what an asymmetric per-tensor min/max calibrator sees)."""
    r = None
    for outs in add_outputs(model, seg, images):
        pos = np.stack([np.maximum(o, 0).max(axis=(0, 1, 2)) for o in outs]).astype(np.float64)
        neg = np.stack([np.maximum(-o, 0).max(axis=(0, 1, 2)) for o in outs]).astype(np.float64)
        cur = np.stack([pos, neg])
        r = cur if r is None else np.maximum(r, cur)
    return r


def _per_add_optimum(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """The scales minimising one add output's noise: with P = max s b and N = max s a split as t : 1 - t,
    s_c = 1 / max(b_c / t, a_c / (1 - t)), the split t searched on a grid."""
    best, best_f = None, np.inf
    for t in np.linspace(0.02, 0.98, 49):
        m = np.maximum(pos / t, neg / (1 - t))
        live = m > 0
        f = float(np.sum(m[live] ** 2))
        if f < best_f:
            best, best_f = np.where(live, 1.0 / np.where(live, m, 1.0), 0.0), f
    return best


def optimal_log_scales(ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log s_opt, live channels): the per-add optimal scales combined by a geometric mean over the
    segment's adds, geometric mean 1 over live channels (dead channels: log s = 0)."""
    live = (ranges.max(axis=0) > 0).all(axis=0)
    logs = [np.log(np.where(live, np.maximum(_per_add_optimum(ranges[0, k], ranges[1, k]), 1e-30), 1.0))
            for k in range(ranges.shape[1])]
    log_opt = np.mean(logs, axis=0)
    log_opt[live] -= log_opt[live].mean()
    log_opt[~live] = 0.0
    return log_opt, live


def blend(log_opt: np.ndarray, alpha: float, max_scale: float) -> np.ndarray:
    """s_opt ** alpha, clamped to [1/max_scale, max_scale] (alpha 0: no rescaling)."""
    return np.clip(np.exp(alpha * log_opt), 1.0 / max_scale, max_scale)


def measured_noise(model, seg: Segment, fit: np.ndarray, held: np.ndarray, candidates: dict) -> dict:
    """Per candidate scale vector: the relative noise (dB, mean over adds of noise / signal power) that
    per-tensor asymmetric int8 adds to the segment's add outputs and the ReLU outputs reading them, on
    `held` images with the min/max ranges a calibrator records on `fit` images (so range overflow on
    unseen images, clipped, counts), in the stream's original units."""
    ranges = channel_ranges(model, seg, fit)
    k_adds = len(seg.adds)
    sig = {a: np.zeros(k_adds) for a in candidates}
    err = {a: np.zeros(k_adds) for a in candidates}
    for outs in add_outputs(model, seg, held):
        for k, o in enumerate(outs):
            o = o.astype(np.float64)
            for a, s in candidates.items():
                hi, lo = float((ranges[0, k] * s).max()), -float((ranges[1, k] * s).max())
                x = o * s
                for lo_, hi_, v in ((lo, hi, x), (0.0, hi, np.maximum(x, 0))):
                    step = (hi_ - lo_) / 255 or 1.0
                    q = np.clip(np.round((v - lo_) / step), 0, 255) * step + lo_
                    err[a][k] += float((((q - v) / s) ** 2).sum())
                    sig[a][k] += float(((v / s) ** 2).sum())
    return {a: float(10 * np.log10(np.mean(err[a] / np.maximum(sig[a], 1e-30)))) for a in candidates}


def apply_scales(model, seg: Segment, s: np.ndarray) -> None:
    """In place: BN producers * s, readers' input channels / s (exact in real arithmetic)."""
    sub = next(m for m in functional_models(model) if m.name == seg.model)
    for name in seg.producers:
        bn = sub.get_layer(name)
        w = bn.get_weights()  # gamma, beta, moving_mean, moving_variance
        w[0] = (w[0] * s).astype(w[0].dtype)
        w[1] = (w[1] * s).astype(w[1].dtype)
        bn.set_weights(w)
    for name in seg.readers:
        layer = sub.get_layer(name)
        w = layer.get_weights()
        w[0] = (w[0] / s.reshape(1, 1, -1, 1)).astype(w[0].dtype)  # (kh, kw, cin, dm|cout)
        layer.set_weights(w)


def spread(r: np.ndarray) -> float:
    live = r[r > 0]
    return float(live.max() / np.median(live)) if live.size else 1.0


def equalize_residual_stream(model, images: np.ndarray, max_scale: float = 16.0,
                             alphas=(0.0, 0.25, 0.5, 0.75, 1.0)):
    """A rescaled copy of `model` (same architecture, layer names and float function) and a report.

    Per segment, the blend s_opt ** alpha is chosen on the calibration `images` themselves: ranges
    from their first half, the noise measured on their second half (`measured_noise`); alpha 0 (no
    rescaling) is a candidate, so a segment is left alone when rescaling does not help on unseen
    images. The chosen alpha is then applied with s_opt from all the images."""
    if not alphas or any(not 0.0 <= a <= 1.0 for a in alphas):
        raise ValueError(f"alphas: expected values in [0, 1]. Received: {alphas}")
    if max_scale < 1.0:
        raise ValueError(f"max_scale: expected >= 1. Received: {max_scale}")
    if len(images) < 4:
        raise ValueError(f"images: expected at least 4 calibration images. Received: {len(images)}")
    new = copy_model(model)
    segments, skipped = find_segments(new)
    report = {"segments": [], "skipped": skipped, "max_scale": max_scale}
    half = len(images) // 2
    for seg in segments:
        log_fit, _ = optimal_log_scales(channel_ranges(new, seg, images[:half]))
        noise = measured_noise(new, seg, images[:half], images[half:],
                               {a: blend(log_fit, a, max_scale) for a in alphas})
        alpha = min(alphas, key=lambda a: (noise[a], a))
        r = channel_ranges(new, seg, images)
        s = blend(optimal_log_scales(r)[0], alpha, max_scale)
        apply_scales(new, seg, s)
        both = r.max(axis=0)
        report["segments"].append({
            "model": seg.model, "adds": seg.adds, "producers": seg.producers, "readers": seg.readers,
            "alpha": alpha, "held_out_noise_db": {str(a): v for a, v in noise.items()},
            "spread_before": [spread(x) for x in both], "spread_after": [spread(x * s) for x in both],
            "max_abs_log_scale": float(np.abs(np.log(s)).max()), "scales": s.tolist()})
    report["n_segments"] = len(segments)
    return new, report


def _minmax(model, seg: Segment, images: np.ndarray) -> np.ndarray:
    """(adds, 2) global min and max of every add output (what a min/max calibrator records)."""
    mm = None
    for outs in add_outputs(model, seg, images):
        cur = np.array([[min(float(o.min()), 0.0), max(float(o.max()), 0.0)] for o in outs])
        mm = cur if mm is None else np.stack([np.minimum(mm[:, 0], cur[:, 0]), np.maximum(mm[:, 1], cur[:, 1])], 1)
    return mm


def stream_snr_db(model, calib: np.ndarray, images: np.ndarray, scales: dict | None = None,
                  bits: int = 8) -> dict[str, float]:
    """Per add of every segment: SNR (dB) of per-tensor asymmetric int8 fake quantization of its output
    on `images`, with the min/max range a calibrator records on `calib`. The error is taken in the
    stream's original units (divided by the segment's scale vector `scales[first add]` when given),
    which is what the next layers see once the readers undo the scale."""
    out = {}
    for seg in find_segments(model)[0]:
        mm = _minmax(model, seg, calib)
        s = (scales or {}).get(seg.adds[0])
        s = np.ones(1) if s is None else np.asarray(s, dtype=np.float64)
        sig = np.zeros(len(seg.adds))
        err = np.zeros(len(seg.adds))
        for outs in add_outputs(model, seg, images):
            for k, o in enumerate(outs):
                lo, hi = mm[k]
                step = (hi - lo) / (2 ** bits - 1) or 1.0
                q = np.clip(np.round((o - lo) / step), 0, 2 ** bits - 1) * step + lo
                sig[k] += float(((o / s) ** 2).sum())
                err[k] += float((((q - o) / s) ** 2).sum())
        for k, a in enumerate(seg.adds):
            out[f"{seg.model}/{a}"] = float(10 * np.log10(sig[k] / err[k])) if err[k] > 0 else 999.0
    return out
