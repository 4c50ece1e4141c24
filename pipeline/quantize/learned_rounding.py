"""Learned weight rounding at the Keras level, onto the exact grid the converters use (GPTQ-style).

Rounding each weight to its nearest grid point (what every converter does) minimises the weight error,
not the layer's output error. For a layer computing y = W^T x, the output error of a rounding W_q is
(W - W_q)^T H (W - W_q) per output channel with H = E[x x^T] over calibration inputs; GPTQ (Frantar
et al. 2022, the closed-form descendant of AdaRound's objective) rounds the input dimensions one at
a time and moves the not-yet-rounded weights of the same output channel to cancel the error so far,
using the Cholesky factor of H^-1. Here:

- the grid is keras_taps.grid: per output channel, symmetric, scale = max |w| / 127, integers in
  [-127, 127]; every channel keeps one weight at +-127 (its scale's anchor), so TFLite, NNCF (8-bit,
  no overflow fix) and ONNX Runtime (QInt8 symmetric) recompute the same scale from the new kernel
  and their own rounding reproduces the learned integers (BatchNorm folding scales a whole output
  channel, which leaves that grid's integers unchanged);
- H is accumulated from the FP32 inputs of every layer on the calibration images, in one pass:
  im2col patches for Conv2D, pixels for the pointwise half of a SeparableConv2D (its depthwise
  output), 3x3 patches per channel for the depthwise half (one 9x9 H per channel);
- columns are rounded in decreasing order of H's diagonal ("act order"), H damped by 1% of its mean
  diagonal.

The returned model computes with weights already on the grid: a clearly labelled transform (its float
function changes by the INT8 weight rounding, chosen to change the layer outputs least).
"""

from __future__ import annotations

import numpy as np

from edgepipe.quantize.keras_graph import copy_model
from edgepipe.quantize.keras_taps import QMAX, grid, layer_inputs, weighted_layers

DAMP = 0.01


def gptq(w: np.ndarray, h: np.ndarray, scale: np.ndarray, damp: float = DAMP, block: int = 128) -> np.ndarray:
    """Integers (rows = output channels, cols = inputs) for W (rows x cols) given H (cols x cols) and the
    per-row scale: GPTQ with act order, clipped to [-127, 127], each row keeping a +-127 anchor."""
    w = np.array(w, dtype=np.float64)
    h = np.array(h, dtype=np.float64)
    rows, cols = w.shape
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    order = np.argsort(-np.diag(h), kind="stable")
    inv_order = np.argsort(order)
    w, h = w[:, order], h[np.ix_(order, order)]
    h[np.diag_indices(cols)] += damp * float(np.mean(np.diag(h)))
    u = np.linalg.cholesky(np.linalg.inv(h)).T  # upper: H^-1 = U^T U
    s = scale.reshape(rows, 1)
    q = np.zeros_like(w)
    for i in range(0, cols, block):
        j2 = min(i + block, cols)
        wb = w[:, i:j2].copy()
        err = np.zeros_like(wb)
        for j in range(j2 - i):
            col = wb[:, j]
            qj = np.clip(np.sign(col / s[:, 0]) * np.floor(np.abs(col / s[:, 0]) + 0.5), -QMAX, QMAX)
            q[:, i + j] = qj
            e = (col - qj * s[:, 0]) / u[i + j, i + j]
            wb[:, j:] -= np.outer(e, u[i + j, i + j : j2])
            err[:, j] = e
        w[:, j2:] -= err @ u[i:j2, j2:]
    return q[:, inv_order]


def _anchor(q: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Rows whose largest |integer| fell below 127 get their original largest weight back at +-127 (the
    converters derive the scale from max |w|; without the anchor they would re-grid the row)."""
    q = q.copy()
    low = np.abs(q).max(axis=1) < QMAX
    idx = np.abs(original).argmax(axis=1)
    r = np.flatnonzero(low)
    q[r, idx[r]] = np.sign(original[r, idx[r]]) * QMAX
    return q


class _Hessians:
    """Running sums of x x^T per layer (and per depthwise channel)."""

    def __init__(self):
        self.h: dict[str, np.ndarray] = {}
        self.n: dict[str, int] = {}

    def add(self, key: str, x: np.ndarray, per_channel: bool = False) -> None:
        x = x.astype(np.float64)
        part = np.einsum("pic,pjc->cij", x, x) if per_channel else x.T @ x
        self.h[key] = part if key not in self.h else self.h[key] + part
        self.n[key] = self.n.get(key, 0) + len(x)

    def get(self, key: str) -> np.ndarray:
        return self.h[key] / max(self.n[key], 1)


def _patches(x, layer, size) -> np.ndarray:
    """(positions, kh*kw*cin) im2col rows in the kernel's (kh, kw, cin) order."""
    import keras

    p = keras.ops.image.extract_patches(x, size, strides=layer.strides, dilation_rate=layer.dilation_rate,
                                        padding=layer.padding)
    p = np.asarray(p)
    return p.reshape(-1, p.shape[-1])


def collect(model, images: np.ndarray, batch: int = 4) -> _Hessians:
    import keras

    hs = _Hessians()
    layers = dict(weighted_layers(model))
    for inputs in layer_inputs(model, images, batch):
        for path, x in inputs.items():
            ly = layers[path]
            kind = type(ly).__name__
            if kind == "Dense":
                hs.add(path, np.asarray(x).reshape(-1, x.shape[-1]))
                continue
            k = ly.get_weights()[0]
            kh, kw = k.shape[:2]
            if kind == "Conv2D":
                hs.add(path, _patches(x, ly, (kh, kw)))
                continue
            # depthwise half (SeparableConv2D or DepthwiseConv2D): per-channel 3x3 patches
            p = _patches(x, ly, (kh, kw))
            hs.add(path + ":dw", p.reshape(len(p), kh * kw, -1), per_channel=True)
            if kind == "SeparableConv2D":
                d = keras.ops.depthwise_conv(x, k, strides=ly.strides, padding=ly.padding,
                                             data_format=ly.data_format, dilation_rate=ly.dilation_rate)
                d = np.asarray(d)
                hs.add(path + ":pw", d.reshape(-1, d.shape[-1]))
    return hs


def _round_dense_like(kernel2d: np.ndarray, h: np.ndarray) -> np.ndarray:
    """kernel (inputs, outputs) -> kernel on the grid, GPTQ-rounded (one H for every output)."""
    q0, s = grid(kernel2d, "Dense")  # per output column, scale shape (1, outputs)
    w = kernel2d.T
    q = _anchor(gptq(w, h, s.reshape(-1)), w)
    return (q * s.reshape(-1, 1)).T.astype(np.float32)


def _round_depthwise(kernel: np.ndarray, h: np.ndarray) -> np.ndarray:
    """kernel (kh, kw, cin, dm), h (cin, kh*kw, kh*kw) -> kernel on the grid, per channel GPTQ."""
    kh, kw, cin, dm = kernel.shape
    _, s = grid(kernel, "DepthwiseConv2D")  # (1, 1, cin, dm)
    out = np.empty_like(kernel, dtype=np.float32)
    for c in range(cin):
        w = kernel[:, :, c, :].reshape(kh * kw, dm).T  # (dm, taps)
        sc = s[0, 0, c, :]
        q = _anchor(gptq(w, h[c], sc), w)
        out[:, :, c, :] = (q * sc.reshape(-1, 1)).T.reshape(kh, kw, dm)
    return out


def learn_rounding(model, images: np.ndarray, batch: int = 4):
    """A copy of `model` with every conv / dense kernel on the converters' INT8 grid, rounded to change
    its layer's output least on `images` (calibration); and a report of the output error it saves."""
    new = copy_model(model)
    hs = collect(new, images, batch)
    report = {"layers": []}
    for path, ly in weighted_layers(new):
        kind = type(ly).__name__
        w = ly.get_weights()
        before_after = []
        if kind == "Dense":
            new_k = _round_dense_like(w[0], hs.get(path))
            before_after.append(_gain(w[0], new_k, hs.get(path), "Dense"))
            w[0] = new_k
        elif kind == "Conv2D":
            k2 = w[0].reshape(-1, w[0].shape[-1])
            new_k = _round_dense_like(k2, hs.get(path)).reshape(w[0].shape)
            before_after.append(_gain(k2, new_k.reshape(k2.shape), hs.get(path), "Dense"))
            w[0] = new_k
        else:
            w[0] = _round_depthwise(w[0], hs.get(path + ":dw"))
            if kind == "SeparableConv2D":
                p2 = w[1].reshape(w[1].shape[2], w[1].shape[3])
                new_p = _round_dense_like(p2, hs.get(path + ":pw"))
                before_after.append(_gain(p2, new_p, hs.get(path + ":pw"), "Dense"))
                w[1] = new_p.reshape(w[1].shape)
        ly.set_weights(w)
        report["layers"].append({"layer": path, "kind": kind, "output_error_ratio": before_after})
    return new, report


def _gain(w: np.ndarray, learned: np.ndarray, h: np.ndarray, kind: str) -> float:
    """Output error power of the learned rounding over nearest rounding, sum over outputs (x^T H x)."""
    q, s = grid(w, kind)
    near = q * s
    def err(k):
        d = (k - w).astype(np.float64)
        return float(np.einsum("io,ij,jo->", d, h, d))
    e0 = err(near)
    return err(learned) / e0 if e0 > 0 else 1.0
