"""Output parity of a float artifact with its FP32 reference, on the same images; its gate
(`parity_min_cosine`, `parity_max_abs`). `ParityValidator` is the registry's entry."""

from __future__ import annotations

import numpy as np

from edgepipe.validators.base import ValidationInputs, ValidatorResult

FLOAT_PRECISIONS = ("fp32", "fp16", "bf16")  # parity is a float-vs-float check
MIN_COSINE = 0.999
MAX_ABS = 1e-3  # on the output scores (softmax probabilities for the classifiers edgepipe builds)


def output_parity(scores: np.ndarray, ref_scores: np.ndarray, min_cosine: float = MIN_COSINE,
                  max_abs: float = MAX_ABS) -> dict:
    """Per-image cosine similarity (the worst image counts) and the largest absolute difference."""
    a = np.asarray(scores, dtype=np.float64)
    b = np.asarray(ref_scores, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"parity: expected equal score shapes. Received: {a.shape} vs {b.shape}")
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    denom = np.where(na * nb > 0, na * nb, 1.0)
    cos = np.where(na * nb > 0, (a * b).sum(axis=1) / denom, (na == nb).astype(np.float64))
    worst_abs = float(np.abs(a - b).max())
    return {
        "cosine_min": float(cos.min()),
        "cosine_mean": float(cos.mean()),
        "max_abs": worst_abs,
        "min_cosine": min_cosine,
        "max_abs_tolerance": max_abs,
        "passed": bool(cos.min() >= min_cosine and worst_abs <= max_abs),
    }


def gate(gates, parity: dict) -> list[str]:
    """Failed when the config has a parity gate (`parity_min_cosine` not None) and the outputs differ."""
    if getattr(gates, "parity_min_cosine", None) is None or parity["passed"]:
        return []
    return [f"output parity: worst cosine {parity['cosine_min']:.6f} (min {parity['min_cosine']:g}), "
            f"max |diff| {parity['max_abs']:.2e} (tolerance {parity['max_abs_tolerance']:g})"]


class ParityValidator:
    """Float artifacts only: every image's scores against the FP32 reference's."""

    name = "parity"
    diagnostic = False

    def applies(self, inputs: ValidationInputs) -> bool:
        return inputs.artifact.precision in FLOAT_PRECISIONS

    def run(self, inputs: ValidationInputs) -> ValidatorResult:
        g = inputs.gates
        res = output_parity(inputs.scores, inputs.ref_scores, g.parity_min_cosine or MIN_COSINE, g.parity_max_abs)
        return ValidatorResult(self.name, res, gate(g, res))
