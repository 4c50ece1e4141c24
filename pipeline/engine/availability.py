"""What this host cannot finish, said precisely: `not available here`.

A target whose compiler, device, runtime library or Python packages are missing on this host
(the registry's `host_status`, probed without importing a toolkit) is built as far as the host
allows; its `partial` rows are marked `not_available_here` with `how_to_finish` (the registry's
`how_to_finish`: the extra to install, then the install hint) and one more reason line that says
so, which every renderer shows. Such a row keeps status `partial` (never a pass); the run's exit
code does not count it unless the target is `required: true` or the run is `--strict`
(`pipeline/validators/gates.py`). A target whose extra is missing is not built at all: one row says
which extra to install.
"""

from __future__ import annotations

from edgepipe import targets
from edgepipe.core.extras import extra_for
from edgepipe.reports.rows import ReportRow

PREFIX = "not available here"  # the reason line of a marked row starts with this


def host_gap(target: str) -> dict | None:
    """None when this host has everything `target` needs; else what is missing and how to finish it."""
    info = targets.get(target)
    status = info.host_status()
    if status["available"]:
        return None
    packages = [p for p, ok in status["host"]["packages"].items() if not ok]
    return {"missing": status["missing"], "extras_missing": [p for p in packages if extra_for(p)],
            "how_to_finish": info.how_to_finish(status)}


def reason(gap: dict) -> str:
    return f"{PREFIX} (missing: {', '.join(gap['missing'])}); to finish it: {gap['how_to_finish']}"


def mark(row: dict, gap: dict | None) -> dict:
    """`row` (a partial row's fields) marked as not available here when the host lacks something; else as is."""
    if gap is not None and row.get("status") == "partial":
        row.update(reasons=[*row.get("reasons", []), reason(gap)], not_available_here=True,
                   how_to_finish=gap["how_to_finish"])
    return row


def unbuildable_row(name: str) -> ReportRow | None:
    """The row of a target whose extra's packages are missing here (nothing can be built), else None."""
    gap = host_gap(name)
    if gap is None or not gap["extras_missing"]:
        return None
    row = {"artifact": f"{name}/*", "target": name, "precision": None, "status": "partial",
           "reasons": [f"not built: Python package(s) {', '.join(gap['extras_missing'])} not installed"]}
    return ReportRow(**mark(row, gap))
