"""Accuracy on labeled images, compared with the FP32 reference; its gate (`max_top1_drop`).

Scores are computed once by a cached stage (`scores.npy`); everything here is a pure
function of score arrays, so metrics can be recomputed from the cache at any time.
`AccuracyValidator` is the registry's entry (`pipeline/validators/registry.py`).
"""

from __future__ import annotations

import numpy as np

from edgepipe.formats.throughput import one_by_one
from edgepipe.validators import stats
from edgepipe.validators.base import ValidationInputs, ValidatorResult

TOP_K = 5


def predict_all(runner, images: np.ndarray, progress=None) -> np.ndarray:
    """Scores of every image: the runner's throughput path (`predict_many`, the same scores as one
    `predict` per image: pipeline/formats/throughput.py) when it has one, else image by image."""
    if hasattr(runner, "predict_many"):
        return runner.predict_many(images, progress)
    return one_by_one(runner, images, progress)


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per image: is the true label among the k highest scores (k capped at the class count)."""
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return (top == labels[:, None]).any(axis=1)


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (labels, pred), 1)
    return cm


def per_class(cm: np.ndarray, class_names: list[str] | None = None) -> list[dict]:
    names = class_names or [str(i) for i in range(len(cm))]
    out = []
    for i, row in enumerate(cm):
        n = int(row.sum())
        out.append({"label": names[i] if i < len(names) else str(i), "n": n,
                    "accuracy": float(row[i] / n) if n else None})
    return out


def accuracy_metrics(scores: np.ndarray, labels: np.ndarray, ref_scores: np.ndarray | None,
                     class_names: list[str] | None = None) -> dict:
    """Top-1 (with a Wilson 95% CI), top-k, per-class accuracy, confusion matrix; with a reference:
    agreement, the drop in points and a paired-bootstrap 95% CI on it ("within noise" when it holds 0)."""
    labels = np.asarray(labels)
    labeled = labels >= 0
    if not labeled.any():
        raise ValueError("accuracy needs labeled images; the validation subset has none")
    s, y = scores[labeled], labels[labeled]
    n_classes = scores.shape[1]
    if y.max() >= n_classes:
        raise ValueError(f"labels: expected class indices < {n_classes} (the model's outputs). "
                         f"Received: {int(y.max())}")
    pred = s.argmax(axis=1)
    correct = pred == y
    k = min(TOP_K, n_classes)
    cm = confusion_matrix(pred, y, n_classes)
    m = {
        "n_images": int(labeled.sum()),
        "top1": float(correct.mean()),
        "top1_ci95": list(stats.wilson_ci(int(correct.sum()), int(len(correct)))),
        "top5": float(topk_correct(s, y, k).mean()),
        "top5_k": k,
        "per_class": per_class(cm, class_names),
        "confusion": cm.tolist(),
    }
    if ref_scores is not None:
        ref_pred = ref_scores.argmax(axis=1)
        ref_correct = ref_pred[labeled] == y
        m["ref_top1"] = float(ref_correct.mean())
        m["agreement"] = float((scores.argmax(axis=1) == ref_pred).mean())
        m["drop_points"] = 100.0 * (m["ref_top1"] - m["top1"])
        lo, hi = stats.paired_bootstrap_diff(ref_correct, correct)
        m["drop_ci95_points"] = [100.0 * lo, 100.0 * hi]
        m["drop_within_noise"] = bool(lo <= 0.0 <= hi)
        m["bootstrap"] = {"resamples": stats.BOOTSTRAP_RESAMPLES, "seed": stats.BOOTSTRAP_SEED, "paired": True}
    return m


def gate(gates, accuracy: dict) -> list[str]:
    """`max_top1_drop`: the drop vs FP32 in points (its 95% CI in the reason)."""
    if gates.max_top1_drop is None or not accuracy or "drop_points" not in accuracy:
        return []
    if not accuracy["drop_points"] > gates.max_top1_drop:
        return []
    noise = ""
    if "drop_ci95_points" in accuracy:
        lo, hi = accuracy["drop_ci95_points"]
        noise = f" (95% CI {lo:+.2f}..{hi:+.2f})"
    return [f"top-1 drop {accuracy['drop_points']:.2f} pts{noise} > max_top1_drop {gates.max_top1_drop:g}"]


class AccuracyValidator:
    """Top-1 / top-k / per class / confusion, and the drop vs FP32, on the cached scores."""

    name = "accuracy"
    diagnostic = False

    def applies(self, inputs: ValidationInputs) -> bool:
        return True

    def run(self, inputs: ValidationInputs) -> ValidatorResult:
        ctx = inputs.ctx
        acc = accuracy_metrics(inputs.scores, ctx.validation.labels, inputs.ref_scores, ctx.labels)
        return ValidatorResult(self.name, acc, gate(inputs.gates, acc))
