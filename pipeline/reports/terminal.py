"""The terminal summary table (report.json is written by edgepipe.engine.orchestrate)."""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from edgepipe.reports.escape import terminal as esc
from edgepipe.reports.numbers import MISSING, fmt, fmt_range
from edgepipe.reports.profile import lines
from edgepipe.reports.rows import ReportRow, roofline_basis, roofline_cell

STATUS = {"passed": "✅", "failed": "❌", "error": "❌", "reference": "ref", "skipped": "skip", "partial": "⚠️ partial"}
NOT_AVAILABLE = "➖ not available here"  # a partial row this host cannot finish (pipeline/engine/availability.py)
TITLE = "edgepipe results"
FINISH_PREFIX = "not available here"  # its reason line, printed in full below the table instead of in the cell


def _drop(acc: dict) -> str:
    if "drop_points" not in acc:
        return MISSING
    ci = acc.get("drop_ci95_points")
    text = fmt(acc["drop_points"], "+.2f")
    if ci:
        text += f" [{fmt_range(ci, '+.2f', ', ')}]" + (" noise" if acc.get("drop_within_noise") else "")
    return text


def _status(r: ReportRow) -> str:
    return NOT_AVAILABLE if r.not_available_here else STATUS.get(r.status, r.status)


def _notes(r: ReportRow) -> list[str]:
    """The row's reasons (but the not-available one, printed in full below the table), note and busy flag."""
    reasons = [x for x in r.reasons if not (r.not_available_here and x.startswith(FINISH_PREFIX))]
    return [*reasons, *([r.note] if r.note else []), *([r.busy()] if r.busy() else [])]


def summary_table(report: dict) -> Table:
    t = Table(title=TITLE, title_justify="left")
    for col, just in [("artifact", "left"), ("status", "center"), ("size MB", "right"), ("top-1", "right"),
                      ("Δ vs FP32 (pts) [95% CI]", "right"), ("agree", "right"), ("SNR dB", "right"),
                      ("p50 ms", "right"),
                      ("p90 ms", "right"), ("note", "left")]:
        t.add_column(col, justify=just, no_wrap=col != "note")
    for r in map(ReportRow.from_json, report["artifacts"]):
        acc = r.accuracy or {}
        lat = r.latency or {}
        t.add_row(
            esc(r.artifact), esc(_status(r)), fmt(r.size_mb, ".1f"),
            fmt(acc.get("top1"), ".4f"), _drop(acc),
            fmt(acc.get("agreement"), ".3f"), fmt((r.fidelity or {}).get("output_snr_db"), ".1f"),
            fmt(lat.get("p50_ms"), ".1f") + (" busy" if r.busy() else ""),
            fmt(lat.get("p90_ms"), ".1f"),
            esc("; ".join(_notes(r))[:240]),
        )
    return t


def recipe_notes(report: dict) -> list[str]:
    """One line per INT8 artifact whose recipe had an accuracy or fidelity budget: what it chose, on what,
    and what the layers it kept in higher precision cost in p50."""
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
            kind = "budget" if recipe.get("max_accuracy_drop") is not None else "fidelity budget"
            cost = budget.get("latency_cost")
            if cost:
                what += f", p50 x{fmt(cost['ratio'], '.2f')} vs plain INT8"
            out.append(f"{row['artifact']}: {kind} {', '.join(_bounds(recipe))} {met} on "
                       f"{budget.get('control_images', '?')} control images ({', '.join(_measured(budget))}); {what}")
    return out


def _bounds(recipe: dict) -> list[str]:
    parts = []
    if recipe.get("max_accuracy_drop") is not None:
        parts.append(f"{fmt(recipe['max_accuracy_drop'], 'g')} pts")
    if recipe.get("min_agreement") is not None:
        parts.append(f"agreement >= {fmt(recipe['min_agreement'], 'g')}")
    if recipe.get("min_output_snr_db") is not None:
        parts.append(f"SNR >= {fmt(recipe['min_output_snr_db'], 'g')} dB")
    return parts


def _measured(budget: dict) -> list[str]:
    parts = []
    if "control_drop_points" in budget:
        parts.append(f"drop {fmt(budget['control_drop_points'], '+.2f')}")
    if "control_agreement" in budget:
        parts.append(f"agreement {fmt(budget['control_agreement'], '.3f')}")
    if "control_output_snr_db" in budget:
        parts.append(f"SNR {fmt(budget['control_output_snr_db'], '.1f')} dB")
    return parts or ["nothing measured"]


def not_available_lines(report: dict) -> list[str]:
    """Below the table, each on its own line and never cut: what this host could not finish and the exact way
    to finish it, then whether that counts for the exit code."""
    rows = [r for r in map(ReportRow.from_json, report["artifacts"]) if r.not_available_here]
    if not rows:
        return []
    out = []
    for r in rows:
        out += [f"{r.artifact}: not available here; to finish it:", f"  {r.how_to_finish}"]
    if report.get("exit_code") == 0:
        out.append(f"{len(rows)} artifact(s) not available here: built and checked as far as this host allows; "
                   "not a failure (mark the target `required: true` or pass --strict to make it exit 3)")
    return out


def roofline_lines(report: dict) -> list[str]:
    """Below the table: each timed artifact's p50 as a share of this CPU's peak, then what the peak assumes."""
    rows = list(map(ReportRow.from_json, report["artifacts"]))
    shares = [f"{r.artifact} {cell}" for r in rows if (cell := roofline_cell(r.latency))]
    if not shares:
        return []
    return [f"roofline: {', '.join(shares)}", f"  {roofline_basis([r.latency for r in rows])}"]


def row_lines(report: dict) -> list[str]:
    """The same rows as `summary_table`, one block per artifact, for a terminal too narrow for the table: every
    name and number stays whole (rich would otherwise cut the columns down to a few characters each)."""
    out = []
    for r in map(ReportRow.from_json, report["artifacts"]):
        acc, lat = r.accuracy or {}, r.latency or {}
        out.append(f"{r.artifact}  {_status(r)}")
        cells = [("size", fmt(r.size_mb, ".1f"), " MB"), ("top-1", fmt(acc.get("top1"), ".4f"), ""),
                 ("Δ vs FP32 (pts)", _drop(acc), ""), ("agree", fmt(acc.get("agreement"), ".3f"), ""),
                 ("SNR", fmt((r.fidelity or {}).get("output_snr_db"), ".1f"), " dB"),
                 ("p50", fmt(lat.get("p50_ms"), ".1f"), " ms" + (" busy" if r.busy() else "")),
                 ("p90", fmt(lat.get("p90_ms"), ".1f"), " ms")]
        shown = [f"{k} {v}{unit}" for k, v, unit in cells if v != MISSING]
        if shown:
            out.append("  " + "  ".join(shown))
        out += [f"  note: {note}" for note in _notes(r)]
    return out


def print_summary(report: dict, console: Console, output) -> None:
    table = summary_table(report)
    table.columns[-1].min_width = 24  # the note column may wrap, but not below a readable width
    if Measurement.get(console, console.options.update_width(10_000), table).minimum <= console.width:
        console.print(table)
    else:
        console.print(TITLE)
        for line in row_lines(report):
            console.print(line, highlight=False, markup=False, soft_wrap=True)
    for line in not_available_lines(report):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    for line in roofline_lines(report):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    stages = report["stages"]
    ran = [s for s in stages if not s["cached"]]
    console.print(
        f"stages: {len(stages)} total, {len(stages) - len(ran)} cached, {len(ran)} ran; "
        f"wall time {fmt(report['wall_seconds'], '.1f')} s"
    )
    if ran and report.get("profile"):  # where the time went, by stage kind
        console.print("time by kind (own time of each stage; CPU = process + children):")
        for line in lines(report["profile"]):
            console.print(f"  {line}", highlight=False)
    for line in recipe_notes(report):
        console.print(esc(line))
    busy = [r.artifact for r in map(ReportRow.from_json, report["artifacts"]) if r.busy()]
    if busy:
        console.print(f"[bold yellow]busy machine:[/] the latency of {len(busy)} row(s) was measured while the load "
                      "average exceeded the core count; rerun on an idle machine before quoting it", highlight=False)
    cross = report.get("cross_quantizer") or {}
    if cross.get("flagged"):
        flagged = esc(", ".join(cross["flagged"]))
        console.print(f"[bold red]cross-quantizer check:[/] {flagged} far below the other INT8 "
                      f"artifacts (> {fmt(cross['max_gap_points'], 'g')} pts)")
    out = esc(output)
    console.print(f"report: {out}/report.json   html: {out}/report.html   "
                  f"artifacts (each with a README.md model card): {out}/artifacts/")
