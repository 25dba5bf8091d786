"""The delivery screen beside pandapower's AC power flow (runpp), measured in the same run."""

from __future__ import annotations

from bench.table import Row
from coordinator.delivery.bench import bench_screen
from coordinator.delivery.grid import load_pandapower, load_simbench


def run(ci: bool) -> list[Row]:
    n = 20 if ci else 200
    grids = [load_pandapower("cigre_lv"), load_pandapower("kerber_landnetz_kabel_1")]
    if not ci:
        grids.append(load_simbench("1-LV-rural1--2-sw"))
    rows = []
    for g in grids:
        r = bench_screen(g, n)
        rows.append(
            Row(
                f"grid screen, {r['grid']} ({r['connections']} connections)",
                float(r["screen_ms"]),
                "ms",
                float(r["runpp_ms"]),
                "pandapower runpp",
            )
        )
        rows.append(
            Row(
                f"grid check incl. AC where flagged ({float(r['ac_share']):.0%} of schedules)",
                float(r["check_ms"]),
                "ms",
                float(r["runpp_ms"]),
                "runpp every time",
            )
        )
    rows.extend(sunny_day(96, 8 if ci else 1))
    rows.extend(community_day(3600 if ci else 900))
    return rows


def sunny_day(steps_per_day: int = 96, stride: int = 1) -> list[Row]:
    """The peak-PV day of SimBench rural1 (2034): intervals violating in AC without the check, and
    after screen + redispatch; time per interval beside one runpp."""
    import time

    from coordinator.delivery.schedules import simbench_peak_pv_step, simbench_schedules
    from coordinator.delivery.screen import Screen
    from tests.delivery.test_day import redispatched

    g = load_simbench("1-LV-rural1--2-sw")
    scr = Screen(g)
    peak = simbench_peak_pv_step(g)
    day0 = peak - peak % steps_per_day
    steps = list(range(day0, day0 + steps_per_day, stride))
    schedules = simbench_schedules(g, steps)
    t = time.perf_counter()
    bad_before = bad_after = 0
    for s in schedules:
        if not scr.check(s).ok:
            bad_before += 1
            fixed, _ = redispatched(scr, s)
            bad_after += not scr.check(fixed).ok
    per = (time.perf_counter() - t) / len(schedules) * 1e3
    t = time.perf_counter()
    for s in schedules[:10]:
        scr.ac(s)
    runpp = (time.perf_counter() - t) / 10 * 1e3
    return [
        Row(
            f"sunny day rural1: {bad_before}/{len(steps)} intervals violate, {bad_after} after redispatch",
            per,
            "ms/interval",
            runpp,
            "one runpp",
        ),
    ]


def community_day(length: int = 900) -> list[Row]:
    """24 hours of the community day (coordinator.delivery.day) on SimBench rural1 (2034) with
    homes' PV, home and community batteries, 20 EVs and heat pumps: intervals that break a limit
    in AC without the guard and with it, the changes made, the EVs' energy, and the time per
    interval (screen, redispatch, AC where flagged, plus one AC of the result) beside one runpp."""
    import time

    from coordinator.delivery.day import simulate
    from coordinator.delivery.screen import Screen

    g = load_simbench("1-LV-rural1--2-sw")
    scr = Screen(g)
    without = simulate(g, length=length, screen=scr, guarded=False)
    with_ = simulate(g, length=length, screen=scr, guarded=True)
    n = len(with_.intervals)
    bad0 = sum(bool(iv.violations) for iv in without.intervals)
    bad1 = sum(bool(iv.violations) for iv in with_.intervals)
    changes = [c for iv in with_.intervals for c in iv.changes]
    kinds = ", ".join(
        f"{k} {sum(c.kind == k for c in changes)}" for k in ("pv_limit", "battery", "ev", "load")
    )
    met = sum(with_.ev_got[b] >= with_.ev_need[b] for b in with_.ev_need)
    t = time.perf_counter()
    sched = {b: 0 for b in g.connection_buses}
    for _ in range(10):
        scr.ac(sched)
    runpp = (time.perf_counter() - t) / 10 * 1e3
    euro = with_.compensation / 1e11  # nano-cent -> EUR
    return [
        Row(
            f"community day ({length // 60}-min, {n} intervals): {bad0} violate in AC without guard, "
            f"{bad1} with; changes: {kinds}; EVs full {met}/{len(with_.ev_need)}; paid {euro:.2f} EUR",
            with_.seconds / n * 1e3,
            "ms/interval",
            runpp,
            "one runpp",
        ),
        Row(
            f"community day without guard (AC every interval, {without.ac_runs} runs)",
            without.seconds / n * 1e3,
            "ms/interval",
            runpp,
            "one runpp",
        ),
    ]
