"""Whether an output path overlaps one of a command's inputs: the one rule `run` (its output folder),
`init` (the pipeline.yaml it writes) and `bundle` (its store) apply before they write anything."""

from __future__ import annotations

from pathlib import Path

SAME, INSIDE, CONTAINS = "is the same path as", "is inside", "contains"


def overlap(out: str | Path, path: str | Path | None, contains: bool = True) -> str | None:
    """How `out` overlaps the input `path`: SAME, INSIDE (out is under it) or, when `contains`, CONTAINS (it
    is under out); None when apart. Both resolved, `~` expanded. An input that is None, blank or cannot be
    resolved (a link loop) is None here: its own reader names what is wrong with it."""
    if path is None or not str(path).strip():
        return None
    try:
        p, o = Path(path).expanduser().resolve(), Path(out).expanduser().resolve()
    except (OSError, RuntimeError):  # a link loop: RuntimeError before Python 3.13, OSError after
        return None
    if p == o:
        return SAME
    if p in o.parents:
        return INSIDE
    return CONTAINS if contains and o in p.parents else None
