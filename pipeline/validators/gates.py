"""Gates from the config decide pass or fail, per artifact, with the reason; and the exit code."""

from __future__ import annotations

from pipeline.core.errors import EXIT_GATE_FAILED, EXIT_OK, EXIT_PARTIAL

FAILED = {"failed", "error"}
PARTIAL = {"partial", "unreachable"}


def evaluate(gates, accuracy: dict | None, latency: dict | None, parity: dict | None = None) -> list[str]:
    """Failed gate descriptions (empty = all passed)."""
    failed = []
    if gates.max_top1_drop is not None and accuracy and "drop_points" in accuracy:
        if accuracy["drop_points"] > gates.max_top1_drop:
            noise = ""
            if "drop_ci95_points" in accuracy:
                lo, hi = accuracy["drop_ci95_points"]
                noise = f" (95% CI {lo:+.2f}..{hi:+.2f})"
            failed.append(
                f"top-1 drop {accuracy['drop_points']:.2f} pts{noise} > max_top1_drop {gates.max_top1_drop:g}"
            )
    if gates.max_p90_ms is not None and latency:
        if latency["p90_ms"] > gates.max_p90_ms:
            failed.append(f"p90 {latency['p90_ms']:.1f} ms > max_p90_ms {gates.max_p90_ms:g}")
    if parity is not None and getattr(gates, "parity_min_cosine", None) is not None and not parity["passed"]:
        failed.append(f"output parity: worst cosine {parity['cosine_min']:.6f} (min {parity['min_cosine']:g}), "
                      f"max |diff| {parity['max_abs']:.2e} (tolerance {parity['max_abs_tolerance']:g})")
    return failed


def exit_code(statuses) -> int:
    """1 if anything failed (a gate or a build); else 3 if anything could not be validated
    (a device unreachable, a runtime missing); else 0. Bad input (2) aborts before this."""
    statuses = list(statuses)
    if any(s in FAILED for s in statuses):
        return EXIT_GATE_FAILED
    if any(s in PARTIAL for s in statuses):
        return EXIT_PARTIAL
    return EXIT_OK
