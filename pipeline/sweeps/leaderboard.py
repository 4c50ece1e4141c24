"""The sweep's leaderboard: every candidate artifact, the accuracy-vs-latency Pareto front per
target, and the best candidate per target under the gates.

A candidate is a built and measured artifact (status `passed` or `failed`: a gate-failed
artifact is still a point on the front). The best candidate of a target is the fastest
(lowest p50) among those that passed every gate; ties go to higher top-1, then the smaller
file. The gates decide what is acceptable; among acceptable artifacts the fastest wins.
"""

from __future__ import annotations

from rich.table import Table

from edgepipe.reports.escape import terminal as esc
from edgepipe.reports.numbers import MISSING, fmt
from edgepipe.reports.rows import ReportRow
from edgepipe.reports.terminal import STATUS


def _point(row: dict) -> tuple[float, float] | None:
    top1 = (row.get("accuracy") or {}).get("top1")
    p50 = (row.get("latency") or {}).get("p50_ms")
    if row.get("status") not in ("passed", "failed") or top1 is None or p50 is None:
        return None
    return float(top1), float(p50)


def pareto_front(rows: list[dict]) -> list[dict]:
    """Rows not dominated in (higher top-1, lower p50 latency), sorted by latency."""
    pts = [(r, p) for r in rows if (p := _point(r)) is not None]
    front = []
    for r, (acc, lat) in pts:
        dominated = any(a >= acc and b <= lat and (a > acc or b < lat) for _, (a, b) in pts)
        if not dominated:
            front.append((lat, -acc, r["id"], r))
    return [r for *_, r in sorted(front, key=lambda x: x[:3])]


def best(rows: list[dict]) -> dict | None:
    ok = [r for r in rows if r.get("status") == "passed" and _point(r) is not None]
    if not ok:
        return None
    return min(ok, key=lambda r: (_point(r)[1], -_point(r)[0], r.get("size_mb") or 0.0, r["id"]))


def summarize(rows: list[dict]) -> dict:
    """Per target: the Pareto front (row ids) and the best candidate (row id or None)."""
    by_target: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("target") and r["target"] != "reference":
            by_target.setdefault(r["target"], []).append(r)
    out = {}
    for target, rs in sorted(by_target.items()):
        b = best(rs)
        out[target] = {"candidates": sum(_point(r) is not None for r in rs),
                       "pareto": [r["id"] for r in pareto_front(rs)],
                       "best": b["id"] if b else None}
    return out


def leaderboard_table(sweep: dict) -> Table:
    summary = sweep["targets"]
    front = {i for s in summary.values() for i in s["pareto"]}
    winners = {s["best"] for s in summary.values() if s["best"]}
    t = Table(title=f"edgepipe sweep ({sweep['executor']})", title_justify="left")
    for col, just in [("model", "left"), ("recipe", "left"), ("artifact", "left"), ("status", "center"),
                      ("size MB", "right"), ("top-1", "right"), ("Δ (pts)", "right"), ("p50 ms", "right"),
                      ("p90 ms", "right"), ("front", "center"), ("note", "left")]:
        t.add_column(col, justify=just, no_wrap=col != "note")
    for r in map(ReportRow.from_json, sweep["references"] + sweep["rows"]):
        acc, lat = r.accuracy or {}, r.latency or {}
        mark = ("★" if r.id in front else "") + (" best" if r.id in winners else "")
        note = "; ".join([*r.reasons, *([r.busy()] if r.busy() else [])])
        if r.boards:
            note = "; ".join([note] * bool(note) + [_board_note(k, v) for k, v in r.boards.items()])
        t.add_row(esc(r.get("model", "")), esc(r.get("recipe", MISSING)), esc(r.artifact),
                  esc(STATUS.get(r.status, r.status)),
                  fmt(r.size_mb, ".1f"), fmt(acc.get("top1"), ".4f"),
                  fmt(acc.get("drop_points"), "+.2f") if "drop_points" in acc else MISSING,
                  fmt(lat.get("p50_ms"), ".1f") + (" busy" if r.busy() else ""), fmt(lat.get("p90_ms"), ".1f"),
                  mark, esc(note[:140]))
    return t


def _board_note(name: str, res: dict) -> str:
    if "error" in res:
        return f"{name}: error {res['error'][:60]}"
    return f"{name}: p50 {fmt(res['p50_ms'], '.1f')} ms" if "p50_ms" in res else f"{name}: done"


def print_leaderboard(sweep: dict, console) -> None:
    console.print(leaderboard_table(sweep))
    for target, s in sweep["targets"].items():
        front = esc(", ".join(s["pareto"]) or "—")
        winner = esc(s["best"] or "none passed the gates")
        console.print(f"[bold]{esc(target)}[/]: best {winner}   Pareto front (fast→accurate): {front}", highlight=False)
    console.print(f"gates: {esc(sweep['gates'])}; {len(sweep['cells'])} cells, {sweep['failed_cells']} failed; "
                  f"wall time {fmt(sweep['wall_seconds'], '.1f')} s; report {esc(sweep['output'])}/sweep.json",
                  highlight=False)
