"""The terminal summary table (report.json is written by pipeline.run)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

STATUS = {"passed": "✅", "failed": "❌", "error": "❌", "reference": "ref"}


def _fmt(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def summary_table(report: dict) -> Table:
    t = Table(title="edgepipe results", title_justify="left")
    for col, just in [("artifact", "left"), ("status", "center"), ("size MB", "right"), ("top-1", "right"),
                      ("Δ vs FP32 (pts)", "right"), ("agree", "right"), ("p50 ms", "right"),
                      ("p90 ms", "right"), ("note", "left")]:
        t.add_column(col, justify=just, no_wrap=col != "note")
    for r in report["artifacts"]:
        acc = r.get("accuracy") or {}
        lat = r.get("latency") or {}
        t.add_row(
            r["artifact"], STATUS.get(r["status"], r["status"]), _fmt(r.get("size_mb"), ".1f"),
            _fmt(acc.get("top1"), ".4f"), _fmt(acc.get("drop_points"), "+.2f") if "drop_points" in acc else "—",
            _fmt(acc.get("agreement"), ".3f"), _fmt(lat.get("p50_ms"), ".1f"), _fmt(lat.get("p90_ms"), ".1f"),
            "; ".join(r.get("reasons") or [])[:120],
        )
    return t


def print_summary(report: dict, console: Console, output) -> None:
    console.print(summary_table(report))
    stages = report["stages"]
    ran = [s for s in stages if not s["cached"]]
    console.print(
        f"stages: {len(stages)} total, {len(stages) - len(ran)} cached, {len(ran)} ran; "
        f"wall time {report['wall_seconds']:.1f} s"
    )
    cross = report.get("cross_quantizer") or {}
    if cross.get("flagged"):
        console.print(f"[bold red]cross-quantizer check:[/] {', '.join(cross['flagged'])} far below the other INT8 "
                      f"artifacts (> {cross['max_gap_points']:g} pts)")
    console.print(f"report: {output}/report.json   artifacts: {output}/artifacts/")
