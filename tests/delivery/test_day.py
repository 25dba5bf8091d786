"""A sunny day on a benchmark LV grid with high PV: without the delivery check some intervals
break voltage or transformer limits in the AC power flow; with the check, redispatch (PV export
limits, cheapest effect first) brings every interval back within limits, confirmed by AC, and
every change says why."""

from __future__ import annotations

from coordinator.delivery.grid import GridModel
from coordinator.delivery.schedules import simbench_peak_pv_step, simbench_schedules
from coordinator.delivery.screen import Screen
from coordinator.redispatch import Resource, redispatch

FEED_IN = 4_000  # mc/kWh: what a curtailed kWh of export would have earned


def redispatched(scr: Screen, schedule: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    """Curtail PV export until the screen's constraints hold (re-linearising up to 3 times)."""
    s = dict(schedule)
    reasons: list[str] = []
    for _ in range(3):
        cons = scr.constraints(s)
        if all(c.value <= c.limit for c in cons):
            break
        res = [Resource(bus, bus, "pv_limit", w, -1, FEED_IN) for bus, w in s.items() if w > 0]
        out = redispatch(cons, res)
        for a in out.adjustments:
            s[a.board] += a.delta_w
            reasons.append(f"{a.board}: {a.delta_w} W because {a.reason}")
    return s, reasons


def test_high_pv_day_with_and_without_the_delivery_check(rural: GridModel) -> None:
    scr = Screen(rural)
    peak = simbench_peak_pv_step(rural)
    steps = list(range(peak - 16, peak + 17, 4))  # 08:00-16:00 around the sunniest noon, hourly
    schedules = simbench_schedules(rural, steps)
    without = [scr.check(s) for s in schedules]  # AC confirms whatever the screen flags
    violating = [i for i, r in enumerate(without) if not r.ok]
    assert violating, "the high-PV day should break a limit somewhere without the check"
    assert any(r.ok for r in without)  # the morning and evening are fine
    for i in violating:
        fixed, reasons = redispatched(scr, schedules[i])
        after = scr.check(fixed, confirm=True)
        assert after.ok, (steps[i], after.violations)
        ac = scr.ac(fixed)  # and the AC power flow itself, whatever the screen says
        lim = rural.limits
        assert ac.vm_pu.max() <= lim.v_max_pu and ac.vm_pu.min() >= lim.v_min_pu
        assert (
            ac.line_loading.max() <= lim.line_max_percent and ac.trafo_loading.max() <= lim.trafo_max_percent
        )
        assert reasons and all("because" in x for x in reasons)
        assert sum(fixed.values()) < sum(schedules[i].values())  # export was curtailed, nothing else
        assert all(fixed[b] <= schedules[i][b] for b in fixed)
