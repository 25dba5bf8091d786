"""Schedules for benchmark grids: seeded random ones, and SimBench's 15-minute profiles.

A schedule is active power per connection bus for one interval, integer W, positive for export
(injection into the grid), negative for import; buses left out are 0.

Random schedules (:func:`random_schedules`) scale each bus's nominal load (``peak_load_w``; 10 kW
where the source has none) and generation (``pv_w``; where a bus has none, a rooftop as large
as its load) by an intensity common to the schedule, drawn uniformly from 0.2-2.5, and a factor
per bus:

- ``"load"``: import only, load x intensity x U(0.5, 1) (evening peak, heat pumps, EVs);
- ``"pv"``: export, PV x intensity x U(0.6, 1) less load x U(0, 0.3) (a sunny noon);
- ``"mixed"``: PV x intensity x U(0, 1) less load x intensity x U(0, 1).

Intensities above 1 push the benchmark grids past their limits, so a set of random schedules has
both feasible and violating ones. The generator is numpy's PCG64 seeded with ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from coordinator.delivery.errors import GridDefinitionError
from coordinator.delivery.grid import GridModel

KINDS = ("mixed", "pv", "load")
DEFAULT_LOAD_W = 10_000
INTENSITY = (0.2, 2.5)


def _nominal(
    grid: GridModel,
) -> tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.float64]]]:
    load = np.array(
        [grid.peak_load_w.get(b, 0) or DEFAULT_LOAD_W for b in grid.connection_buses], dtype=float
    )
    pv = np.array([grid.pv_w.get(b, 0) for b in grid.connection_buses], dtype=float)
    pv = np.where(pv > 0, pv, load)
    return load, pv


def random_schedules(grid: GridModel, n: int, *, seed: int = 0, kind: str = "mixed") -> list[dict[str, int]]:
    """``n`` seeded random schedules of one kind ("mixed", "pv" or "load"), W per connection bus."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    rng = np.random.default_rng(seed)
    load, pv = _nominal(grid)
    m = len(load)
    out = []
    for _ in range(n):
        g = rng.uniform(*INTENSITY)
        if kind == "load":
            p = -load * g * rng.uniform(0.5, 1.0, m)
        elif kind == "pv":
            p = pv * g * rng.uniform(0.6, 1.0, m) - load * rng.uniform(0.0, 0.3, m)
        else:
            p = pv * g * rng.uniform(0.0, 1.0, m) - load * g * rng.uniform(0.0, 1.0, m)
        out.append({b: int(round(x)) for b, x in zip(grid.connection_buses, p, strict=True)})
    return out


def _simbench_profiles(grid: GridModel) -> dict[Any, Any]:
    src = grid.source
    if src is None or "profiles" not in src or not len(src.profiles.get("load", [])):
        raise GridDefinitionError(f"grid {grid.name!r} has no SimBench profiles")
    import simbench

    return dict(simbench.get_absolute_values(src, profiles_instead_of_study_cases=True))


def simbench_parts(
    grid: GridModel, steps: Sequence[int], *, pv_scale: float = 1.0
) -> tuple[list[dict[str, int]], list[dict[str, int]]]:
    """Load and PV (x pv_scale) of a SimBench grid at 15-minute steps of its year, W per bus, both >= 0.

    Storage units are left out (the delivery day places its own batteries).
    """
    prof = _simbench_profiles(grid)
    src = grid.source
    col = {b: i for i, b in enumerate(grid.connection_buses)}
    names = {i: n for n, i in grid.bus_index.items()}
    parts = []
    for table, scale in (("load", 1.0), ("sgen", pv_scale)):
        total = np.zeros((len(steps), len(col)))
        values = prof[(table, "p_mw")]
        for s in steps:
            if not 0 <= s < len(values):
                raise ValueError(f"step must be in 0..{len(values) - 1}, got {s}")
        df = src[table]
        for idx, bus, on in zip(df.index, df.bus, df.in_service, strict=True):
            c = col.get(names.get(int(bus), ""))
            if c is not None and bool(on):
                total[:, c] += scale * values[idx].to_numpy(dtype=float)[list(steps)] * 1e6
        buses = grid.connection_buses
        parts.append([{b: int(round(w)) for b, w in zip(buses, row, strict=True)} for row in total])
    return parts[0], parts[1]


def simbench_schedules(
    grid: GridModel, steps: Sequence[int], *, pv_scale: float = 1.0
) -> list[dict[str, int]]:
    """Schedules of a SimBench grid at 15-minute steps of its year: PV x pv_scale less load, W per bus.

    Storage units are left out (their dispatch is a later part of the delivery loop).
    """
    load, pv = simbench_parts(grid, steps, pv_scale=pv_scale)
    return [{b: p[b] - ld[b] for b in grid.connection_buses} for ld, p in zip(load, pv, strict=True)]


def simbench_peak_pv_step(grid: GridModel) -> int:
    """The 15-minute step of the year with the most PV generation (a sunny noon)."""
    pv = _simbench_profiles(grid)[("sgen", "p_mw")]
    return int(pv.sum(axis=1).to_numpy().argmax())
