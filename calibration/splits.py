"""Deterministic stratified splits: train / calibration / test, fixed seed."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, seed: int, n_calibration: int, test_fraction: float) -> dict:
    """Indices per split. Unlabeled records (-1) can only serve calibration.

    Per class, a `test_fraction` share goes to test; calibration takes `n_calibration`
    images spread over classes in proportion to their frequency; the rest is train.
    Stable for a given (labels, seed, sizes): the same images land in the same split.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    splits = {"train": [], "calibration": [], "test": []}
    labeled = np.flatnonzero(labels >= 0)
    unlabeled = np.flatnonzero(labels < 0)
    n_lab = max(len(labeled), 1)
    classes = np.unique(labels[labeled])
    for c in classes:
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        n_cal = int(round(n_calibration * len(idx) / n_lab)) if len(unlabeled) == 0 else 0
        n_cal = min(n_cal, len(idx) - n_test)
        splits["test"] += idx[:n_test].tolist()
        splits["calibration"] += idx[n_test : n_test + n_cal].tolist()
        splits["train"] += idx[n_test + n_cal :].tolist()
    if len(unlabeled):
        splits["calibration"] += unlabeled[rng.permutation(len(unlabeled))][:n_calibration].tolist()
    return {k: np.array(sorted(v), dtype=np.int64) for k, v in splits.items()}
