"""Agreement between one artifact's outputs on two machines (arm64 under emulation vs the host).

Integer outputs (INT8 artifacts) are compared in their native dtype: bit-exact, or how many
outputs differ and by how many LSB at most. Float outputs (FP32 artifacts): the max absolute
difference. Both: the dequantized scores' max absolute difference and top-1 agreement.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgepipe.core.errors import StageError, expected_received


@dataclass(frozen=True)
class Tolerance:
    max_lsb: int = 1  # integer outputs: largest accepted difference in quantization steps
    max_abs: float = 1e-4  # float outputs: largest accepted absolute difference

    def as_dict(self) -> dict:
        return asdict(self)


def _check_pair(what: str, arm: np.ndarray, host: np.ndarray) -> None:
    if arm.shape != host.shape:
        raise StageError(expected_received(f"{what} of arm64 vs host", f"equal shapes (host {host.shape})",
                                           f"arm64 {arm.shape}"))
    if arm.dtype != host.dtype:
        raise StageError(expected_received(f"{what} of arm64 vs host", f"equal dtypes (host {host.dtype})",
                                           f"arm64 {arm.dtype}"))
    if arm.ndim != 2 or arm.shape[0] == 0:
        raise StageError(expected_received(what, "a non-empty (images, classes) array", f"shape {arm.shape}"))


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Max |a - b|; NaN at the same place on both sides counts as equal, elsewhere as infinite."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    both_nan = np.isnan(a64) & np.isnan(b64)
    diff = np.abs(a64 - b64)
    diff[both_nan] = 0.0
    diff[np.isnan(diff)] = np.inf
    return float(diff.max()) if diff.size else 0.0


def compare(arm_raw: np.ndarray, host_raw: np.ndarray, arm_scores: np.ndarray, host_scores: np.ndarray,
            labels: np.ndarray | None = None, tol: Tolerance = Tolerance()) -> dict:
    """The agreement record; `within_tolerance` and `reasons` say whether it passes and why not."""
    arm_raw, host_raw = np.asarray(arm_raw), np.asarray(host_raw)
    arm_scores, host_scores = np.asarray(arm_scores), np.asarray(host_scores)
    _check_pair("raw outputs", arm_raw, host_raw)
    _check_pair("scores", arm_scores, host_scores)
    if arm_raw.shape != arm_scores.shape:
        raise StageError(expected_received("scores", f"the raw outputs' shape {arm_raw.shape}", arm_scores.shape))
    n, classes = arm_raw.shape
    differ = arm_raw != host_raw
    rec: dict = {"images": int(n), "outputs": int(arm_raw.size), "dtype": str(arm_raw.dtype),
                 "bit_exact": bool(np.array_equal(arm_raw, host_raw)), "differing_outputs": int(differ.sum()),
                 "scores_max_abs_diff": max_abs_diff(arm_scores, host_scores), "tolerance": tol.as_dict()}
    reasons = []
    if np.issubdtype(arm_raw.dtype, np.integer):
        lsb = int(np.abs(arm_raw.astype(np.int64) - host_raw.astype(np.int64)).max())
        rec["max_lsb_diff"] = lsb
        if lsb > tol.max_lsb:
            reasons.append(f"{rec['differing_outputs']} of {rec['outputs']} {rec['dtype']} outputs differ, "
                           f"by up to {lsb} LSB (tolerance {tol.max_lsb})")
    else:
        rec["max_abs_diff"] = max_abs_diff(arm_raw, host_raw)
        if not rec["max_abs_diff"] <= tol.max_abs:
            reasons.append(f"max abs difference {rec['max_abs_diff']:.3g} exceeds {tol.max_abs:g} "
                           f"({rec['differing_outputs']} of {rec['outputs']} outputs differ)")
    arm_top1, host_top1 = arm_scores.argmax(axis=1), host_scores.argmax(axis=1)
    agree = int((arm_top1 == host_top1).sum())
    rec.update(top1_agree=agree, top1_agreement=agree / n)
    if labels is not None:
        labels = np.asarray(labels)
        mask = labels >= 0
        if mask.any():
            rec["top1_arm64"] = float((arm_top1[mask] == labels[mask]).mean())
            rec["top1_host"] = float((host_top1[mask] == labels[mask]).mean())
            rec["labeled"] = int(mask.sum())
    rec["within_tolerance"] = not reasons
    rec["reasons"] = reasons
    return rec


def summary(rec: dict) -> str:
    """One line for a table's note column."""
    if "max_lsb_diff" in rec:
        values = ("bit-exact" if rec["bit_exact"] else
                  f"{rec['differing_outputs']}/{rec['outputs']} differ, max {rec['max_lsb_diff']} LSB")
    else:
        values = f"max abs diff {rec['max_abs_diff']:.2g}"
    return f"vs host on {rec['images']} imgs: {values}; top-1 agree {rec['top1_agree']}/{rec['images']}"
