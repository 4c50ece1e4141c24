"""One number formatter for every renderer (terminal, HTML, model card, leaderboard)."""

from __future__ import annotations

MISSING = "—"


def fmt(value, spec: str) -> str:
    """`value` formatted with `spec`, or an em dash when it was not measured."""
    return MISSING if value is None else format(value, spec)
