"""Gates from the config decide pass or fail, per artifact, with the reason."""

from __future__ import annotations


def evaluate(gates, accuracy: dict | None, latency: dict | None) -> list[str]:
    """Failed gate descriptions (empty = all passed)."""
    failed = []
    if gates.max_top1_drop is not None and accuracy and "drop_points" in accuracy:
        if accuracy["drop_points"] > gates.max_top1_drop:
            failed.append(
                f"top-1 drop {accuracy['drop_points']:.2f} pts > max_top1_drop {gates.max_top1_drop:g}"
            )
    if gates.max_p90_ms is not None and latency:
        if latency["p90_ms"] > gates.max_p90_ms:
            failed.append(f"p90 {latency['p90_ms']:.1f} ms > max_p90_ms {gates.max_p90_ms:g}")
    return failed
