"""Small inline-SVG charts for the HTML report (no JavaScript, no network, no plotting library)."""

from __future__ import annotations

import math
from html import escape

from pipeline.reports.numbers import coord, fmt, tick

PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#475569"]
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


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


class _Frame:
    """Axes with ticks: maps data coordinates into a plot area."""

    def __init__(self, w, h, xr, yr, left=60, right=20, top=20, bottom=45):
        self.w, self.h = w, h
        self.x0, self.x1, self.y0, self.y1 = left, w - right, top, h - bottom
        self.xt, self.yt = _ticks(*xr), _ticks(*yr)
        self.xr = (min(self.xt[0], xr[0]), max(self.xt[-1], xr[1]))
        self.yr = (min(self.yt[0], yr[0]), max(self.yt[-1], yr[1]))

    def x(self, v):
        return self.x0 + (v - self.xr[0]) / ((self.xr[1] - self.xr[0]) or 1) * (self.x1 - self.x0)

    def y(self, v):
        return self.y1 - (v - self.yr[0]) / ((self.yr[1] - self.yr[0]) or 1) * (self.y1 - self.y0)

    def axes(self, xlabel, ylabel, xticks=True) -> list[str]:
        s = [f'<rect x="{self.x0}" y="{self.y0}" width="{self.x1 - self.x0}" height="{self.y1 - self.y0}" '
             'fill="#f8fafc" stroke="#cbd5e1"/>']
        for t in self.yt:
            y = self.y(t)
            s.append(f'<line x1="{self.x0}" x2="{self.x1}" y1="{coord(y)}" y2="{coord(y)}" stroke="#e2e8f0"/>')
            s.append(f'<text x="{self.x0 - 6}" y="{coord(y + 4)}" text-anchor="end" {FONT}>{tick(t)}</text>')
        if xticks:
            for t in self.xt:
                x = self.x(t)
                s.append(f'<line y1="{self.y0}" y2="{self.y1}" x1="{coord(x)}" x2="{coord(x)}" stroke="#e2e8f0"/>')
                s.append(f'<text x="{coord(x)}" y="{self.y1 + 16}" text-anchor="middle" {FONT}>{tick(t)}</text>')
        s.append(f'<text x="{(self.x0 + self.x1) / 2}" y="{self.h - 8}" text-anchor="middle" {FONT}>'
                 f'{escape(xlabel)}</text>')
        s.append(f'<text transform="translate(14,{(self.y0 + self.y1) / 2}) rotate(-90)" text-anchor="middle" '
                 f'{FONT}>{escape(ylabel)}</text>')
        return s


def _svg(w, h, body: list[str], title: str) -> str:
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


def scatter(points: list[dict], xlabel: str, ylabel: str, title: str, w: int = 720, h: int = 380) -> str:
    """points: {label, x, y, xerr?: (lo, hi), yerr?: (lo, hi)}. Draws the Pareto front."""
    if not points:
        return ""
    xs = [p["x"] for p in points] + [v for p in points for v in p.get("xerr") or ()]
    ys = [p["y"] for p in points] + [v for p in points for v in p.get("yerr") or ()]
    pad_x = (max(xs) - min(xs)) * 0.08 or max(xs) * 0.1 or 1
    pad_y = (max(ys) - min(ys)) * 0.1 or 0.02
    f = _Frame(w, h, (max(0.0, min(xs) - pad_x), max(xs) + pad_x), (min(ys) - pad_y, max(ys) + pad_y), right=200)
    body = f.axes(xlabel, ylabel)
    cand = [i for i, p in enumerate(points) if p.get("front", True)]  # e.g. not the non-deployable reference
    front = [cand[i] for i in pareto_front([(points[i]["x"], points[i]["y"]) for i in cand])]
    if len(front) > 1:
        pts = " ".join(f"{coord(f.x(points[i]['x']))},{coord(f.y(points[i]['y']))}" for i in front)
        body.append(f'<polyline points="{pts}" fill="none" stroke="#f59e0b" stroke-width="2.5" '
                    'stroke-dasharray="6 4"/>')
    for i, p in enumerate(points):
        c = PALETTE[i % len(PALETTE)]
        px, py = f.x(p["x"]), f.y(p["y"])
        if p.get("xerr"):
            body.append(f'<line x1="{coord(f.x(p["xerr"][0]))}" x2="{coord(f.x(p["xerr"][1]))}" y1="{coord(py)}" '
                        f'y2="{coord(py)}" stroke="{c}" stroke-width="1.5"/>')
        if p.get("yerr"):
            body.append(f'<line y1="{coord(f.y(p["yerr"][0]))}" y2="{coord(f.y(p["yerr"][1]))}" x1="{coord(px)}" '
                        f'x2="{coord(px)}" stroke="{c}" stroke-width="1.5"/>')
        ring = ' stroke="#f59e0b" stroke-width="3"' if i in front else ' stroke="white" stroke-width="1"'
        shape = (f'<rect x="{coord(px - 6)}" y="{coord(py - 6)}" width="12" height="12" fill="{c}"{ring}/>'
                 if p.get("hollow") else f'<circle cx="{coord(px)}" cy="{coord(py)}" r="7" fill="{c}"{ring}/>')
        body.append(shape)
        ly = f.y0 + 14 + 18 * i
        body.append(f'<circle cx="{f.x1 + 16}" cy="{ly - 4}" r="6" fill="{c}"/>'
                    f'<text x="{f.x1 + 28}" y="{ly}" {FONT}>{escape(p["label"])}</text>')
    body.append(f'<text x="{f.x1 + 16}" y="{f.y0 + 14 + 18 * len(points) + 8}" {FONT} fill="#b45309">'
                '- - Pareto front</text>')
    return _svg(w, h, body, title)


def grouped_bars(groups: list[str], series: list[tuple[str, list[float | None]]], ylabel: str, title: str,
                 ymax: float | None = 1.0, w: int = 720, h: int = 320) -> str:
    """Bars per group (e.g. class), one bar per series (e.g. artifact)."""
    if not groups or not series:
        return ""
    vals = [v for _, vs in series for v in vs if v is not None]
    top = ymax if ymax is not None else (max(vals) if vals else 1.0)
    f = _Frame(w, h, (0, len(groups)), (0, top), right=200)
    body = f.axes("", ylabel, xticks=False)
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
            y = f.y(v)
            body.append(f'<rect x="{coord(x)}" y="{coord(y)}" width="{coord(max(bw - 1, 1))}" '
                        f'height="{coord(f.y1 - y)}" fill="{PALETTE[s % len(PALETTE)]}">'
                        f'<title>{escape(series[s][0])}: {fmt(v, ".4g")}</title></rect>')
    for s, (label, _) in enumerate(series):
        ly = f.y0 + 14 + 18 * s
        body.append(f'<rect x="{f.x1 + 10}" y="{ly - 10}" width="12" height="12" fill="{PALETTE[s % len(PALETTE)]}"/>'
                    f'<text x="{f.x1 + 28}" y="{ly}" {FONT}>{escape(label)}</text>')
    return _svg(w, h, body, title)


def hbars(labels: list[str], values: list[float], xlabel: str, title: str, color: str = "#7c3aed",
          w: int = 720) -> str:
    """Horizontal bars, one per label (e.g. per-layer SNR)."""
    if not labels:
        return ""
    row = 16
    h = 50 + row * len(labels)
    lo = min(0.0, min(values))
    hi = max(values) if max(values) > lo else lo + 1
    f = _Frame(w, h, (lo, hi), (0, 1), left=230, right=30, top=10, bottom=40)
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
    return _svg(w, h, body, title)
