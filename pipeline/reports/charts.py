"""Small inline-SVG charts for the HTML report (no JavaScript, no network, no plotting library).

`scatter` (accuracy vs latency: every point named, CIs on both axes, the Pareto front),
`grouped_bars` (per class; signed values around a zero line), `hbars`; the distribution and
per-layer charts are in `charts_dist.py`. Every number is formatted by `numbers.py`, every text escaped.
"""

from __future__ import annotations

import math

from edgepipe.reports.escape import html as escape
from edgepipe.reports.numbers import coord, fmt, tick

PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#475569"]
FONT = 'font-family="system-ui, sans-serif" font-size="12"'
LOG_RATIO = 10  # a latency axis whose max / min exceeds this is logarithmic


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.floor(lo / step) * step
    out, v = [], start
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks per decade covering [lo, hi] (lo > 0)."""
    out = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        out += [m * 10.0 ** e for m in (1, 2, 5)]
    inside = [t for t in out if lo <= t <= hi]
    below, above = [t for t in out if t < lo], [t for t in out if t > hi]
    return (below[-1:] + inside + above[:1]) if inside else below[-1:] + above[:1]


def wants_log(values: list[float]) -> bool:
    pos = [v for v in values if v > 0]
    return bool(pos) and max(pos) / min(pos) > LOG_RATIO


class Frame:
    """Axes with ticks: maps data coordinates into a plot area (x optionally logarithmic)."""

    def __init__(self, w, h, xr, yr, left=60, right=20, top=20, bottom=45, xlog=False):
        self.w, self.h, self.xlog = w, h, xlog
        self.x0, self.x1, self.y0, self.y1 = left, w - right, top, h - bottom
        self.xt = _log_ticks(*xr) if xlog else _ticks(*xr)
        self.yt = _ticks(*yr)
        self.xr = (min(self.xt[0], xr[0]), max(self.xt[-1], xr[1]))
        self.yr = (min(self.yt[0], yr[0]), max(self.yt[-1], yr[1]))

    def x(self, v):
        if self.xlog:
            lo, hi = math.log10(self.xr[0]), math.log10(self.xr[1])
            return self.x0 + (math.log10(max(v, self.xr[0])) - lo) / ((hi - lo) or 1) * (self.x1 - self.x0)
        return self.x0 + (v - self.xr[0]) / ((self.xr[1] - self.xr[0]) or 1) * (self.x1 - self.x0)

    def y(self, v):
        return self.y1 - (v - self.yr[0]) / ((self.yr[1] - self.yr[0]) or 1) * (self.y1 - self.y0)

    def axes(self, xlabel, ylabel, xticks=True, yticks=True) -> list[str]:
        s = [f'<rect x="{self.x0}" y="{self.y0}" width="{self.x1 - self.x0}" height="{self.y1 - self.y0}" '
             'fill="#f8fafc" stroke="#cbd5e1"/>']
        for t in self.yt if yticks else []:
            y = self.y(t)
            s.append(f'<line x1="{self.x0}" x2="{self.x1}" y1="{coord(y)}" y2="{coord(y)}" stroke="#e2e8f0"/>')
            s.append(f'<text x="{self.x0 - 6}" y="{coord(y + 4)}" text-anchor="end" {FONT}>{tick(t)}</text>')
        for t in self.xt if xticks else []:
            x = self.x(t)
            s.append(f'<line y1="{self.y0}" y2="{self.y1}" x1="{coord(x)}" x2="{coord(x)}" stroke="#e2e8f0"/>')
            s.append(f'<text x="{coord(x)}" y="{self.y1 + 16}" text-anchor="middle" {FONT}>{tick(t)}</text>')
        s.append(f'<text x="{coord((self.x0 + self.x1) / 2)}" y="{self.h - 8}" text-anchor="middle" {FONT}>'
                 f'{escape(xlabel + (" (log scale)" if self.xlog else ""))}</text>')
        s.append(f'<text transform="translate(14,{coord((self.y0 + self.y1) / 2)}) rotate(-90)" text-anchor="middle" '
                 f'{FONT}>{escape(ylabel)}</text>')
        return s


def svg(w, h, body: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
            f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>' + "".join(body) + "</svg>")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (lower x and higher y are better), sorted by x."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def spread(wanted: list[float], gap: float, lo: float, hi: float) -> list[float]:
    """Positions as close to `wanted` as possible, at least `gap` apart, inside [lo, hi] (label placement)."""
    order = sorted(range(len(wanted)), key=lambda i: wanted[i])
    pos = [0.0] * len(wanted)
    last = lo - gap
    for i in order:
        last = max(wanted[i], last + gap)
        pos[i] = last
    overflow = (max(pos) if pos else lo) - hi
    if overflow > 0:  # push the column back up, keeping the gaps, never above `lo`
        last = hi + gap
        for i in reversed(order):
            last = min(pos[i], last - gap)
            pos[i] = max(lo, last)
    return pos


def scatter(points: list[dict], xlabel: str, ylabel: str, title: str, w: int = 960, h: int = 420,
            y_min_span: float = 0.05, y_bounds: tuple[float, float] | None = (0.0, 1.0)) -> str:
    """points: {label, x, y, xerr?: (lo, hi), yerr?: (lo, hi), hollow?, front?}. Every point is named in a
    label column at the right, joined to it by a leader line. The y axis spans at least `y_min_span`
    (so a difference of a few images does not fill the chart), inside `y_bounds`; the x axis is
    logarithmic when the values differ by more than LOG_RATIO. Draws the Pareto front."""
    if not points:
        return ""
    xs = [p["x"] for p in points] + [v for p in points for v in p.get("xerr") or ()]
    ys = [p["y"] for p in points] + [v for p in points for v in p.get("yerr") or ()]
    ylo, yhi = min(ys), max(ys)
    pad = max((y_min_span - (yhi - ylo)) / 2, (yhi - ylo) * 0.08)
    ylo, yhi = ylo - pad, yhi + pad
    if y_bounds:
        if ylo < y_bounds[0]:
            ylo, yhi = y_bounds[0], min(y_bounds[1], yhi + (y_bounds[0] - ylo))
        if yhi > y_bounds[1]:
            ylo, yhi = max(y_bounds[0], ylo - (yhi - y_bounds[1])), y_bounds[1]
    xlog = wants_log(xs)
    if xlog:
        xr = (min(v for v in xs if v > 0) / 1.3, max(xs) * 1.3)
    else:
        xr = (0.0, max(xs) * 1.08 or 1.0)
    f = Frame(w, h, xr, (ylo, yhi), right=260, xlog=xlog)
    body = f.axes(xlabel, ylabel)
    cand = [i for i, p in enumerate(points) if p.get("front", True)]  # e.g. not the non-deployable reference
    front = [cand[i] for i in pareto_front([(points[i]["x"], points[i]["y"]) for i in cand])]
    if len(front) > 1:
        pts = " ".join(f"{coord(f.x(points[i]['x']))},{coord(f.y(points[i]['y']))}" for i in front)
        body.append(f'<polyline points="{pts}" fill="none" stroke="#f59e0b" stroke-width="2.5" '
                    'stroke-dasharray="6 4"/>')
    label_y = spread([f.y(p["y"]) for p in points], 16, f.y0 + 6, f.y1 - 6)
    for i, p in enumerate(points):
        c = PALETTE[i % len(PALETTE)]
        px, py = f.x(p["x"]), f.y(p["y"])
        for key, horizontal in (("xerr", True), ("yerr", False)):
            lo_hi = p.get(key)
            if not lo_hi:
                continue
            a, b = (f.x(v) for v in lo_hi) if horizontal else (f.y(v) for v in lo_hi)
            line = (f'x1="{coord(a)}" x2="{coord(b)}" y1="{coord(py)}" y2="{coord(py)}"' if horizontal
                    else f'x1="{coord(px)}" x2="{coord(px)}" y1="{coord(a)}" y2="{coord(b)}"')
            caps = ([(a, py), (b, py)] if horizontal else [(px, a), (px, b)])
            body.append(f'<line {line} stroke="{c}" stroke-width="1.5"/>' + "".join(
                f'<line x1="{coord(cx - (0 if horizontal else 4))}" x2="{coord(cx + (0 if horizontal else 4))}" '
                f'y1="{coord(cy - (4 if horizontal else 0))}" y2="{coord(cy + (4 if horizontal else 0))}" '
                f'stroke="{c}" stroke-width="1.5"/>' for cx, cy in caps))
        ring = ' stroke="#f59e0b" stroke-width="3"' if i in front else ' stroke="white" stroke-width="1"'
        body.append(f'<rect x="{coord(px - 6)}" y="{coord(py - 6)}" width="12" height="12" fill="{c}"{ring}/>'
                    if p.get("hollow") else f'<circle cx="{coord(px)}" cy="{coord(py)}" r="6" fill="{c}"{ring}/>')
        ly = label_y[i]
        body.append(f'<polyline points="{coord(px + 7)},{coord(py)} {f.x1 + 8},{coord(ly)} {f.x1 + 14},{coord(ly)}" '
                    f'fill="none" stroke="{c}" stroke-width="1" stroke-opacity="0.7"/>'
                    f'<text x="{f.x1 + 18}" y="{coord(ly + 4)}" {FONT} fill="{c}" class="point-label">'
                    f'{escape(p["label"])}</text>')
    body.append(f'<text x="{f.x0 + 6}" y="{f.y1 - 6}" {FONT} fill="#b45309">- - Pareto front</text>')
    return svg(w, h, body, title)


def grouped_bars(groups: list[str], series: list[tuple[str, list[float | None]]], ylabel: str, title: str,
                 ymax: float | None = 1.0, w: int = 720, h: int = 320, ymin: float = 0.0) -> str:
    """Bars per group (e.g. class), one bar per series (e.g. artifact), drawn from 0 (signed values
    go below a zero line when `ymin` < 0)."""
    if not groups or not series:
        return ""
    vals = [v for _, vs in series for v in vs if v is not None]
    top = ymax if ymax is not None else (max(vals) if vals else 1.0)
    f = Frame(w, h, (0, len(groups)), (ymin, top), right=220)
    body = f.axes("", ylabel, xticks=False)
    if ymin < 0:
        body.append(f'<line x1="{f.x0}" x2="{f.x1}" y1="{coord(f.y(0))}" y2="{coord(f.y(0))}" stroke="#0f172a"/>')
    gw = (f.x1 - f.x0) / len(groups)
    bw = gw * 0.8 / len(series)
    for g, name in enumerate(groups):
        gx = f.x0 + g * gw
        body.append(f'<text x="{coord(gx + gw / 2)}" y="{f.y1 + 16}" text-anchor="middle" {FONT}>'
                    f'{escape(name[:18])}</text>')
        for s, (_, vs) in enumerate(series):
            v = vs[g] if g < len(vs) else None
            if v is None:
                continue
            x = gx + gw * 0.1 + s * bw
            ya, yb = sorted((f.y(0.0), f.y(v)))
            body.append(f'<rect x="{coord(x)}" y="{coord(ya)}" width="{coord(max(bw - 1, 1))}" '
                        f'height="{coord(max(yb - ya, 1))}" fill="{PALETTE[s % len(PALETTE)]}">'
                        f'<title>{escape(series[s][0])}: {fmt(v, ".4g")}</title></rect>')
    for s, (label, _) in enumerate(series):
        ly = f.y0 + 14 + 18 * s
        body.append(f'<rect x="{f.x1 + 10}" y="{ly - 10}" width="12" height="12" fill="{PALETTE[s % len(PALETTE)]}"/>'
                    f'<text x="{f.x1 + 28}" y="{ly}" {FONT}>{escape(label)}</text>')
    return svg(w, h, body, title)


def hbars(labels: list[str], values: list[float], xlabel: str, title: str, color: str = "#7c3aed",
          w: int = 720) -> str:
    """Horizontal bars, one per label."""
    if not labels:
        return ""
    row = 16
    h = 50 + row * len(labels)
    lo = min(0.0, min(values))
    hi = max(values) if max(values) > lo else lo + 1
    f = Frame(w, h, (lo, hi), (0, 1), left=230, right=30, top=10, bottom=40)
    body = [f'<rect x="{f.x0}" y="{f.y0}" width="{f.x1 - f.x0}" height="{f.y1 - f.y0}" fill="#f8fafc" '
            'stroke="#cbd5e1"/>']
    for t in f.xt:
        x = f.x(t)
        body.append(f'<line y1="{f.y0}" y2="{f.y1}" x1="{coord(x)}" x2="{coord(x)}" stroke="#e2e8f0"/>'
                    f'<text x="{coord(x)}" y="{f.y1 + 16}" text-anchor="middle" {FONT}>{tick(t)}</text>')
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        y = f.y0 + 2 + i * row
        x0, x1 = sorted((f.x(0.0), f.x(v)))
        body.append(f'<text x="{f.x0 - 6}" y="{y + 11}" text-anchor="end" {FONT}>{escape(lab[-34:])}</text>'
                    f'<rect x="{coord(x0)}" y="{y}" width="{coord(max(x1 - x0, 1))}" height="{row - 4}" fill="{color}">'
                    f'<title>{escape(lab)}: {fmt(v, ".4g")}</title></rect>')
    body.append(f'<text x="{(f.x0 + f.x1) / 2}" y="{h - 6}" text-anchor="middle" {FONT}>{escape(xlabel)}</text>')
    return svg(w, h, body, title)
