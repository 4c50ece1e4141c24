"""report.html: one self-contained page per run (inline CSS and SVG; no script, no network), rendered
from `templates/report.html.j2` with autoescaping.

This module turns report.json into what the template shows: numbers already formatted by `numbers.py`
(the template formats nothing itself; `fmt` and `fmt_range` are its only number filters), charts as
SVG from `charts.py` / `charts_dist.py` (marked safe: they escape their own text). What it shows:
the summary (reasons and busy-machine notes on a line under their row, top-k only when k < classes),
accuracy vs latency (every point named, CIs on both axes), the latency distribution from the raw
timings, per-class Δ and confusion differences vs the FP32 reference, latency details with the
machine's load, per-layer error of every toolchain in one chart in network order, remote device rows,
the environment, stages and gates.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import jinja2
from markupsafe import Markup

from edgepipe.core.tempdirs import atomic_write_text
from edgepipe.reports import charts as svg_charts
from edgepipe.reports import charts_dist
from edgepipe.reports.escape import html as escape
from edgepipe.reports.numbers import MISSING, fmt, fmt_range
from edgepipe.reports.rows import ReportRow, roofline_basis, roofline_cell

TEMPLATES = Path(__file__).with_name("templates")
EXIT_TEXT = {0: "every artifact passed its gates", 1: "a gate failed or an artifact failed to build",
             3: "partial: some artifacts or devices could not be validated"}
MIN_DELTA_SPAN = 2.0  # points: the per-class Δ chart spans at least ±this


def _safe_text(value):
    """Every value a template prints: HTML-escaped with control characters replaced (edgepipe.reports.escape.html);
    markup the renderer built itself (charts) passes as is."""
    return value if isinstance(value, Markup) or value is None else Markup(escape(value))


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True,
                             lstrip_blocks=True, undefined=jinja2.StrictUndefined, finalize=_safe_text)
    env.filters.update(fmt=fmt, fmt_range=fmt_range)
    return env


def is_emulated(row: ReportRow) -> bool:
    return "emulated" in str(row.target or "") or bool(row.get("emulated"))


def _ci(pair, spec: str) -> str:
    return fmt_range(pair, spec) if pair else ""


def _summary_row(r: ReportRow) -> dict:
    acc, lat, par = r.accuracy or {}, r.latency or {}, r.parity
    drop, drop_ci, noise = MISSING, "", None
    if "drop_points" in acc:
        drop = fmt(acc["drop_points"], "+.2f")
        drop_ci = _ci(acc.get("drop_ci95_points"), "+.2f")
        noise = bool(acc.get("drop_within_noise")) if drop_ci else None
    rss = lat.get("peak_rss_mb", lat.get("rss_delta_mb"))
    notes = list(r.reasons) + ([r.note] if r.note else []) + ([r.busy()] if r.busy() else [])
    return {
        "artifact": r.artifact, "emulated": is_emulated(r), "status": str(r.status or ""),
        "status_text": "not available here" if r.not_available_here else str(r.status or ""),
        "busy": bool(r.busy()), "notes": notes,
        "size": fmt(r.size_mb, ".1f"), "top1": fmt(acc.get("top1"), ".4f"), "top1_ci": _ci(acc.get("top1_ci95"), ".3f"),
        "topk": fmt(acc.get("top5"), ".4f"), "drop": drop, "drop_ci": drop_ci, "noise": noise,
        "agree": fmt(acc.get("agreement"), ".3f"),
        "agree_ci": _ci((r.fidelity or {}).get("agreement_ci95"), ".3f"),
        "snr": fmt((r.fidelity or {}).get("output_snr_db"), ".1f"),
        "flips": (r.fidelity or {}).get("flipped"),
        "parity": (fmt(par["cosine_min"], ".6f"), fmt(par["max_abs"], ".1e")) if par else None,
        "p50": fmt(lat.get("p50_ms"), ".1f"), "p50_ci": _ci(lat.get("p50_ci95_ms"), ".1f"),
        "p90_p99": f"{fmt(lat.get('p90_ms'), '.1f')} / {fmt(lat.get('p99_ms'), '.1f')}",
        "e2e": fmt((lat.get("end_to_end") or {}).get("p50_ms"), ".1f"), "ips": fmt(lat.get("throughput_ips"), ".1f"),
        "rss": fmt(rss, ".0f"),
    }


def topk_label(rows: list[ReportRow], n_classes: int) -> str | None:
    """The top-k column's title; None (hidden) when every k covers all classes (top-k is then always 1)."""
    ks = {(r.accuracy or {}).get("top5_k") for r in rows} - {None}
    if not ks or (n_classes and all(k >= n_classes for k in ks)):
        return None
    return f"top-{next(iter(ks))}" if len(ks) == 1 else "top-5 (k capped at classes)"


def scatter(rows: list[ReportRow]) -> str:
    pts = []
    for r in rows:
        acc, lat = r.accuracy or {}, r.latency or {}
        if acc.get("top1") is None or lat.get("p50_ms") is None:
            continue
        label = r.artifact + (" (emulated)" if is_emulated(r) else "") + (" (busy machine)" if r.busy() else "")
        pts.append({"label": label, "x": lat["p50_ms"], "y": acc["top1"], "xerr": lat.get("p50_ci95_ms"),
                    "yerr": acc.get("top1_ci95"), "hollow": r.status == "reference", "front": r.status != "reference"})
    return svg_charts.scatter(pts, "latency p50 (ms, 95% CI)", "top-1 (95% CI)", "accuracy vs latency")


def latency_boxes(rows: list[ReportRow]) -> str:
    items = [{"label": r.artifact, "values": (r.latency or {}).get("timings_ms"),
              "note": "busy" if r.busy() else None} for r in rows]
    return charts_dist.boxes(items, "steady-state latency per image (ms)", "latency distribution")


def reference_row(rows: list[ReportRow]) -> ReportRow | None:
    return next((r for r in rows if r.status == "reference"), None)


def per_class_delta(rows: list[ReportRow], labels: list[str]) -> dict | None:
    """Per-class accuracy minus the reference's, in points: a chart and a table."""
    ref = reference_row(rows)
    ref_pc = (ref.accuracy or {}).get("per_class") if ref else None
    if not ref_pc:
        return None
    names = labels or [c["label"] for c in ref_pc]
    series, table = [], []
    for r in rows:
        pc = (r.accuracy or {}).get("per_class")
        if r is ref or not pc or len(pc) != len(ref_pc):
            continue
        d = [None if a["accuracy"] is None or b["accuracy"] is None else 100.0 * (a["accuracy"] - b["accuracy"])
             for a, b in zip(pc, ref_pc, strict=True)]
        series.append((r.artifact, d))
        table.append({"artifact": r.artifact, "cells": [
            {"text": fmt(v, "+.1f"), "cls": "" if not v else ("up" if v > 0 else "down")} for v in d]})
    if not series:
        return None
    span = max([MIN_DELTA_SPAN] + [abs(v) * 1.15 for _, d in series for v in d if v is not None])
    chart = svg_charts.grouped_bars(names, series, "Δ accuracy vs reference (points)",
                                    "per-class accuracy: Δ vs the FP32 reference", ymax=span, ymin=-span)
    return {"chart": Markup(chart), "classes": [f"{n} (n={c['n']})" for n, c in zip(names, ref_pc, strict=False)],
            "rows": table, "reference": ref.artifact}


def confusion_diffs(rows: list[ReportRow], labels: list[str]) -> dict | None:
    """The reference's confusion matrix once, then each artifact's difference from it; artifacts with
    the same difference share one matrix, and those identical to the reference are only named."""
    ref = reference_row(rows)
    ref_cm = (ref.accuracy or {}).get("confusion") if ref else None
    if not ref_cm:
        return None
    names = labels or [str(i) for i in range(len(ref_cm))]
    groups: dict[str, dict] = {}
    same = []
    for r in rows:
        cm = (r.accuracy or {}).get("confusion")
        if r is ref or not cm or len(cm) != len(ref_cm):
            continue
        diff = [[a - b for a, b in zip(ra, rb, strict=True)] for ra, rb in zip(cm, ref_cm, strict=True)]
        if not any(any(row) for row in diff):
            same.append(r.artifact)
            continue
        groups.setdefault(json.dumps(diff), {"diff": diff, "artifacts": []})["artifacts"].append(r.artifact)
    top = max([1] + [abs(v) for g in groups.values() for row in g["diff"] for v in row])

    def cell(v: int, diagonal: bool) -> dict:
        good = v > 0 if diagonal else v < 0
        alpha = fmt(0.15 + 0.6 * abs(v) / top, ".2f")
        return {"text": fmt(v, "+d") if v else "·",
                "style": (f"background:rgba({'22,163,74' if good else '220,38,38'},{alpha})" if v else "")}

    mx = max(max(row) for row in ref_cm) or 1
    base = [[{"text": str(v), "style": f"background:rgba(37,99,235,{fmt(0.08 + 0.8 * v / mx, '.2f')});"
                                        f"color:{'#fff' if v / mx > 0.5 else '#0f172a'}"} for v in row]
            for row in ref_cm]
    return {"reference": ref.artifact, "names": [n[:12] for n in names], "base": base, "same": same,
            "groups": [{"artifacts": g["artifacts"], "cells": [[cell(v, i == j) for j, v in enumerate(row)]
                                                               for i, row in enumerate(g["diff"])]}
                       for g in groups.values()]}


def _load_text(load: dict) -> tuple[str, str]:
    """(1-min load average before → after on N cores, "steal X% · when"): what the latency result
    recorded around the measurement, or dashes (a result cached before edgepipe recorded it)."""
    if not load:
        return MISSING, ""
    b, a = load.get("before") or {}, load.get("after") or {}
    avg = f"{fmt((b.get('loadavg') or [None])[0], '.2f')} → {fmt((a.get('loadavg') or [None])[0], '.2f')}"
    when = str(b.get("time", MISSING)).replace("T", " ").replace("+00:00", " UTC")
    return f"{avg} on {load.get('cores')} cores", f"steal {fmt(load.get('steal_pct'), '.1f')}% · {when}"


def latency_details(rows: list[ReportRow]) -> dict:
    table, sweeps = [], []
    for r in rows:
        lat = r.latency
        if not lat:
            continue
        if "p50_ms" not in lat:  # not measured here (e.g. no Edge TPU): say why, on one line
            table.append({"artifact": r.artifact, "emulated": is_emulated(r), "busy": False,
                          "skipped": str(lat.get("skipped") or lat)})
            continue
        e2e = lat.get("end_to_end") or {}
        mci = lat.get("mean_ci95_ms")
        rss = (f"peak {fmt(lat['peak_rss_mb'], '.0f')} MB (model +{fmt(lat.get('rss_model_mb', 0), '.0f')})"
               if "peak_rss_mb" in lat
               else f"delta {fmt(lat['rss_delta_mb'], '.0f')} MB (in-process)" if "rss_delta_mb" in lat else MISSING)
        load, when = _load_text(lat.get("load") or {})
        table.append({
            "artifact": r.artifact, "emulated": is_emulated(r), "busy": bool(r.busy()), "skipped": None,
            "cells": [fmt(lat.get("load_ms"), ".1f"), fmt(lat.get("first_ms"), ".1f"), fmt(lat.get("warmup"), "d"),
                      fmt(lat.get("runs"), "d"), fmt(lat.get("mean_ms"), ".2f"),
                      f"{fmt(e2e.get('p50_ms'), '.1f')} / {fmt(e2e.get('p90_ms'), '.1f')}",
                      fmt(e2e.get("preprocess_p50_ms"), ".2f"), fmt(lat.get("threads"), "d"),
                      roofline_cell(lat) or MISSING],
            "mean_ci": _ci(mci, ".2f"),
            "runtime": f"{lat.get('runtime') or MISSING} {lat.get('inference_precision', '')}".strip(),
            "rss": rss,
            "load": load, "when": when})
        for s in lat.get("thread_sweep") or []:
            sweeps.append({"artifact": r.artifact, "emulated": is_emulated(r), "threads": str(s["threads"]),
                           "cells": [fmt(s["p50_ms"], ".2f"), fmt(s["p90_ms"], ".2f"),
                                     fmt(s["throughput_ips"], ".1f")]})
    return {"rows": table, "sweeps": sweeps, "roofline": roofline_basis([r.latency for r in rows])}


def per_layer(rows: list[ReportRow]) -> dict | None:
    series = [(r.artifact, r.per_layer) for r in rows if r.per_layer]
    if not series:
        return None
    key = "snr_db" if all(x.get("snr_db") is not None for _, layers in series for x in layers) else "mse"
    title = "per-layer error " + ", ".join(name for name, _ in series)
    chart = charts_dist.layer_dots(series, key, "SNR dB (higher is better)" if key == "snr_db"
                                   else "MSE (lower is better)", title)
    worst = []
    if key == "snr_db":
        for name, layers in series:
            low = sorted(layers, key=lambda x: x.get("snr_db", 0.0))[:5]
            worst.append({"artifact": name, "layers": [
                f"{x['layer']} {fmt(x['snr_db'], '.1f')} dB (cos {fmt(x.get('cosine'), '.4f')})" for x in low]})
    return {"title": title, "chart": Markup(chart), "worst": worst, "key": key,
            "counts": [f"{name}: {len(layers)} layers" for name, layers in series]}


def generic_table(items: list[dict]) -> dict:
    """Rows of unknown schema (e.g. remote device benchmarks): scalar fields as columns."""
    cols: list[str] = []
    for it in items:
        for k, v in it.items():
            if k not in cols and (not isinstance(v, (dict, list)) or k in ("latency",)):
                cols.append(k)
    rows = []
    for it in items:
        cells = []
        for c in cols:
            v = it.get(c)
            if isinstance(v, dict):
                v = ", ".join(f"{k}={fmt(x, '.1f') if isinstance(x, float) else x}" for k, x in v.items()
                              if not isinstance(x, (dict, list)))
            elif isinstance(v, float):
                v = fmt(v, ".4g")
            text = "" if v is None else str(v)
            cells.append({"text": text, "cls": text if c == "status" else "l"})
        rows.append(cells)
    return {"cols": cols, "rows": rows}


def environment_rows(report: dict) -> list[tuple[str, str]]:
    env = report.get("environment") or {}
    rows = [("CPU", env.get("cpu")), ("machine", env.get("machine")), ("cores", env.get("cores")),
            ("threads", report.get("threads")), ("ISA flags", " ".join(env.get("isa_flags") or [])),
            ("python", env.get("python")), ("OS", env.get("os"))]
    rows += [(k, v) for k, v in (env.get("tools") or {}).items() if v]
    return [(str(k), str(v)) for k, v in rows]


def render(report: dict) -> str:
    rows = [ReportRow.from_json(r) for r in report.get("artifacts") or []]
    labels = list(report.get("labels") or [])
    n_classes = len(labels) or len(((rows[0].accuracy or {}).get("per_class") or []) if rows else [])
    model = report.get("model") or {}
    valid = (report.get("data") or {}).get("validation") or {}
    code = report.get("exit_code", 0)
    devices = report.get("devices")
    view = {
        "model_name": Path(str(model.get("path", "model"))).name,
        "model_sha": str(model.get("sha256", ""))[:16],
        "n_rows": len(rows), "valid_source": str(valid.get("source", "cached")),
        "valid_split": str(valid.get("split", "")),
        "valid_count": str(valid.get("count", MISSING)), "wall": fmt(report.get("wall_seconds", 0), ".1f"),
        "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "code": code, "banner": code if code in (0, 1, 3) else 1, "exit_text": EXIT_TEXT.get(code, "see reasons")
        + _not_available(report),
        "busy": [r.artifact for r in rows if r.busy()],
        "topk": topk_label(rows, n_classes),
        "summary": [_summary_row(r) for r in rows],
        "scatter": Markup(scatter(rows)),
        "boxes": Markup(latency_boxes(rows)),
        "per_class": per_class_delta(rows, labels),
        "confusion": confusion_diffs(rows, labels),
        "latency": latency_details(rows),
        "per_layer": per_layer(rows),
        "devices": generic_table(devices if isinstance(devices, list) else [devices]) if devices else None,
        "environment": environment_rows(report),
        "stages": [{"stage": s["stage"], "state": "cached" if s["cached"] else "ran",
                    "seconds": fmt(s["seconds"], ".1f")} for s in report.get("stages") or []],
        "gates": json.dumps(report.get("gates"), indent=1),
    }
    return environment().get_template("report.html.j2").render(**view)


def write_html(report: dict, path: Path) -> Path:
    return atomic_write_text(Path(path), render(report))


def _not_available(report: dict) -> str:
    """The banner's note when some artifacts could not be finished on this host (their reasons say how)."""
    names = report.get("not_available_here") or []
    if not names:
        return ""
    counted = "they make the run partial" if report.get("exit_code") == 3 else "not counted as a failure"
    return f"; not available here: {', '.join(names)} ({counted}; each row's reasons say how to finish it)"
