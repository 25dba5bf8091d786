"""The guard on the pilot grid: a sunny interval that would overload the overhead spur gets PV
export limits on the right boards, with reasons and compensation; the result holds in AC."""

from __future__ import annotations

from coordinator.delivery.grid import GridModel
from coordinator.delivery.guard import guard
from coordinator.delivery.screen import Screen


def test_guard_limits_export_where_it_helps(pilot: GridModel) -> None:
    scr = Screen(pilot)
    noon = {"house-01": 10_000, "house-02": 4_600, "school": 50_000, "farm": 30_000, "house-04": 8_000}
    pv = {b: w for b, w in noon.items()}
    curt, result = guard(scr, pilot, noon, pv, length=900, feed_in=4_000)
    assert result.ok, result.violations
    assert curt and {c.board for c in curt} >= {"farm"}  # the farm at the end of the spur
    for c in curt:
        assert c.delta_w < 0 and c.pv_limit_w == noon[c.board] + c.delta_w
        assert "v_max:C1" in c.reason and c.compensation == -c.delta_w * 900 * 10 // 36 * 4_000
    ac = scr.ac(pilot.bus_schedule({b: noon[b] + sum(c.delta_w for c in curt if c.board == b) for b in noon}))
    assert ac.vm_pu.max() <= pilot.limits.v_max_pu
    calm = {b: w // 10 for b, w in noon.items()}
    assert guard(scr, pilot, calm, pv, length=900, feed_in=4_000)[0] == []  # nothing to do
