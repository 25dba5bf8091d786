"""Timing of the screen against pandapower's AC power flow, measured in the same run.

:func:`bench_screen` returns one dict per grid for the bench table: milliseconds per schedule for
the screen (one schedule at a time, and batched), for runpp, and for :meth:`Screen.check`
(screen, plus runpp where flagged), the share of schedules that needed runpp, and the screen's
largest error against runpp over the same schedules.
"""

from __future__ import annotations

import time

import numpy as np

from coordinator.delivery.grid import GridModel
from coordinator.delivery.schedules import random_schedules
from coordinator.delivery.screen import Screen


def bench_screen(
    grid: GridModel, n: int = 100, *, seed: int = 0, corrections: int = 1
) -> dict[str, float | int | str]:
    """Time the screen and runpp on ``n`` seeded mixed random schedules of ``grid``."""
    t = time.perf_counter()
    screen = Screen(grid, corrections=corrections)
    setup = time.perf_counter() - t
    schedules = random_schedules(grid, n, seed=seed, kind="mixed")
    vectors = np.array([screen.vector(s) for s in schedules])

    t = time.perf_counter()
    predicted = [screen.predict(s) for s in schedules]
    for p in predicted:
        screen.flags(p)
    t_screen = time.perf_counter() - t

    t = time.perf_counter()
    screen.predict_many(vectors)
    t_batch = time.perf_counter() - t

    t = time.perf_counter()
    ac = [screen.ac_vector(v) for v in vectors]
    t_ac = time.perf_counter() - t

    t = time.perf_counter()
    checked = [screen.check(s) for s in schedules]
    t_check = time.perf_counter() - t

    dv = max(float(np.abs(p.vm_pu - a.vm_pu).max()) for p, a in zip(predicted, ac, strict=True))
    dl = max(
        float(np.abs(np.r_[p.line_loading - a.line_loading, p.trafo_loading - a.trafo_loading]).max())
        for p, a in zip(predicted, ac, strict=True)
    )
    return {
        "grid": grid.name,
        "n": n,
        "connections": len(screen.buses),
        "buses": len(screen.v_buses),
        "branches": len(screen.lines) + len(screen.transformers),
        "setup_ms": setup * 1e3,
        "screen_ms": t_screen / n * 1e3,
        "screen_batch_ms": t_batch / n * 1e3,
        "runpp_ms": t_ac / n * 1e3,
        "check_ms": t_check / n * 1e3,
        "speedup": t_ac / t_screen if t_screen else float("inf"),
        "ac_share": sum(r.ac_checked for r in checked) / n,
        "max_dv_pu": dv,
        "max_dloading_pp": dl,
    }
