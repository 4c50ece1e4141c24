"""Fidelity of a quantized artifact to its FP32 reference, from the two score arrays alone (pure numpy).

Top-1 accuracy on a few hundred images moves by a whole image at a time and mostly measures the
data set; how faithfully an INT8 artifact reproduces the FP32 model is a property of the artifact:

- **agreement**: the share of images whose top-1 class equals the FP32 top-1, with a 95% Wilson
  score interval (exact enough near 1, where the normal approximation collapses to zero width);
- **output SNR** (dB): 10·log10(Σ ref² / Σ (ref − q)²) over every image and class, the energy of
  the reference scores over the energy of the difference (+6 dB = half the error amplitude);
- **mean KL divergence** KL(ref ‖ q) per image: when the FP32 scores are probabilities (no negative
  value, every row summing to 1 within 1e-3: a softmax head), both score arrays are read as such
  (clipped at 1e-12 and renormalised per row, so softmax outputs pass through unchanged); otherwise
  (a logits head, `classifier_activation=None`) as logits, through a softmax. `scores_read_as` says
  which. Clipping logits instead would keep only the positive ones: a number, but not a divergence;
- **flips**: every image whose top-1 changed, with its FP32 top-1 margin (top probability minus the
  runner-up's, read as for the KL): flips at small margins are the ones any small error moves.

`fidelity_gate` turns the metrics into gate failure reasons (`min_agreement`, `min_output_snr_db`);
`FidelityValidator` runs both on every quantized artifact of a run (the row's `fidelity`).
"""

from __future__ import annotations

import math

import numpy as np

from edgepipe.validators.stats import wilson_ci

KL_EPS = 1e-12


def _check(ref: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(ref, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if ref.ndim != 2 or ref.shape != q.shape or ref.shape[0] == 0:
        raise ValueError("fidelity: expected two equal-shape (images, classes) score arrays. "
                         f"Received: {ref.shape} and {q.shape}")
    if not (np.isfinite(ref).all() and np.isfinite(q).all()):
        raise ValueError("fidelity: expected finite scores. Received: NaN or infinity in the scores")
    return ref, q


def agreement(ref: np.ndarray, q: np.ndarray) -> float:
    """The share of images whose top-1 class is the reference's."""
    ref, q = _check(ref, q)
    return float((ref.argmax(axis=1) == q.argmax(axis=1)).mean())


def output_snr_db(ref: np.ndarray, q: np.ndarray) -> float:
    """10·log10(Σ ref² / Σ (ref − q)²); +inf for identical scores."""
    ref, q = _check(ref, q)
    err = float(((ref - q) ** 2).sum())
    sig = float((ref ** 2).sum())
    if err == 0.0:
        return math.inf
    return 10.0 * math.log10(sig / err) if sig > 0 else -math.inf


def _as_prob(s: np.ndarray) -> np.ndarray:
    p = np.clip(s, KL_EPS, None)
    return p / p.sum(axis=1, keepdims=True)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.clip(e / e.sum(axis=1, keepdims=True), KL_EPS, None)


def are_probabilities(ref: np.ndarray) -> bool:
    """Whether scores are probability rows: no negative value, each row summing to 1 within 1e-3."""
    ref = np.asarray(ref, dtype=np.float64)
    return bool((ref >= 0).all() and np.allclose(ref.sum(axis=1), 1.0, rtol=0.0, atol=1e-3))


def _kl(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    return (p * (np.log(p) - np.log(r))).sum(axis=1)


def kl_per_image(ref: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(ref ‖ q) of each image, in nats: of the scores themselves when the reference's are probabilities,
    else of their softmax (the scores are logits)."""
    ref, q = _check(ref, q)
    read = _as_prob if are_probabilities(ref) else _softmax
    return _kl(read(ref), read(q))


def margins(scores: np.ndarray) -> np.ndarray:
    """Top score minus the runner-up, per image (0 for a single class)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.shape[1] < 2:
        return np.zeros(len(s))
    top2 = np.sort(s, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def fidelity_metrics(ref: np.ndarray, q: np.ndarray, names: list[str] | None = None,
                     class_names: list[str] | None = None) -> dict:
    """Agreement (+ 95% CI), output SNR, mean KL and the flipped images (sorted by FP32 margin).

    `names`: optional per-image identifiers (e.g. file paths) copied into the flip list."""
    ref, q = _check(ref, q)
    n = len(ref)
    r_top, q_top = ref.argmax(axis=1), q.argmax(axis=1)
    same = r_top == q_top
    agree = int(same.sum())
    lo, hi = wilson_ci(agree, n)
    probabilities = are_probabilities(ref)  # one reading of the scores for the KL and the margins
    if probabilities:
        kl, m = _kl(_as_prob(ref), _as_prob(q)), margins(ref)
    else:
        p = _softmax(ref)
        kl, m = _kl(p, _softmax(q)), margins(p)
    snr = output_snr_db(ref, q)
    flipped = np.flatnonzero(~same)
    flips = []
    for i in flipped[np.argsort(m[flipped], kind="stable")]:
        row = {"index": int(i), "ref_top1": int(r_top[i]), "top1": int(q_top[i]), "ref_margin": float(m[i])}
        if class_names:
            row["ref_label"], row["label"] = class_names[r_top[i]], class_names[q_top[i]]
        if names is not None:
            row["name"] = str(names[i])
        flips.append(row)
    return {
        "n_images": n,
        "agreement": agree / n,
        "agreement_ci95": [lo, hi],
        "flipped": n - agree,
        "output_snr_db": snr if math.isfinite(snr) else 999.0,  # JSON has no infinity
        "kl_mean": float(kl.mean()),
        "scores_read_as": "probabilities" if probabilities else "logits (softmax taken)",
        "kl_max": float(kl.max()),
        "max_abs_diff": float(np.abs(ref - q).max()),
        "flip_margin_median": float(np.median(m[flipped])) if len(flipped) else None,
        "ref_margin_below_0.1": float((m < 0.1).mean()),
        "flips": flips,
    }


def fidelity_gate(metrics: dict, min_agreement: float | None = None,
                  min_output_snr_db: float | None = None) -> list[str]:
    """Failure reasons of the fidelity gates (empty: passed, or no gate set)."""
    reasons = []
    if min_agreement is not None and metrics["agreement"] < min_agreement:
        lo, hi = metrics["agreement_ci95"]
        reasons.append(f"agreement with FP32 top-1 {metrics['agreement']:.3f} (95% CI {lo:.3f}-{hi:.3f}, "
                       f"{metrics['flipped']} of {metrics['n_images']} images flipped) < min_agreement "
                       f"{min_agreement:g}")
    if min_output_snr_db is not None and metrics["output_snr_db"] < min_output_snr_db:
        reasons.append(f"output SNR {metrics['output_snr_db']:.1f} dB < min_output_snr_db {min_output_snr_db:g} dB")
    return reasons


class FidelityValidator:
    """Agreement, output SNR, KL and the flipped images of every quantized artifact vs the FP32 reference;
    gates `min_agreement` and `min_output_snr_db`. Float artifacts have the parity check instead."""

    name = "fidelity"
    diagnostic = False

    def applies(self, inputs) -> bool:
        from edgepipe.validators.parity import FLOAT_PRECISIONS

        return inputs.artifact.precision not in FLOAT_PRECISIONS and inputs.ref_scores is not None

    def run(self, inputs):
        from edgepipe.validators.base import ValidatorResult

        ctx = inputs.ctx
        paths = getattr(ctx.validation, "paths", ()) or None
        names = [str(p).rsplit("/", 1)[-1] for p in paths] if paths else None
        m = fidelity_metrics(inputs.ref_scores, inputs.scores, names, list(ctx.labels) if ctx.labels else None)
        g = inputs.gates
        return ValidatorResult(self.name, m, fidelity_gate(m, g.min_agreement, g.min_output_snr_db))
