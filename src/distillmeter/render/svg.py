"""Inline SVG plots, generated as text (no plotting library, no network).

Every function returns one ``<svg>`` element with a ``viewBox`` and explicit width/height,
so the page renders the same anywhere. All text goes through ``html.escape``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

SIDE_COLOURS = {
    "setup": "#9e9e9e",
    "teacher": "#d9822b",
    "student": "#2b7bb9",
    "eval": "#5aa454",
    "unattributed": "#cfcfcf",
}
PALETTE = ("#2b7bb9", "#d9822b", "#5aa454", "#b94a8c", "#7a5cc4", "#c4a23a", "#3aa6a6",
           "#c44a3a", "#6b6b6b", "#8fb93a")


def shade(colour: str, amount: float) -> str:
    """``colour`` (#rrggbb) mixed with white by ``amount`` (0: unchanged, 1: white)."""
    amount = min(max(amount, 0.0), 0.85)
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * amount):02x}" for c in rgb)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))

    def count(step: float) -> int:
        return math.floor(hi / step + 1e-9) - math.ceil(lo / step - 1e-9) + 1

    # the round step whose tick count is nearest n (ties: the larger step)
    step = min((m * mag for m in (0.5, 1, 2, 2.5, 5, 10)),
               key=lambda s: (abs(count(s) - n), -s))
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    x = start
    while x <= hi + step * 1e-9:
        ticks.append(round(x, 12))
        x += step
    return ticks


def fmt_tick(x: float) -> str:
    """A short tick label."""
    a = abs(x)
    if a >= 1e6 or (0 < a < 1e-3):
        return f"{x:.2g}"
    if a >= 100 or x == int(x):
        return f"{x:,.0f}"
    return f"{x:.3g}"


@dataclass
class _Frame:
    """Maps data coordinates to pixels inside the plot area."""

    x0: float
    x1: float
    y0: float
    y1: float
    left: float = 70
    right: float = 20
    top: float = 20
    bottom: float = 50
    width: float = 640
    height: float = 360

    def x(self, v: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (v - self.x0) / span * (self.width - self.left - self.right)

    def y(self, v: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.height - self.bottom - (v - self.y0) / span * (
            self.height - self.top - self.bottom)


def _svg_open(width: float, height: float, label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" '
            f'aria-label="{escape(label)}" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}">'
            f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>')


def _axes(f: _Frame, xlabel: str, ylabel: str, xticks: list[float],
          yticks: list[float]) -> list[str]:
    out = ['<g class="axes" font-family="sans-serif" font-size="11" fill="#333">']
    bx, by = f.left, f.height - f.bottom
    out.append(f'<line x1="{bx}" y1="{by}" x2="{f.width - f.right}" y2="{by}" '
               'stroke="#333"/>')
    out.append(f'<line x1="{bx}" y1="{f.top}" x2="{bx}" y2="{by}" stroke="#333"/>')
    for t in xticks:
        px = f.x(t)
        out.append(f'<line x1="{px:.1f}" y1="{by}" x2="{px:.1f}" y2="{by + 4}" stroke="#333"/>'
                   f'<text x="{px:.1f}" y="{by + 16}" text-anchor="middle">'
                   f'{escape(fmt_tick(t))}</text>')
    for t in yticks:
        py = f.y(t)
        out.append(f'<line x1="{bx - 4}" y1="{py:.1f}" x2="{f.width - f.right}" '
                   f'y2="{py:.1f}" stroke="#e6e6e6"/>'
                   f'<text x="{bx - 6}" y="{py + 4:.1f}" text-anchor="end">'
                   f'{escape(fmt_tick(t))}</text>')
    out.append(f'<text x="{(f.left + f.width - f.right) / 2:.0f}" y="{f.height - 10}" '
               f'text-anchor="middle">{escape(xlabel)}</text>')
    out.append(f'<text transform="translate(14,{(f.top + f.height - f.bottom) / 2:.0f}) '
               f'rotate(-90)" text-anchor="middle">{escape(ylabel)}</text>')
    out.append("</g>")
    return out


@dataclass(frozen=True)
class ParetoPoint:
    """One configuration. ``energy_lo``/``energy_hi``: its absolute interval (thin bar);
    ``energy_cmp_lo``/``energy_cmp_hi``: the interval it is compared on within the group
    (thick bar; absent when it equals the absolute one)."""

    label: str
    energy: float
    quality: float
    energy_lo: float | None = None
    energy_hi: float | None = None
    quality_lo: float | None = None
    quality_hi: float | None = None
    frontier: bool = False
    energy_cmp_lo: float | None = None
    energy_cmp_hi: float | None = None


def _range(values: Sequence[float], pad: float = 0.08) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    span = hi - lo or (abs(hi) * 0.1 or 1.0)
    return lo - pad * span, hi + pad * span


def pareto_svg(points: Sequence[ParetoPoint], *, xlabel: str, ylabel: str,
               title: str = "energy vs quality",
               y_bounds: tuple[float, float] | None = None) -> str:
    """Scatter of configurations with 95% error bars on both axes, frontier joined. With
    ``y_bounds`` (a rate's [0, 1]) the quality axis never runs past the metric's range."""
    xs = [v for p in points for v in (p.energy, p.energy_lo, p.energy_hi) if v is not None]
    ys = [v for p in points for v in (p.quality, p.quality_lo, p.quality_hi) if v is not None]
    x0, x1 = _range(xs)
    y0, y1 = _range(ys)
    if y_bounds is not None:
        y0, y1 = max(y0, y_bounds[0]), min(y1, y_bounds[1])
        if y1 <= y0:
            y0, y1 = y_bounds
    x0 = max(x0, 0.0) if min(xs or [0]) >= 0 else x0
    f = _Frame(x0, x1, y0, y1, width=640, height=380)
    out = [_svg_open(f.width, f.height, title)]
    out += _axes(f, xlabel, ylabel, nice_ticks(x0, x1), nice_ticks(y0, y1))
    front = sorted((p for p in points if p.frontier), key=lambda p: p.energy)
    if len(front) > 1:
        path = " ".join(f"{f.x(p.energy):.1f},{f.y(p.quality):.1f}" for p in front)
        out.append(f'<polyline class="frontier" points="{path}" fill="none" '
                   'stroke="#c44a3a" stroke-width="2" stroke-dasharray="6 3"/>')
    placed: list[tuple[float, float, float, float]] = []
    for i, p in enumerate(points):
        colour = PALETTE[i % len(PALETTE)]
        cx, cy = f.x(p.energy), f.y(p.quality)
        if p.energy_lo is not None and p.energy_hi is not None:
            out.append(f'<line class="ci-abs" x1="{f.x(p.energy_lo):.1f}" y1="{cy:.1f}" '
                       f'x2="{f.x(p.energy_hi):.1f}" y2="{cy:.1f}" stroke="{colour}" '
                       'stroke-opacity="0.55"/>')
        if p.energy_cmp_lo is not None and p.energy_cmp_hi is not None:
            out.append(f'<line class="ci-cmp" x1="{f.x(p.energy_cmp_lo):.1f}" y1="{cy:.1f}" '
                       f'x2="{f.x(p.energy_cmp_hi):.1f}" y2="{cy:.1f}" stroke="{colour}" '
                       'stroke-width="4"/>')
        if p.quality_lo is not None and p.quality_hi is not None:
            out.append(f'<line x1="{cx:.1f}" y1="{f.y(p.quality_lo):.1f}" x2="{cx:.1f}" '
                       f'y2="{f.y(p.quality_hi):.1f}" stroke="{colour}"/>')
        shape = (f'<rect x="{cx - 5:.1f}" y="{cy - 5:.1f}" width="10" height="10" '
                 f'fill="{colour}" stroke="#222"/>' if p.frontier else
                 f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="#fff" '
                 f'stroke="{colour}" stroke-width="2"/>')
        out.append(f'<g class="point"><title>{escape(p.label)}</title>{shape}</g>')
        lx, ly, anchor = _label_spot(cx, cy, p.label, placed)
        out.append(f'<text x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}" '
                   f'font-family="sans-serif" font-size="11" fill="{colour}">'
                   f'{escape(p.label)}</text>')
    out.append("</svg>")
    return "".join(out)


def _label_spot(cx: float, cy: float, label: str,
                placed: list[tuple[float, float, float, float]]) -> tuple[float, float, str]:
    """Where to write a point's label: above right, below right, above left or below left
    of it, the first spot that does not cover a label already placed (``placed`` gets the
    chosen box)."""
    w, h = 6.2 * len(label), 11.0
    spots = [(cx + 8, cy - 8, "start"), (cx + 8, cy + 17, "start"),
             (cx - 8, cy - 8, "end"), (cx - 8, cy + 17, "end")]

    def box(x: float, y: float, anchor: str) -> tuple[float, float, float, float]:
        x0 = x if anchor == "start" else x - w
        return (x0, y - h, x0 + w, y)

    def free(b: tuple[float, float, float, float]) -> bool:
        return all(b[2] <= o[0] or o[2] <= b[0] or b[3] <= o[1] or o[3] <= b[1]
                   for o in placed)

    choice = next((s for s in spots if free(box(*s))), spots[0])
    placed.append(box(*choice))
    return choice


def stacked_bars_svg(bars: Sequence[tuple[str, Sequence[tuple[str, float]]]], *,
                     ylabel: str, colours: dict[str, str] | None = None,
                     title: str = "energy by side") -> str:
    """One stacked bar per label; segments (name, value) coloured by name, with a legend."""
    colours = dict(colours or {})
    names: list[str] = []
    for _, segs in bars:
        for n, _ in segs:
            if n not in names:
                names.append(n)
    for i, n in enumerate(names):
        colours.setdefault(n, PALETTE[i % len(PALETTE)])
    top = max((sum(max(v, 0.0) for _, v in segs) for _, segs in bars), default=1.0) or 1.0
    width = max(360.0, 90.0 + 80.0 * len(bars) + 150.0)
    f = _Frame(0, max(len(bars), 1), 0, top * 1.05, width=width, height=340, right=160,
               bottom=70)
    out = [_svg_open(f.width, f.height, title)]
    out += _axes(f, "", ylabel, [], nice_ticks(0, top * 1.05))
    slot = (f.width - f.left - f.right) / max(len(bars), 1)
    for i, (label, segs) in enumerate(bars):
        y = 0.0
        x = f.left + i * slot + slot * 0.2
        for name, v in segs:
            if v <= 0:
                continue
            y_top, y_bot = f.y(y + v), f.y(y)
            out.append(f'<rect x="{x:.1f}" y="{y_top:.1f}" width="{slot * 0.6:.1f}" '
                       f'height="{max(y_bot - y_top, 0.5):.1f}" fill="{colours[name]}">'
                       f'<title>{escape(f"{label}: {name} {v:,.1f}")}</title></rect>')
            y += v
        out.append(f'<text x="{x + slot * 0.3:.1f}" y="{f.height - f.bottom + 16}" '
                   f'text-anchor="middle" font-family="sans-serif" font-size="11">'
                   f'{escape(label[:18])}</text>')
    for j, n in enumerate(names):
        ly = f.top + 16 * j
        out.append(f'<rect x="{f.width - f.right + 12}" y="{ly}" width="10" height="10" '
                   f'fill="{colours[n]}"/><text x="{f.width - f.right + 28}" y="{ly + 9}" '
                   f'font-family="sans-serif" font-size="11">{escape(n)}</text>')
    out.append("</svg>")
    return "".join(out)


SOURCE_NAMES = {"nvml_counter": "counter", "nvml_instant": "instant", "rapl": "RAPL",
                "estimate": "estimate"}


def timeline_svg(series: dict[str, tuple[Sequence[float], Sequence[float]]],
                 stages: Sequence[tuple[str, float, float, str]], *, title: str,
                 idle_w: dict[str, float] | float | None = None,
                 sources: dict[str, str] | None = None) -> str:
    """Power over time per device, with each stage's window shaded by its side, each
    device's idle baseline as a dashed line in its colour, and a legend naming every device
    with its source (counter, instant, RAPL, estimate) and the sides' shades."""
    if idle_w is not None and not isinstance(idle_w, dict):  # one figure for one device
        idle_w = {d: float(idle_w) for d in list(series)[:1]}
    idle = {d: w for d, w in (idle_w or {}).items() if d in series and w and w > 0}
    sources = sources or {}
    ts = [t for xs, _ in series.values() for t in xs]
    ps = [p for _, ys in series.values() for p in ys if math.isfinite(p)]
    ts += [s[1] for s in stages] + [s[2] for s in stages]
    x0, x1 = (min(ts), max(ts)) if ts else (0.0, 1.0)
    y1 = max(ps + list(idle.values())) * 1.08 if ps else 1.0
    f = _Frame(x0, x1 if x1 > x0 else x0 + 1.0, 0.0, y1 or 1.0, width=560, height=262,
               bottom=88)
    out = [_svg_open(f.width, f.height, title)]
    for name, a, b, side in stages:
        colour = SIDE_COLOURS.get(side, "#dddddd")
        out.append(f'<rect class="stage" x="{f.x(a):.1f}" y="{f.top}" '
                   f'width="{max(f.x(b) - f.x(a), 1.0):.1f}" '
                   f'height="{f.height - f.top - f.bottom}" fill="{colour}" '
                   f'fill-opacity="0.18"><title>{escape(f"{name}: {a:.2f}-{b:.2f} s")}'
                   '</title></rect>')
        if f.x(b) - f.x(a) > 40:
            out.append(f'<text x="{f.x(a) + 3:.1f}" y="{f.top + 12}" font-family="sans-serif"'
                       f' font-size="10" fill="#444">{escape(name)}</text>')
    out += _axes(f, "", "power (W)", nice_ticks(f.x0, f.x1, 6), nice_ticks(0.0, f.y1, 4))
    out.append(f'<text x="{(f.left + f.width - f.right) / 2:.0f}" '
               f'y="{f.height - f.bottom + 30}" text-anchor="middle" font-family="sans-serif" '
               'font-size="11" fill="#333">time (s)</text>')
    devices = sorted(series)
    colour = {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(devices)}
    for d in devices:
        xs, ys = series[d]
        pts = " ".join(f"{f.x(t):.1f},{f.y(p):.1f}" for t, p in zip(xs, ys, strict=True)
                       if math.isfinite(p))
        if pts:
            out.append(f'<polyline points="{pts}" fill="none" stroke-width="1.3" '
                       f'stroke="{colour[d]}"><title>{escape(d)}</title></polyline>')
    for d, w in sorted(idle.items()):
        y = f.y(w)
        out.append(f'<line class="idle" x1="{f.left}" x2="{f.width - f.right}" y1="{y:.1f}" '
                   f'y2="{y:.1f}" stroke="{colour[d]}" stroke-width="1.6" '
                   f'stroke-dasharray="6 4"><title>{escape(f"{d} idle baseline {w:.3g} W")}'
                   '</title></line>'
                   f'<text x="{f.width - f.right - 2}" y="{y - 3:.1f}" text-anchor="end" '
                   f'font-family="sans-serif" font-size="10" fill="{colour[d]}">'
                   f'{escape(f"idle {w:.3g} W")}</text>')
    out.append(_timeline_legend(f, devices, colour, sources, bool(idle), stages))
    out.append("</svg>")
    return "".join(out)


def _timeline_legend(f: _Frame, devices: list[str], colour: dict[str, str],
                     sources: dict[str, str], has_idle: bool,
                     stages: Sequence[tuple[str, float, float, str]]) -> str:
    """Two legend rows under the plot: the devices (with sources) and idle; the sides."""
    out = ['<g class="legend" font-family="sans-serif" font-size="11" fill="#333">']
    x, y = float(f.left), f.height - f.bottom + 50  # below the axis label
    for d in devices:
        src = sources.get(d)
        label = f"{d} ({SOURCE_NAMES.get(src, src)})" if src else d
        out.append(f'<line x1="{x:.0f}" x2="{x + 16:.0f}" y1="{y - 4}" y2="{y - 4}" '
                   f'stroke="{colour[d]}" stroke-width="2.5"/>'
                   f'<text x="{x + 20:.0f}" y="{y}">{escape(label)}</text>')
        x += 28 + 6.4 * len(label)
    if has_idle:
        out.append(f'<line x1="{x:.0f}" x2="{x + 16:.0f}" y1="{y - 4}" y2="{y - 4}" '
                   'stroke="#555" stroke-width="1.6" stroke-dasharray="6 4"/>'
                   f'<text x="{x + 20:.0f}" y="{y}">idle baseline</text>')
    x, y = float(f.left), f.height - f.bottom + 68
    for side in [s for s in SIDE_COLOURS if s != "unattributed"
                 and any(st[3] == s for st in stages)]:
        out.append(f'<rect x="{x:.0f}" y="{y - 9}" width="12" height="10" '
                   f'fill="{SIDE_COLOURS[side]}" fill-opacity="0.35"/>'
                   f'<text x="{x + 16:.0f}" y="{y}">{escape(side)}</text>')
        x += 24 + 6.4 * len(side)
    out.append("</g>")
    return "".join(out)
