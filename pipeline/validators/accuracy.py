"""Accuracy on the labeled validation split, compared with the FP32 Keras reference."""

from __future__ import annotations

import numpy as np


def predict_all(runner, images: np.ndarray, progress=None) -> np.ndarray:
    if hasattr(runner, "predict_batch"):
        out = runner.predict_batch(images)
        if progress:
            progress(len(images))
        return out
    out = []
    for img in images:
        out.append(runner.predict(img))
        if progress:
            progress(1)
    return np.stack(out)


def accuracy_metrics(scores: np.ndarray, labels: np.ndarray, ref_scores: np.ndarray | None) -> dict:
    labeled = labels >= 0
    if not labeled.any():
        raise ValueError("accuracy needs labeled images; the validation subset has none")
    pred = scores.argmax(axis=1)
    m = {
        "n_images": int(labeled.sum()),
        "top1": float((pred[labeled] == labels[labeled]).mean()),
    }
    if ref_scores is not None:
        ref_pred = ref_scores.argmax(axis=1)
        m["ref_top1"] = float((ref_pred[labeled] == labels[labeled]).mean())
        m["agreement"] = float((pred == ref_pred).mean())
        m["drop_points"] = 100.0 * (m["ref_top1"] - m["top1"])
    return m
