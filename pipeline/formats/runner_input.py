"""What every host runner's `predict` is fed: one preprocessed HWC float32 image, checked here.

`check_input` is the one shape/dtype/layout check (never a silent reshape or cast); `input_layout`
guesses NCHW from a model's input shape; `image_input_shape` is the (H, W, C) a runner expects.
"""

from __future__ import annotations

import numpy as np

from edgepipe.core.errors import InputError


def check_input(image, want: tuple[int, ...], runtime: str, layout: str = "nhwc") -> np.ndarray:
    """One preprocessed HWC float32 image for a model whose input is `want` (batch first), as a batch of 1.
    Never reshaped or cast: a mismatch is an error naming what was expected and received. The one
    transpose is the explicit `layout="nchw"` a caller chose for a channels-first model (the
    standalone commands do, and say so); the pipeline's runners keep the default and refuse NCHW."""
    dtype = getattr(image, "dtype", type(image).__name__)
    if not isinstance(image, np.ndarray) or image.dtype != np.float32:
        raise InputError(f"{runtime} input: expected a preprocessed float32 image of shape {tuple(want[1:])}. "
                         f"Received: dtype {dtype}")
    x = image[None]
    if layout == "nchw" and x.ndim == 4:
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if x.shape != tuple(want):
        nchw = len(want) == 4 and want[1] in (1, 3) and want[3] not in (1, 3)
        layout = "NCHW: the model is channels-first, edgepipe feeds NHWC" if nchw else "NHWC"
        raise InputError(f"{runtime} input: expected shape {tuple(want)} ({layout}). Received: {x.shape}")
    return x


def input_layout(shape: tuple[int, ...]) -> str:
    """NCHW when the second dimension looks like channels and the last does not."""
    if len(shape) == 4 and shape[1] in (1, 3) and shape[3] not in (1, 3):
        return "nchw"
    return "nhwc"


def image_input_shape(runner) -> tuple[int, int, int]:
    """(H, W, C) that `runner.predict` expects, whatever the model's own layout."""
    shape = tuple(int(v) for v in (runner.inp["shape"] if hasattr(runner, "inp") else runner.shape))
    if getattr(runner, "layout", "nhwc") == "nchw":
        return shape[2], shape[3], shape[1]
    return shape[1], shape[2], shape[3]
