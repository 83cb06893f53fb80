"""Tiny inline SVG charts for the HTML report: no JavaScript, no external assets, escaped text.

Two shapes cover the report: :func:`line_chart` (one series over windows, with an optional
confidence band, threshold line and flagged points) and :func:`bar_chart` (reference vs current
shares per bin). Coordinates are rounded to 0.1 px to keep the markup small; point markers and
their tooltips are drawn only for short series (:data:`MAX_MARKERS`), flagged points always.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape

MAX_MARKERS = 60
REF_COLOR = "#a0aec0"
CUR_COLOR = "#2b6cb0"
BAD_COLOR = "#c53030"


def _e(x: object) -> str:
    return escape(str(x), quote=True)


def _c(v: float) -> str:
    """A compact coordinate (0.1 px)."""
    s = f"{v:.1f}"
    return s[:-2] if s.endswith(".0") else s


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _short(s: str, n: int = 18) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _y_range(values: Sequence[float]) -> tuple[float, float]:
    vals = [float(v) for v in values if _finite(v)]
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.1 or 0.5
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    return (lo - pad if lo - pad >= 0 or lo < 0 else 0.0), hi + pad


def line_chart(ys: Sequence[float], x_labels: Sequence[str], *, lo: Sequence[float] | None = None,
               hi: Sequence[float] | None = None, threshold: float | None = None,
               flags: Sequence[bool] | None = None, label: str = "",
               fmt: Callable[[float], str] = lambda v: f"{v:.4g}", width: int = 260,
               height: int = 110) -> str:
    """A line chart of ``ys`` (one value per window, NaN breaks the line) as an ``<svg>`` string.

    Args:
        ys: values in window order; NaN or None where undefined.
        x_labels: one label per value (first and last are drawn; all appear in tooltips).
        lo, hi: optional confidence band, same length as ``ys``.
        threshold: optional horizontal reference line (dashed red).
        flags: optional per-point booleans; flagged points are drawn as red dots.
        label: accessible name of the chart (``aria-label``).
        fmt: number formatter for the axis and tooltips.
        width, height: size in CSS pixels.
    """
    n = len(ys)
    ml, mr, mt, mb = 44, 8, 8, 18
    pw, ph = width - ml - mr, height - mt - mb
    extra = [threshold] if _finite(threshold) else []
    y0, y1 = _y_range(list(ys) + list(lo or []) + list(hi or []) + extra)

    def px(i: int) -> float:
        return ml + (pw * i / (n - 1) if n > 1 else pw / 2)

    def py(v: float) -> float:
        return mt + ph * (1 - (v - y0) / (y1 - y0))

    out = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'role="img" aria-label="{_e(label)}">',
           f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" class="plot"/>',
           f'<text x="{ml - 4}" y="{mt + 8}" class="ax" text-anchor="end">{_e(fmt(y1))}</text>',
           f'<text x="{ml - 4}" y="{mt + ph}" class="ax" text-anchor="end">{_e(fmt(y0))}</text>']
    if n:
        out.append(f'<text x="{ml}" y="{height - 4}" class="ax">{_e(_short(x_labels[0]))}</text>')
        if n > 1:
            out.append(f'<text x="{width - mr}" y="{height - 4}" class="ax" text-anchor="end">'
                       f'{_e(_short(x_labels[-1]))}</text>')
    if lo is not None and hi is not None:
        idx = [i for i in range(n) if _finite(lo[i]) and _finite(hi[i])]
        if len(idx) > 1:
            pts = [f"{_c(px(i))},{_c(py(hi[i]))}" for i in idx]
            pts += [f"{_c(px(i))},{_c(py(lo[i]))}" for i in reversed(idx)]
            out.append(f'<polygon points="{" ".join(pts)}" class="band"/>')
    if _finite(threshold):
        y = _c(py(threshold))
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{y}" y2="{y}" class="thr">'
                   f'<title>threshold {_e(fmt(threshold))}</title></line>')
    seg: list[str] = []
    for i in range(n + 1):
        if i < n and _finite(ys[i]):
            seg.append(f"{_c(px(i))},{_c(py(ys[i]))}")
            continue
        if len(seg) > 1:
            out.append(f'<polyline points="{" ".join(seg)}" class="line"/>')
        elif len(seg) == 1:
            x, y = seg[0].split(",")
            out.append(f'<circle cx="{x}" cy="{y}" r="2.5" class="pt"/>')
        seg = []
    for i in range(n):
        if not _finite(ys[i]):
            continue
        bad = bool(flags[i]) if flags is not None else False
        if bad or n <= MAX_MARKERS:
            cls = "bad" if bad else "pt"
            r = "3.5" if bad else "2"
            out.append(f'<circle cx="{_c(px(i))}" cy="{_c(py(ys[i]))}" r="{r}" class="{cls}">'
                       f'<title>{_e(x_labels[i])}: {_e(fmt(ys[i]))}</title></circle>')
    out.append("</svg>")
    return "".join(out)


def bar_chart(labels: Sequence[str], reference: Sequence[float], current: Sequence[float], *,
              label: str = "", width: int = 260, height: int = 120) -> str:
    """Grouped bars of reference (grey) vs current (blue) shares per bin as an ``<svg>`` string.

    Args:
        labels: bin labels in display order (first and last are drawn; all in tooltips).
        reference, current: shares in [0, 1], same length as ``labels``.
        label: accessible name of the chart (``aria-label``).
        width, height: size in CSS pixels.
    """
    n = len(labels)
    ml, mr, mt, mb = 36, 6, 8, 18
    pw, ph = width - ml - mr, height - mt - mb
    top = max([v for v in list(reference) + list(current) if _finite(v)] + [1e-9])
    out = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           f'role="img" aria-label="{_e(label)}">',
           f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" class="plot"/>',
           f'<text x="{ml - 4}" y="{mt + 8}" class="ax" text-anchor="end">{top:.0%}</text>',
           f'<text x="{ml - 4}" y="{mt + ph}" class="ax" text-anchor="end">0%</text>']
    if n:
        gw = pw / n
        bw = max(gw * 0.42, 0.5)
        for i in range(n):
            r = reference[i] if _finite(reference[i]) else 0.0
            c = current[i] if _finite(current[i]) else 0.0
            x = ml + gw * i + gw * 0.08
            hr, hc = ph * r / top, ph * c / top
            out.append(f'<g><title>{_e(labels[i])}: reference {r:.1%}, current {c:.1%}</title>'
                       f'<rect x="{_c(x)}" y="{_c(mt + ph - hr)}" width="{_c(bw)}" '
                       f'height="{_c(hr)}" fill="{REF_COLOR}"/>'
                       f'<rect x="{_c(x + bw)}" y="{_c(mt + ph - hc)}" width="{_c(bw)}" '
                       f'height="{_c(hc)}" fill="{CUR_COLOR}"/></g>')
        out.append(f'<text x="{ml}" y="{height - 4}" class="ax">{_e(_short(labels[0]))}</text>')
        if n > 1:
            out.append(f'<text x="{width - mr}" y="{height - 4}" class="ax" text-anchor="end">'
                       f'{_e(_short(labels[-1]))}</text>')
    out.append("</svg>")
    return "".join(out)
