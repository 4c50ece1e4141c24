"""Data checks that run before any converter or validator sees the data."""

from __future__ import annotations

import logging

import numpy as np

from edgepipe.calibration.preprocess import RANGES
from edgepipe.core.errors import InputError

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


def looks_like(images: np.ndarray) -> str | None:
    """The preprocessing mode whose value range the data's statistics fit best (None if none fits)."""
    mn, mx = float(images.min()), float(images.max())
    fits = [m for m, (lo, hi) in RANGES.items()
            if lo - 0.05 * (hi - lo) <= mn and mx <= hi + 0.05 * (hi - lo) and (mx - mn) >= 0.4 * (hi - lo)]
    return min(fits, key=lambda m: RANGES[m][1] - RANGES[m][0]) if fits else None


def check_range(images: np.ndarray, mode: str, what: str) -> None:
    """Catch e.g. [0, 255] or ImageNet mean/std data fed to a [-1, 1] model (preprocessing mismatch)."""
    lo, hi = RANGES[mode]
    tol = 0.05 * (hi - lo)
    mn, mx = float(images.min()), float(images.max())
    if mn < lo - tol or mx > hi + tol:
        guess = looks_like(images)
        hint = f": this looks like {guess!r} preprocessing, a preprocessing mismatch" if guess else ""
        raise InputError(
            f"{what}: expected values in [{lo:g}, {hi:g}] for preprocessing {mode!r}. "
            f"Received values in [{mn:.3g}, {mx:.3g}]{hint}"
        )


def check_reference_accuracy(scores: np.ndarray, labels: np.ndarray, mode: str, what: str,
                             min_images: int = 20, margin: float = 0.02) -> None:
    """The FP32 reference must beat chance on labeled data; at chance the usual cause is a preprocessing
    mismatch (the model was trained with another input scaling than `input.preprocessing`)."""
    labeled = labels >= 0
    n = int(labeled.sum())
    if n < min_images:
        return  # too few labeled images to tell a bad setup from bad luck
    y, pred = labels[labeled], scores[labeled].argmax(axis=1)
    k = scores.shape[1]
    top1 = float((pred == y).mean())
    majority = float(np.bincount(y, minlength=k).max() / n)
    floor = max(1.0 / k, majority)
    if top1 <= floor + margin:
        collapsed = float(np.bincount(pred, minlength=k).max() / n)
        raise InputError(
            f"{what}: expected FP32 reference top-1 clearly above chance (1/{k} = {1 / k:.2f}, majority class "
            f"{majority:.2f}) with input.preprocessing {mode!r}. Received: top-1 {top1:.3f} on {n} labeled images, "
            f"{collapsed:.0%} predicted as one class. Likely a preprocessing mismatch: check that "
            f"input.preprocessing (xception = [-1, 1], unit = [0, 1], imagenet = mean/std, raw = [0, 255]) is what "
            f"the model was trained with; otherwise check the label order and the validation data"
        )


def check_not_constant(images: np.ndarray, what: str) -> None:
    """Constant data (blank frames, a failed decode repeated) gives every activation a zero range:
    quantizers then produce degenerate scales without complaint. Compared exactly (min == max): a float32 std
    of constant data is 0 only for some values (a batch of -0.6 or of 0.1 has a std of 6e-8 or 1.5e-8 from the
    mean's rounding), and the std is also the slowest pass over the batch (1.5 s of 786 elpv images)."""
    if len(images) and images.min() == images.max():
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
