"""Inline-SVG charts of many values per artifact: the latency distribution (`boxes`, from the raw
timings) and the per-layer error across toolchains (`layer_dots`, layers in network order)."""

from __future__ import annotations

from edgepipe.reports.charts import FONT, PALETTE, Frame, svg, wants_log
from edgepipe.reports.escape import html as escape
from edgepipe.reports.numbers import coord, fmt, tick

MAX_OUTLIERS = 40  # drawn per box: the most extreme ones


def quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of an ascending list."""
    n = len(sorted_values)
    pos = q * (n - 1)
    i = int(pos)
    return sorted_values[i] if i + 1 >= n else sorted_values[i] + (sorted_values[i + 1] - sorted_values[i]) * (pos - i)


def box_stats(values: list[float]) -> dict:
    """Quartiles, Tukey whiskers (the most extreme values within 1.5 IQR of the box) and outliers."""
    v = sorted(values)
    q1, med, q3 = (quantile(v, q) for q in (0.25, 0.5, 0.75))
    iqr = q3 - q1
    inside = [x for x in v if q1 - 1.5 * iqr <= x <= q3 + 1.5 * iqr] or v
    outliers = [x for x in v if x < inside[0] or x > inside[-1]]
    return {"n": len(v), "q1": q1, "median": med, "q3": q3, "lo": inside[0], "hi": inside[-1], "outliers": outliers}


def boxes(items: list[dict], xlabel: str, title: str, w: int = 960) -> str:
    """items: {label, values, note?}: one horizontal box per item, on a shared (log when wide) axis."""
    items = [it for it in items if it.get("values")]
    if not items:
        return ""
    stats = [box_stats(it["values"]) for it in items]
    allv = [x for s in stats for x in (s["lo"], s["hi"], *s["outliers"])]
    xlog = wants_log(allv)
    hi = max(allv)
    xr = (min(v for v in allv if v > 0) / 1.2, hi * 1.2) if xlog else (0.0, hi * 1.05 or 1.0)
    row = 30
    h = 60 + row * len(items)
    f = Frame(w, h, xr, (0, len(items)), left=250, right=230, top=10, bottom=45, xlog=xlog)
    body = f.axes(xlabel, "", yticks=False)
    for i, (it, s) in enumerate(zip(items, stats, strict=True)):
        c = PALETTE[i % len(PALETTE)]
        cy = f.y0 + row * i + row / 2
        a, b = f.x(s["q1"]), f.x(s["q3"])
        body.append(f'<text x="{f.x0 - 8}" y="{coord(cy + 4)}" text-anchor="end" {FONT}>{escape(it["label"])}</text>')
        body.append(f'<line x1="{coord(f.x(s["lo"]))}" x2="{coord(f.x(s["hi"]))}" y1="{coord(cy)}" y2="{coord(cy)}" '
                    f'stroke="{c}" stroke-width="1.5"/>')
        for end in (s["lo"], s["hi"]):
            body.append(f'<line x1="{coord(f.x(end))}" x2="{coord(f.x(end))}" y1="{coord(cy - 6)}" '
                        f'y2="{coord(cy + 6)}" stroke="{c}" stroke-width="1.5"/>')
        body.append(f'<rect x="{coord(a)}" y="{coord(cy - 9)}" width="{coord(max(b - a, 1))}" height="18" '
                    f'fill="{c}" fill-opacity="0.25" stroke="{c}"><title>{escape(it["label"])}: median '
                    f'{fmt(s["median"], ".3g")} ms, IQR {fmt(s["q1"], ".3g")}..{fmt(s["q3"], ".3g")} ms, '
                    f'n={s["n"]}</title></rect>')
        body.append(f'<line x1="{coord(f.x(s["median"]))}" x2="{coord(f.x(s["median"]))}" y1="{coord(cy - 9)}" '
                    f'y2="{coord(cy + 9)}" stroke="{c}" stroke-width="3"/>')
        extreme = sorted(s["outliers"], key=lambda x: abs(x - s["median"]))[-MAX_OUTLIERS:]
        body += [f'<circle cx="{coord(f.x(x))}" cy="{coord(cy)}" r="2.5" fill="none" stroke="{c}"/>' for x in extreme]
        note = f'median {fmt(s["median"], ".3g")} ms, n={s["n"]}' + (f' · {it["note"]}' if it.get("note") else "")
        body.append(f'<text x="{f.x1 + 8}" y="{coord(cy + 4)}" {FONT} fill="#475569">{escape(note)}</text>')
    return svg(w, h, body, title)


def depth_order(series: list[tuple[str, list[dict]]]) -> list[str]:
    """Layer names in network order across toolchains. Each toolchain reports its worst layers with their
    `position` in its graph (topological order); the orders are merged so that every toolchain's order is
    kept (a topological sort of "comes before" between its consecutive layers), ties and any disagreement
    settled by the layer's mean relative position (0 = the first reported layer, 1 = the last)."""
    rel: dict[str, list[float]] = {}
    after: dict[str, set[str]] = {}
    for _, rows in series:
        seq = sorted(rows, key=lambda r: r.get("position") or 0)
        lo = seq[0].get("position") or 0
        span = ((seq[-1].get("position") or 0) - lo) or 1
        names = []
        for r in seq:
            name = str(r.get("layer"))
            rel.setdefault(name, []).append(((r.get("position") or 0) - lo) / span)
            if not names or names[-1] != name:
                names.append(name)
        for a, b in zip(names, names[1:], strict=False):
            if a != b:
                after.setdefault(a, set()).add(b)
    mean = {k: sum(v) / len(v) for k, v in rel.items()}
    indegree = {k: 0 for k in rel}
    for bs in after.values():
        for b in bs:
            indegree[b] += 1
    out: list[str] = []
    remaining = set(rel)
    while remaining:
        ready = [k for k in remaining if indegree[k] == 0] or list(remaining)  # a cycle: by mean position
        nxt = min(ready, key=lambda k: (mean[k], k))
        out.append(nxt)
        remaining.discard(nxt)
        for b in after.get(nxt, ()):
            indegree[b] -= 1
    return out


SHAPES = ("circle", "square", "diamond", "triangle")


def _marker(shape: str, x: float, y: float, c: str, tip: str) -> str:
    t = f"<title>{escape(tip)}</title>"
    if shape == "square":
        return f'<rect x="{coord(x - 4)}" y="{coord(y - 4)}" width="8" height="8" fill="{c}">{t}</rect>'
    if shape == "diamond":
        pts = f"{coord(x)},{coord(y - 5)} {coord(x + 5)},{coord(y)} {coord(x)},{coord(y + 5)} {coord(x - 5)},{coord(y)}"
        return f'<polygon points="{pts}" fill="{c}">{t}</polygon>'
    if shape == "triangle":
        pts = f"{coord(x)},{coord(y - 5)} {coord(x + 5)},{coord(y + 4)} {coord(x - 5)},{coord(y + 4)}"
        return f'<polygon points="{pts}" fill="{c}">{t}</polygon>'
    return f'<circle cx="{coord(x)}" cy="{coord(y)}" r="4.5" fill="{c}">{t}</circle>'


def layer_dots(series: list[tuple[str, list[dict]]], key: str, xlabel: str, title: str, w: int = 960) -> str:
    """One row per layer (network order, first at the top), one marker per toolchain (colour and shape,
    named in the legend): `key` (e.g. snr_db) of each per-layer row."""
    series = [(name, [r for r in rows if r.get(key) is not None]) for name, rows in series]
    series = [(name, rows) for name, rows in series if rows]
    if not series:
        return ""
    layers = depth_order(series)
    vals = [float(r[key]) for _, rows in series for r in rows]
    row = 15
    legend = 20 * len(series)
    h = 70 + legend + row * len(layers)
    f = Frame(w, h, (min(0.0, min(vals)), max(vals) * 1.05 or 1.0), (0, 1), left=250, right=30,
              top=10 + legend, bottom=45)
    body = f.axes(xlabel, "", yticks=False)
    for s, (name, _) in enumerate(series):
        body.append(_marker(SHAPES[s % len(SHAPES)], f.x0 + 8, 12 + 20 * s, PALETTE[s % len(PALETTE)], name)
                    + f'<text x="{f.x0 + 20}" y="{16 + 20 * s}" {FONT}>{escape(name)}</text>')
    ys = {name: f.y0 + row * i + row / 2 + 2 for i, name in enumerate(layers)}
    for name, y in ys.items():
        body.append(f'<line x1="{f.x0}" x2="{f.x1}" y1="{coord(y)}" y2="{coord(y)}" stroke="#eef2f7"/>'
                    f'<text x="{f.x0 - 6}" y="{coord(y + 4)}" text-anchor="end" {FONT}>{escape(name[-36:])}</text>')
    for s, (name, rows) in enumerate(series):
        c, shape = PALETTE[s % len(PALETTE)], SHAPES[s % len(SHAPES)]
        for r in rows:
            v = float(r[key])
            body.append(_marker(shape, f.x(v), ys[str(r.get("layer"))], c, f"{name} {r.get('layer')}: {tick(v)}"))
    return svg(w, h, body, title)
