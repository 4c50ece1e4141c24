"""The terminal summary table (report.json is written by pipeline.run.orchestrate)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from pipeline.reports.numbers import MISSING, fmt, fmt_range
from pipeline.reports.rows import ReportRow

STATUS = {"passed": "✅", "failed": "❌", "error": "❌", "reference": "ref", "skipped": "skip", "partial": "⚠️ partial"}


def _drop(acc: dict) -> str:
    if "drop_points" not in acc:
        return MISSING
    ci = acc.get("drop_ci95_points")
    text = fmt(acc["drop_points"], "+.2f")
    if ci:
        text += f" [{fmt_range(ci, '+.2f', ', ')}]" + (" noise" if acc.get("drop_within_noise") else "")
    return text


def summary_table(report: dict) -> Table:
    t = Table(title="edgepipe results", title_justify="left")
    for col, just in [("artifact", "left"), ("status", "center"), ("size MB", "right"), ("top-1", "right"),
                      ("Δ vs FP32 (pts) [95% CI]", "right"), ("agree", "right"), ("p50 ms", "right"),
                      ("p90 ms", "right"), ("note", "left")]:
        t.add_column(col, justify=just, no_wrap=col != "note")
    for r in map(ReportRow.from_json, report["artifacts"]):
        acc = r.accuracy or {}
        lat = r.latency or {}
        t.add_row(
            r.artifact, STATUS.get(r.status, r.status), fmt(r.size_mb, ".1f"),
            fmt(acc.get("top1"), ".4f"), _drop(acc),
            fmt(acc.get("agreement"), ".3f"), fmt(lat.get("p50_ms"), ".1f") + (" busy" if r.busy() else ""),
            fmt(lat.get("p90_ms"), ".1f"),
            "; ".join([*r.reasons, *([r.note] if r.note else []), *([r.busy()] if r.busy() else [])])[:240],
        )
    return t


def recipe_notes(report: dict) -> list[str]:
    """One line per INT8 artifact whose recipe had an accuracy budget: what it chose, on what."""
    out = []
    for row in report["artifacts"]:
        recipe = row.get("recipe") or {}
        budget, repair = recipe.get("accuracy_budget"), recipe.get("edgetpu_repair")
        if repair:
            out.append(f"{row['artifact']}: budget {fmt(recipe['max_accuracy_drop'], 'g')} pts, full-integer repair "
                       f"chosen on {repair['control_images']} control images: {repair['why']}")
        elif budget:
            kept = budget.get("float_layers")
            what = (f"{len(kept)} layer(s) kept in float" if kept is not None
                    else f"{budget.get('fake_quantize_ops', '?')} FakeQuantize ops left")
            met = "met" if budget.get("within_budget") else "NOT met"
            out.append(f"{row['artifact']}: budget {fmt(recipe['max_accuracy_drop'], 'g')} pts {met} on "
                       f"{budget.get('control_images', '?')} control images "
                       f"(drop {fmt(budget.get('control_drop_points', float('nan')), '+.2f')}); {what}")
    return out


def print_summary(report: dict, console: Console, output) -> None:
    console.print(summary_table(report))
    stages = report["stages"]
    ran = [s for s in stages if not s["cached"]]
    console.print(
        f"stages: {len(stages)} total, {len(stages) - len(ran)} cached, {len(ran)} ran; "
        f"wall time {fmt(report['wall_seconds'], '.1f')} s"
    )
    for line in recipe_notes(report):
        console.print(line)
    busy = [r.artifact for r in map(ReportRow.from_json, report["artifacts"]) if r.busy()]
    if busy:
        console.print(f"[bold yellow]busy machine:[/] the latency of {len(busy)} row(s) was measured while the load "
                      "average exceeded the core count; rerun on an idle machine before quoting it", highlight=False)
    cross = report.get("cross_quantizer") or {}
    if cross.get("flagged"):
        console.print(f"[bold red]cross-quantizer check:[/] {', '.join(cross['flagged'])} far below the other INT8 "
                      f"artifacts (> {fmt(cross['max_gap_points'], 'g')} pts)")
    console.print(f"report: {output}/report.json   html: {output}/report.html   "
                  f"artifacts (each with a README.md model card): {output}/artifacts/")
