"""Statuses and the exit code of a run.

Each validator evaluates its own gates from `cfg.gates` (`accuracy.gate`: max_top1_drop,
`latency.gate`: max_p90_ms, `parity.gate`: parity_min_cosine / parity_max_abs, the cross-quantizer
check: cross_quantizer_max_gap); a row fails when any of them does. What is left here is how the rows'
statuses make the run's exit code.
"""

from __future__ import annotations

from pipeline.core.errors import EXIT_GATE_FAILED, EXIT_OK, EXIT_PARTIAL

FAILED = {"failed", "error"}
PARTIAL = {"partial", "unreachable"}


def exit_code(statuses) -> int:
    """1 if anything failed (a gate or a build); else 3 if anything could not be validated
    (a device unreachable, a runtime missing); else 0. Bad input (2) aborts before this."""
    statuses = list(statuses)
    if any(s in FAILED for s in statuses):
        return EXIT_GATE_FAILED
    if any(s in PARTIAL for s in statuses):
        return EXIT_PARTIAL
    return EXIT_OK
