"""report.html: one self-contained page per run (inline CSS and SVG; no script, no network).

Summary table, accuracy-vs-latency scatter with the Pareto front, per-class bars and
confusion matrices, latency details (end to end, thread sweep), per-layer error when rows
carry `per_layer`, remote device rows (`report["devices"]`), the environment and stages.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from html import escape
from pathlib import Path

from pipeline.reports import charts as svg_charts
from pipeline.reports.numbers import MISSING, fmt, fmt_range
from pipeline.reports.rows import ReportRow

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1400px;color:#0f172a;
background:#fff;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:2px solid #e2e8f0;padding-bottom:4px}
.meta{color:#475569;font-size:13px}
table{border-collapse:collapse;font-size:12px;margin:6px 0}.wrap{overflow-x:auto;max-width:100%}
th,td{border:1px solid #e2e8f0;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#1e293b;color:#fff;font-weight:600;white-space:normal;vertical-align:bottom}td.l,th.l{text-align:left}
tr:nth-child(even) td{background:#f8fafc}
.passed{background:#dcfce7!important;color:#166534;font-weight:600}
.failed,.error{background:#fee2e2!important;color:#991b1b;font-weight:600}
.partial,.unreachable{background:#fef3c7!important;color:#92400e;font-weight:600}
.reference{background:#e0e7ff!important;color:#3730a3;font-weight:600}
.emu{display:inline-block;background:#fde68a;color:#78350f;border-radius:3px;padding:0 4px;font-size:11px;
margin-left:4px}
.noise{color:#166534}.sig{color:#991b1b}.reason{white-space:normal;text-align:left;max-width:380px;color:#991b1b}
.grid{display:flex;flex-wrap:wrap;gap:16px}.card{border:1px solid #e2e8f0;border-radius:6px;padding:8px}
.banner{padding:10px 14px;border-radius:6px;font-weight:600;margin:10px 0}
.b0{background:#dcfce7;color:#166534}.b1{background:#fee2e2;color:#991b1b}.b3{background:#fef3c7;color:#92400e}
"""

EXIT_TEXT = {0: "every artifact passed its gates", 1: "a gate failed or an artifact failed to build",
             3: "partial: some artifacts or devices could not be validated"}


def _f(v, spec=".4f") -> str:
    return escape(fmt(v, spec))


def _is_emulated(row: ReportRow) -> bool:
    return "emulated" in str(row.target or "") or bool(row.get("emulated"))


def _name(row: ReportRow) -> str:
    return escape(row.artifact) + ('<span class="emu">emulated</span>' if _is_emulated(row) else "")


def _summary(rows: list[ReportRow]) -> str:
    ks = {(r.accuracy or {}).get("top5_k") for r in rows} - {None}
    topk = f"top-{ks.pop()}" if len(ks) == 1 else "top-5 (k capped at classes)"
    head = ["artifact", "target", "precision", "status", "size MB", "top-1", topk, "Δ vs FP32 pts (95% CI)",
            "agree", "parity cos / max|Δ|", "p50 ms (95% CI)", "p90 ms", "p99 ms", "end-to-end p50 ms",
            "img/s", "peak RSS MB", "reasons"]
    out = ["<div class='wrap'><table id='summary'><thead><tr>",
           "".join(f"<th class='{'l' if h in ('artifact', 'target', 'reasons') else ''}'>{h}</th>" for h in head),
           "</tr></thead><tbody>"]
    for r in rows:
        acc, lat, par = r.accuracy or {}, r.latency or {}, r.parity
        drop = MISSING
        if "drop_points" in acc:
            ci = acc.get("drop_ci95_points")
            cls = "noise" if acc.get("drop_within_noise") else "sig"
            drop = fmt(acc["drop_points"], "+.2f")
            if ci:
                note = ", within noise" if cls == "noise" else ""
                drop += f" <span class='{cls}'>({fmt_range(ci, '+.2f')}{note})</span>"
        ci50 = lat.get("p50_ci95_ms")
        p50 = _f(lat.get("p50_ms"), ".1f") + (f" ({fmt_range(ci50, '.1f')})" if ci50 else "")
        e2e = (lat.get("end_to_end") or {}).get("p50_ms")
        rss = lat.get("peak_rss_mb", lat.get("rss_delta_mb"))
        parity = f"{fmt(par['cosine_min'], '.6f')} / {fmt(par['max_abs'], '.1e')}" if par else MISSING
        top5 = _f(acc.get("top5"))
        out.append(
            f"<tr><td class='l'>{_name(r)}</td><td class='l'>{escape(str(r.get('target', '')))}</td>"
            f"<td>{escape(str(r.get('precision', '')))}</td>"
            f"<td class='{escape(str(r.status))}'>{escape(str(r.status))}</td>"
            f"<td>{_f(r.size_mb, '.1f')}</td><td>{_f(acc.get('top1'))}</td>"
            f"<td>{top5}</td>"
            f"<td>{drop}</td><td>{_f(acc.get('agreement'), '.3f')}</td><td>{parity}</td><td>{p50}</td>"
            f"<td>{_f(lat.get('p90_ms'), '.1f')}</td><td>{_f(lat.get('p99_ms'), '.1f')}</td>"
            f"<td>{_f(e2e, '.1f')}</td><td>{_f(lat.get('throughput_ips'), '.1f')}</td><td>{_f(rss, '.0f')}</td>"
            f"<td class='reason'>{escape('; '.join(r.reasons))}</td></tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _scatter(rows: list[ReportRow]) -> str:
    pts = []
    for r in rows:
        acc, lat = r.accuracy or {}, r.latency or {}
        if acc.get("top1") is None or lat.get("p50_ms") is None:
            continue
        pts.append({"label": r.artifact + (" (emulated)" if _is_emulated(r) else ""), "x": lat["p50_ms"],
                    "y": acc["top1"], "xerr": lat.get("p50_ci95_ms"), "hollow": r.status == "reference",
                    "front": r.status != "reference"})
    return svg_charts.scatter(pts, "latency p50 (ms, 95% CI)", "top-1", "accuracy vs latency")


def _per_class(rows: list[ReportRow], labels: list[str]) -> str:
    series = []
    for r in rows:
        pc = (r.accuracy or {}).get("per_class")
        if pc:
            series.append((r.artifact, [c["accuracy"] for c in pc]))
    groups = labels or [c["label"] for c in (rows[0].accuracy or {}).get("per_class", [])]
    return svg_charts.grouped_bars(groups, series, "accuracy", "per-class accuracy")


def _confusions(rows: list[ReportRow], labels: list[str]) -> str:
    cards = []
    for r in rows:
        cm = (r.accuracy or {}).get("confusion")
        if not cm:
            continue
        mx = max(max(row) for row in cm) or 1
        names = labels or [str(i) for i in range(len(cm))]
        t = [f"<div class='card'><b>{_name(r)}</b><table><tr><th class='l'>true \\ pred</th>"
             + "".join(f"<th>{escape(n[:10])}</th>" for n in names) + "</tr>"]
        for i, row in enumerate(cm):
            cells = "".join(
                f"<td style='background:rgba(37,99,235,{fmt(0.08 + 0.8 * v / mx, '.2f')});"
                f"color:{'#fff' if v / mx > 0.5 else '#0f172a'}'>{v}</td>" for v in row)
            t.append(f"<tr><td class='l'>{escape(names[i] if i < len(names) else str(i))}</td>{cells}</tr>")
        t.append("</table></div>")
        cards.append("".join(t))
    return "<div class='grid'>" + "".join(cards) + "</div>" if cards else ""


def _latency_details(rows: list[ReportRow]) -> str:
    out = ["<div class='wrap'><table><tr><th class='l'>artifact</th><th>load ms</th><th>first ms</th>"
           "<th>warmup</th><th>runs</th>"
           "<th>mean ms (95% CI)</th><th>e2e p50 / p90 ms</th><th>preprocess p50 ms</th><th>threads</th>"
           "<th class='l'>runtime</th><th class='l'>RSS</th></tr>"]
    sweeps = []
    for r in rows:
        lat = r.latency
        if not lat:
            continue
        e2e = lat.get("end_to_end") or {}
        mci = lat.get("mean_ci95_ms")
        rss = (f"peak {_f(lat['peak_rss_mb'], '.0f')} MB (model +{_f(lat.get('rss_model_mb', 0), '.0f')})"
               if "peak_rss_mb" in lat
               else f"delta {_f(lat['rss_delta_mb'], '.0f')} MB (in-process)" if "rss_delta_mb" in lat else MISSING)
        out.append(
            f"<tr><td class='l'>{_name(r)}</td><td>{_f(lat.get('load_ms'), '.1f')}</td>"
            f"<td>{_f(lat.get('first_ms'), '.1f')}</td><td>{_f(lat.get('warmup'), 'd')}</td>"
            f"<td>{_f(lat.get('runs'), 'd')}</td><td>{_f(lat.get('mean_ms'), '.2f')}"
            f"{' (' + fmt_range(mci, '.2f') + ')' if mci else ''}</td>"
            f"<td>{_f(e2e.get('p50_ms'), '.1f')} / {_f(e2e.get('p90_ms'), '.1f')}</td>"
            f"<td>{_f(e2e.get('preprocess_p50_ms'), '.2f')}</td><td>{_f(lat.get('threads'), 'd')}</td>"
            f"<td class='l'>{escape(str(lat.get('runtime')))} {escape(str(lat.get('inference_precision', '')))}</td>"
            f"<td class='l'>{rss}</td></tr>")
        for s in lat.get("thread_sweep") or []:
            sweeps.append(f"<tr><td class='l'>{_name(r)}</td><td>{s['threads']}</td>"
                          f"<td>{_f(s['p50_ms'], '.2f')}</td><td>{_f(s['p90_ms'], '.2f')}</td>"
                          f"<td>{_f(s['throughput_ips'], '.1f')}</td></tr>")
    out.append("</table></div>")
    if sweeps:
        out.append("<h3>Thread sweep</h3><table><tr><th class='l'>artifact</th><th>threads</th><th>p50 ms</th>"
                   "<th>p90 ms</th><th>img/s</th></tr>" + "".join(sweeps) + "</table>")
    return "".join(out)


def _per_layer(rows: list[ReportRow]) -> str:
    out = []
    for r in rows:
        layers = r.per_layer
        if not layers:
            continue
        key = "snr_db" if all(x.get("snr_db") is not None for x in layers) else "mse"
        shown = layers[:80]
        out.append(f"<h3>{_name(r)}: {key} per layer ({len(shown)} of {len(layers)})</h3>")
        out.append(svg_charts.hbars([str(x.get("layer")) for x in shown], [float(x[key]) for x in shown],
                                    "SNR dB (higher is better)" if key == "snr_db" else "MSE (lower is better)",
                                    f"per-layer error {r.artifact}"))
        worst = sorted(layers, key=lambda x: x.get("snr_db", 0.0))[:5] if key == "snr_db" else []
        if worst:
            out.append("<p class='meta'>lowest SNR: " + ", ".join(
                f"{escape(str(x['layer']))} {_f(x['snr_db'], '.1f')} dB (cos {_f(x.get('cosine'), '.4f')})"
                for x in worst)
                + "</p>")
    return "".join(out)


def _generic_table(items: list[dict], table_id: str) -> str:
    """Rows of unknown schema (e.g. remote device benchmarks): scalar fields as columns."""
    cols: list[str] = []
    for it in items:
        for k, v in it.items():
            if k not in cols and (not isinstance(v, (dict, list)) or k in ("latency",)):
                cols.append(k)
    out = [f"<div class='wrap'><table id='{table_id}'><tr>" + "".join(f"<th class='l'>{escape(c)}</th>" for c in cols)
           + "</tr>"]
    for it in items:
        cells = []
        for c in cols:
            v = it.get(c)
            if isinstance(v, dict):
                v = ", ".join(f"{k}={_f(x, '.1f') if isinstance(x, float) else x}" for k, x in v.items()
                              if not isinstance(x, (dict, list)))
            elif isinstance(v, float):
                v = fmt(v, ".4g")
            cls = escape(str(v)) if c == "status" else "l"
            cells.append(f"<td class='{cls}'>{escape('' if v is None else str(v))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table></div>")
    return "".join(out)


def _environment(report: dict) -> str:
    env = report.get("environment") or {}
    rows = [("CPU", env.get("cpu")), ("machine", env.get("machine")), ("cores", env.get("cores")),
            ("threads", report.get("threads")), ("ISA flags", " ".join(env.get("isa_flags") or [])),
            ("python", env.get("python")), ("OS", env.get("os"))]
    rows += [(k, v) for k, v in (env.get("tools") or {}).items() if v]
    return "<table id='environment'>" + "".join(
        f"<tr><td class='l'><b>{escape(str(k))}</b></td><td class='l'>{escape(str(v))}</td></tr>" for k, v in rows
    ) + "</table>"


def _stages(report: dict) -> str:
    st = report.get("stages") or []
    if not st:
        return ""
    body = "".join(f"<tr><td class='l'>{escape(s['stage'])}</td><td>{'cached' if s['cached'] else 'ran'}</td>"
                   f"<td>{_f(s['seconds'], '.1f')}</td></tr>" for s in st)
    return f"<table><tr><th class='l'>stage</th><th>state</th><th>seconds</th></tr>{body}</table>"


def render(report: dict) -> str:
    rows = [ReportRow.from_json(r) for r in report.get("artifacts") or []]
    labels = report.get("labels") or []
    code = report.get("exit_code", 0)
    model = report.get("model") or {}
    valid = (report.get("data") or {}).get("validation") or {}
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>edgepipe report: {escape(Path(str(model.get('path', ''))).name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>edgepipe report: {escape(Path(str(model.get('path', 'model'))).name)}</h1>",
        f"<div class='meta'>model sha256 {escape(str(model.get('sha256', ''))[:16])}… · "
        f"{len(rows)} rows · validation: {escape(str(valid.get('source', 'cached')))} "
        f"{escape(str(valid.get('split', '')))} ({valid.get('count', '—')} images) · "
        f"wall {_f(report.get('wall_seconds', 0), '.1f')} s · generated {when}</div>",
        f"<div class='banner b{code if code in (0, 1, 3) else 1}'>exit code {code}: "
        f"{escape(EXIT_TEXT.get(code, 'see reasons'))}</div>",
        "<h2>Summary</h2>", _summary(rows),
        "<p class='meta'>Δ is the FP32 reference's top-1 minus the artifact's, in points, with a paired bootstrap "
        "95% CI over images (1000 resamples, seed 0); a CI that contains 0 is reported as within noise. Latency: "
        "single image, batch 1, real preprocessed inputs; the p50 CI is an order-statistic interval. "
        "End-to-end adds reading, decoding, resizing and scaling the image file.</p>",
        "<h2>Accuracy vs latency</h2>", _scatter(rows),
        "<h2>Per-class accuracy</h2>", _per_class(rows, labels), _confusions(rows, labels),
        "<h2>Latency details</h2>", _latency_details(rows),
    ]
    layer = _per_layer(rows)
    if layer:
        parts += ["<h2>Per-layer error</h2>", layer]
    devices = report.get("devices")
    if devices:
        parts += ["<h2>Devices</h2>", _generic_table(devices if isinstance(devices, list) else [devices], "devices")]
    parts += ["<h2>Environment</h2>", _environment(report), "<h2>Stages</h2>", _stages(report),
              f"<h2>Gates</h2><pre>{escape(json.dumps(report.get('gates'), indent=1))}</pre>", "</body></html>"]
    return "\n".join(p for p in parts if p)


def write_html(report: dict, path: Path) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(render(report), encoding="utf-8")
    os.replace(tmp, path)
    return path
