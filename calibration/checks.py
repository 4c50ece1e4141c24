"""Data checks that run before any converter or validator sees the data."""

from __future__ import annotations

import logging

import numpy as np

from calibration.preprocess import RANGES
from pipeline.errors import InputError

log = logging.getLogger("edgepipe")


def check_finite(images: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(images)
    if bad.any():
        n_img = int(bad.reshape(len(images), -1).any(axis=1).sum())
        raise InputError(
            f"{what}: expected finite pixel values. Received NaN/inf in {n_img} of {len(images)} images"
        )


def check_shape(images: np.ndarray, shape: tuple[int, int, int], what: str) -> None:
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(shape):
        raise InputError(
            f"{what}: expected images of shape (N, {', '.join(map(str, shape))}) (NHWC). "
            f"Received: {tuple(images.shape)}"
        )


def check_range(images: np.ndarray, mode: str, what: str) -> None:
    """Catch e.g. [0, 255] data fed to a [-1, 1] model (preprocessing mismatch)."""
    lo, hi = RANGES[mode]
    tol = 0.05 * (hi - lo)
    mn, mx = float(images.min()), float(images.max())
    if mn < lo - tol or mx > hi + tol:
        raise InputError(
            f"{what}: expected values in [{lo:g}, {hi:g}] for preprocessing {mode!r}. "
            f"Received values in [{mn:.3g}, {mx:.3g}]"
        )


def check_not_constant(images: np.ndarray, what: str) -> None:
    """Constant data (blank frames, a failed decode repeated) gives every activation a zero range:
    quantizers then produce degenerate scales without complaint."""
    if len(images) and float(images.std()) == 0.0:
        raise InputError(
            f"{what}: expected images with varying pixel values. Received: {len(images)} images that are all "
            f"the constant {float(images.flat[0]):g}"
        )


def check_batch(images: np.ndarray, what: str) -> None:
    """What every quantizer adapter checks on the arrays it is handed: NHWC float batch, finite, not constant."""
    if not isinstance(images, np.ndarray) or images.ndim != 4:
        raise InputError(f"{what}: expected a 4-D NHWC image array. Received: "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    if len(images) == 0:
        raise InputError(f"{what}: expected at least 1 image. Received: 0")
    check_finite(images, what)
    check_not_constant(images, what)


def validate(images: np.ndarray, shape: tuple[int, int, int], mode: str, what: str) -> None:
    """All array checks of a materialised subset: shape, finite values, the preprocessing range, not constant."""
    check_shape(images, shape, what)
    check_finite(images, what)
    check_range(images, mode, what)
    check_not_constant(images, what)


def check_count(n: int, minimum: int, what: str) -> None:
    if n == 0:
        raise InputError(f"{what}: expected at least 1 image. Received: 0")
    if n < minimum:
        log.warning("%s: %d images, fewer than the configured minimum of %d", what, n, minimum)


def check_classes(labels: np.ndarray, n_classes: int, what: str) -> list[int]:
    """Classes absent from a labeled subset (warned, returned)."""
    present = set(np.unique(labels[labels >= 0]).tolist())
    missing = [c for c in range(n_classes) if c not in present]
    if missing and (labels >= 0).any():
        log.warning("%s: classes %s have no images", what, missing)
    return missing
