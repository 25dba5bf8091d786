"""Small SVG charts (lines and bars) written by hand: no plotting library needed."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
W, H = 760, 320
L, R, T, B = 64, 16, 36, 52


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** len(str(int(raw))) / 10 if raw >= 1 else 1.0
    while mag > raw:
        mag /= 10
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = (lo // step) * step
    out = []
    v = first
    while v <= hi + step * 1e-9:
        if v >= lo - step * 1e-9:
            out.append(round(v, 10))
        v += step
    return out


def _frame(
    title: str, y_label: str, lo: float, hi: float, labels: Sequence[str]
) -> tuple[list[str], float, float]:
    ticks = _ticks(lo, hi)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    pw, ph = W - L - R, H - T - B
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14">{escape(title)}</text>',
        f'<text x="14" y="{T + ph / 2}" transform="rotate(-90 14 {T + ph / 2})" text-anchor="middle">'
        f"{escape(y_label)}</text>",
    ]
    for t in ticks:
        y = T + ph - (t - lo) / (hi - lo) * ph
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 6}" y="{y + 4:.1f}" text-anchor="end">{t:g}</text>')
    n = len(labels)
    every = max(1, n // 12)
    for i, lab in enumerate(labels):
        if i % every == 0:
            x = L + (i + 0.5) / max(n, 1) * pw
            out.append(f'<text x="{x:.1f}" y="{H - B + 16}" text-anchor="middle">{escape(lab)}</text>')
    out.append(f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    return out, lo, hi


def _legend(names: Sequence[str]) -> list[str]:
    out = []
    x = L
    for i, name in enumerate(names):
        c = COLOURS[i % len(COLOURS)]
        out.append(f'<rect x="{x}" y="{H - 22}" width="12" height="10" fill="{c}"/>')
        out.append(f'<text x="{x + 16}" y="{H - 13}">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return out


def lines(title: str, y_label: str, labels: Sequence[str], series: dict[str, Sequence[float | None]]) -> str:
    """One line per series over the labelled x positions; ``None`` leaves a gap."""
    vals = [v for s in series.values() for v in s if v is not None]
    lo, hi = (min(0.0, *vals), max(vals)) if vals else (0.0, 1.0)
    out, lo, hi = _frame(title, y_label, lo, hi, labels)
    n = len(labels)
    pw, ph = W - L - R, H - T - B
    for i, s in enumerate(series.values()):
        c = COLOURS[i % len(COLOURS)]
        path: list[str] = []
        for j, v in enumerate(s):
            if v is None:
                if path:
                    out.append(
                        f'<polyline fill="none" stroke="{c}" stroke-width="1.8" points="{" ".join(path)}"/>'
                    )
                path = []
                continue
            x = L + (j + 0.5) / max(n, 1) * pw
            y = T + ph - (v - lo) / (hi - lo) * ph
            path.append(f"{x:.1f},{y:.1f}")
        if path:
            out.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.8" points="{" ".join(path)}"/>')
    out += _legend(list(series))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def bars(title: str, y_label: str, labels: Sequence[str], values: Sequence[float]) -> str:
    """One bar per label (negative values hang below zero)."""
    lo, hi = min(0.0, *values), max(0.0, *values)
    out, lo, hi = _frame(title, y_label, lo, hi, labels)
    n = len(labels)
    pw, ph = W - L - R, H - T - B
    y0 = T + ph - (0 - lo) / (hi - lo) * ph
    for j, v in enumerate(values):
        x = L + j / max(n, 1) * pw
        y = T + ph - (v - lo) / (hi - lo) * ph
        c = COLOURS[2] if v >= 0 else COLOURS[3]
        out.append(
            f'<rect x="{x + 1:.1f}" y="{min(y, y0):.1f}" width="{max(pw / max(n, 1) - 2, 1):.1f}" '
            f'height="{abs(y0 - y):.1f}" fill="{c}"/>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"
