"""Statuses and the exit code of a run.

Each validator evaluates its own gates from `cfg.gates` (`accuracy.gate`: max_top1_drop,
`latency.gate`: max_p90_ms, `parity.gate`: parity_min_cosine / parity_max_abs, the cross-quantizer
check: cross_quantizer_max_gap); a row fails when any of them does. What is left here is how the rows'
statuses make the run's exit code.

A `partial` row marked `not_available_here` (this host lacks the target's compiler, device or package:
pipeline/engine/availability.py) is reported but does not count, unless its target is `required: true` or
the run is `--strict`: then it is partial, as any other (exit 3).
"""

from __future__ import annotations

from edgepipe.core.errors import EXIT_GATE_FAILED, EXIT_OK, EXIT_PARTIAL

FAILED = {"failed", "error"}
PARTIAL = {"partial", "unreachable"}
NOT_AVAILABLE = "not available here"  # what a row counts as when this host cannot finish it (exit 0)


def exit_code(statuses) -> int:
    """1 if anything failed (a gate or a build); else 3 if anything could not be validated
    (a device unreachable, a runtime missing); else 0. Bad input (2) aborts before this."""
    statuses = list(statuses)
    if any(s in FAILED for s in statuses):
        return EXIT_GATE_FAILED
    if any(s in PARTIAL for s in statuses):
        return EXIT_PARTIAL
    return EXIT_OK


def counted_status(row: dict, required=(), strict: bool = False) -> str | None:
    """A row's status (JSON form) as the exit code counts it: a partial row this host cannot finish is
    `not available here`, unless its target is in `required` or the run is `strict`."""
    if row.get("status") == "partial" and row.get("not_available_here") and not strict \
            and row.get("target") not in set(required):
        return NOT_AVAILABLE
    return row.get("status")


def run_exit_code(rows, required=(), strict: bool = False) -> int:
    """The exit code of a run from its rows (JSON form): `exit_code` over their counted statuses."""
    return exit_code(counted_status(r, required, strict) for r in rows)
