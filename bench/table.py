"""A table of benchmark rows: measured value, reference measured in the same run, their ratio."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Row:
    name: str
    value: float
    unit: str
    reference: float | None = None
    ref_name: str = ""
    target: str = ""

    @property
    def ratio(self) -> float | None:
        if self.reference in (None, 0):
            return None
        assert self.reference is not None
        return self.value / self.reference


def fmt(v: float) -> str:
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


def render(rows: list[Row]) -> str:
    head = ("benchmark", "measured", "reference (same run)", "ratio", "target")
    body = []
    for r in rows:
        ref = f"{fmt(r.reference)} {r.unit} {r.ref_name}" if r.reference is not None else "-"
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        body.append((r.name, f"{fmt(r.value)} {r.unit}", ref, ratio, r.target or "-"))
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [head, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> str:
    import os

    return f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"


def rate(fn: Callable[[], object], n: int, repeat: int = 5) -> float:
    """Best-of-``repeat`` calls per second of ``fn`` over ``n`` calls."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def median(xs: list[float]) -> float:
    return statistics.median(xs)
