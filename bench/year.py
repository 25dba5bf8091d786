"""A simulated year of a SimBench LV community: every 15-minute interval cleared by the market and
screened by the delivery check, against the target of under 5 minutes for the year.

Each connection bus of SimBench ``1-LV-rural1--2-sw`` is a member whose net energy in the interval
(the grid's own load and PV profiles for the year) becomes a pairwise double-auction order (sellers
between the feed-in tariff and 9 Rp/kWh, buyers between 12 Rp/kWh and retail, fixed per member);
the interval's schedule then goes through the delivery screen (linear sensitivities, pandapower AC
power flow where the screen flags it), as the coordinator's interval loop does. The CI size runs
one summer day (more AC confirmations than the year's average) and projects the year from it;
the full size runs all 35,040 intervals.
"""

from __future__ import annotations

import time

from bench.table import Row
from coordinator.delivery.grid import load_simbench
from coordinator.delivery.schedules import simbench_parts
from coordinator.delivery.screen import Screen
from coordinator.market import Order, Tariff, clear

GRID = "1-LV-rural1--2-sw"
STEPS_PER_YEAR = 35_040
TARIFF = Tariff(feed_in=4_000, retail=20_750, grid_fee=6_000, grid_fee_local=3_000)
MWH_PER_W = 250  # one W held for 15 minutes is 250 mWh
CHUNK = 2_016  # intervals whose profiles are read at once (three weeks)


def year(steps: list[int]) -> tuple[float, float, float, int, int]:
    """Seconds for profiles, market and delivery over ``steps``; flagged and violating intervals."""
    g = load_simbench(GRID)
    scr = Screen(g)
    buses = list(g.connection_buses)
    limits = {b: (4_000 + (k * 613) % 5_000, 12_000 + (k * 977) % 8_750) for k, b in enumerate(buses)}
    t_prof = t_market = t_grid = 0.0
    flagged = violating = 0
    for c in range(0, len(steps), CHUNK):
        part = steps[c : c + CHUNK]
        t = time.perf_counter()
        load, pv = simbench_parts(g, part)
        t_prof += time.perf_counter() - t
        for s, ld, gen in zip(part, load, pv, strict=True):
            t = time.perf_counter()
            schedule = {b: gen[b] - ld[b] for b in buses}  # W, + export
            orders = []
            for b in buses:
                w = schedule[b]
                if w:
                    ask, bid = limits[b]
                    if w > 0:
                        orders.append(Order(b, "sell", w * MWH_PER_W, ask, "f1", f"{b}-{s}"))
                    else:
                        orders.append(Order(b, "buy", -w * MWH_PER_W, bid, "f1", f"{b}-{s}"))
            clear("pairwise", s * 900, orders, TARIFF)
            t_market += time.perf_counter() - t
            t = time.perf_counter()
            res = scr.check(schedule)
            t_grid += time.perf_counter() - t
            flagged += bool(res.findings)
            violating += not res.ok
    return t_prof, t_market, t_grid, flagged, violating


def run(ci: bool) -> list[Row]:
    steps = list(range(17_000, 17_096)) if ci else list(range(STEPS_PER_YEAR))  # CI: a summer day
    t_prof, t_market, t_grid, flagged, violating = year(steps)
    scale = STEPS_PER_YEAR / len(steps)
    # reading the profiles is mostly a one-off (SimBench builds the year's absolute values once)
    total = t_prof + (t_market + t_grid) * scale
    what = "projected from a day" if ci else "35,040 intervals"
    year_s = "year total"
    return [
        Row(f"year of SimBench LV rural1: market + delivery ({what})", total, "s", 300, "target", "< 5 min"),
        Row("  of which market clearing", t_market * scale, "s", total, year_s),
        Row("  of which delivery screen and AC checks", t_grid * scale, "s", total, year_s),
        Row("  of which reading the year's profiles", t_prof, "s", total, year_s),
        Row(
            "  intervals the screen flagged (AC run on them)", flagged * scale, "", len(steps) * scale, "all"
        ),
        Row(
            "  intervals violating limits in AC (no redispatch)",
            violating * scale,
            "",
            flagged * scale,
            "flagged",
        ),
    ]
