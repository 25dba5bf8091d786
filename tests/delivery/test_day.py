"""A sunny day on a benchmark LV grid with high PV: without the delivery check some intervals
break voltage or transformer limits in the AC power flow; with the check, redispatch (PV export
limits, cheapest effect first) brings every interval back within limits, confirmed by AC, and
every change says why."""

from __future__ import annotations

from coordinator.delivery.day import COSTS, HP_HOURS, PRICES, simulate
from coordinator.delivery.grid import GridModel
from coordinator.delivery.redispatch import Resource, redispatch
from coordinator.delivery.schedules import simbench_peak_pv_step, simbench_schedules
from coordinator.delivery.screen import Screen

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


def test_day_with_every_asset_type(rural: GridModel) -> None:
    """Homes with PV, home batteries and a community battery trading on the local price, EVs
    charging in the cheapest night hours and heat pumps on relays: without the guard the midday
    PV breaks voltage limits and the EVs, all charging at the cheapest hour, overload the
    transformer; with it no interval breaks a limit in AC, each change says why and is paid for,
    and every EV still gets its energy by departure."""
    scr = Screen(rural)
    without = simulate(rural, screen=scr, guarded=False)
    bad = [iv for iv in without.intervals if iv.violations]
    assert any("voltage" in v for iv in bad for v in iv.violations)  # sunny midday
    night = [iv for iv in bad if iv.ev_w > 0]
    assert night and all(any("Trafo" in v for v in iv.violations) for iv in night)  # EVs at midnight
    # price response: left alone, EVs charge only in the cheapest hours of their window
    charging = {(8 + iv.start_s // 3600) % 24 for iv in without.intervals if iv.ev_w}
    assert charging and {PRICES[h] for h in charging} == {min(PRICES[h] for h in (*range(17, 24), *range(7)))}
    with_ = simulate(rural, screen=scr, guarded=True)
    assert all(not iv.violations for iv in with_.intervals), [iv.violations for iv in with_.intervals]
    changes = [c for iv in with_.intervals for c in iv.changes]
    kinds = {c.kind for c in changes}
    assert kinds == {"pv_limit", "battery", "ev", "load"}
    for c in changes:
        assert c.reason and all(":" in part and ">" in part for part in c.reason.split("; "))
        assert c.compensation == abs(c.delta_w) * 3600 * 10 // 36 * COSTS.of(c.kind) > 0
    assert with_.compensation == sum(c.compensation for c in changes)
    # the community battery serves the midday congestion by charging more than its market plan
    assert any(c.board == "community" and c.kind == "battery" and c.delta_w < 0 for c in changes)
    # EVs: charged less at the congested hour, the rest shifted later in the night, need met
    assert any(c.kind == "ev" and c.delta_w > 0 for c in changes)
    assert with_.ev_got == with_.ev_need and without.ev_got == without.ev_need
    spread = {(8 + iv.start_s // 3600) % 24 for iv in with_.intervals if iv.ev_w}
    assert len(spread) > len(charging)  # over more night hours than the price alone chose
    # heat pumps paused at the congested hour (cheapest of all) catch up their runs later
    assert any(c.kind == "load" for c in changes) and set(with_.runs.values()) == {HP_HOURS}
    # cheapest effect first: batteries (1,000 mc/kWh) absorb before PV (4,000) is curtailed
    first = next(iv for iv in with_.intervals if iv.changes)
    assert any(c.kind == "battery" for c in first.changes)
