"""The guard on the pilot grid: a sunny interval that would overload the overhead spur gets PV
export limits on the right boards, with reasons and compensation; the result holds in AC. On the
street grid an evening EV overload is relieved with EVs, batteries and deferrable loads, cheapest
first."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.delivery.assets import Assets, Costs
from coordinator.delivery.errors import AssetError
from coordinator.delivery.grid import GridModel
from coordinator.delivery.guard import check_from_file, guard, redispatch_assets
from coordinator.delivery.pilot import load_toml
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


STREET = Path(__file__).with_name("street.toml")


def street_assets(discharge_w: int = 4_000) -> dict[str, Assets]:
    return {
        "ev-a": Assets("ev-a", ev_w=11_000, ev_min_w=11_000, ev_max_w=11_000, ev_phases=3),  # leaves soon
        "ev-b": Assets("ev-b", ev_w=11_000, ev_min_w=5_000, ev_max_w=11_000, ev_phases=3),
        "community": Assets("community", bat_w=0, bat_charge_w=30_000, bat_discharge_w=discharge_w),
        "hp": Assets("hp", load_w=3_000, load_relay=1),
    }


def evening(home_w: int) -> dict[str, int]:
    homes = {"house-1": -home_w, "house-2": -home_w, "house-3": -home_w}
    return homes | {"ev-a": -11_000, "ev-b": -11_000, "hp": -3_000, "community": 0}


def test_evening_overload_relieved_cheapest_device_first() -> None:
    """EV charging on a 63 kVA street overloads the transformer. The cheapest relief per unit of
    effect goes first: the flexible EV's current (800 mc/kWh) down to what it needs to leave full,
    then the community battery discharges (1,000) as far as its charge allows, then the heat pump
    (2,500) is switched off whole; the EV leaving soon keeps charging. AC confirms."""
    street = load_toml(STREET)
    scr = Screen(street)
    sched = evening(16_000)
    assert not scr.check_boards(sched).ok
    changes, result, after = redispatch_assets(scr, street, sched, street_assets(), length=900)
    assert result.ok, result.violations
    got = {(c.board, c.kind): c for c in changes}
    assert set(got) == {("ev-b", "ev"), ("community", "battery"), ("hp", "load")}
    assert got[("ev-b", "ev")].delta_w == 6_000 and got[("ev-b", "ev")].setpoint == 5_000 * 1000 // 690
    assert got[("community", "battery")].delta_w == 4_000 and after["community"].bat_w == -4_000
    assert got[("hp", "load")].delta_w == 3_000 and got[("hp", "load")].setpoint == 0  # off, not dimmed
    assert after["ev-a"].ev_w == 11_000
    for c in changes:
        assert c.reason.startswith("trafo:T1 ") and " > 98.0000" in c.reason
        assert c.compensation == c.delta_w * 900 * 10 // 36 * Costs().of(c.kind)
    fixed = {b: w + sum(c.delta_w for c in changes if c.board == b) for b, w in sched.items()}
    assert scr.ac(street.bus_schedule(fixed)).trafo_loading.max() <= 100.0
    # a smaller overload needs only the cheapest device
    changes, result, _ = redispatch_assets(scr, street, evening(13_000), street_assets(), length=900)
    assert result.ok and [c.kind for c in changes] == ["ev"]


def test_unfixable_overload_is_reported() -> None:
    street = load_toml(STREET)
    scr = Screen(street)
    changes, result, _ = redispatch_assets(scr, street, evening(25_000), street_assets(0), length=900)
    assert not result.ok and any(v.kind == "trafo" for v in result.violations)
    assert {c.kind for c in changes} == {"ev", "load"}  # everything it had was used


def test_bad_assets_are_refused() -> None:
    with pytest.raises(AssetError, match="battery setpoint 5000 W outside"):
        Assets("b", bat_w=5_000, bat_charge_w=3_000)
    with pytest.raises(AssetError, match="EV setpoint"):
        Assets("b", ev_w=2_000, ev_min_w=3_000, ev_max_w=11_000)
    with pytest.raises(AssetError, match="cannot be negative"):
        Assets("b", pv_w=-1)
    with pytest.raises(AssetError, match="cost of ev"):
        Costs(ev=-5)


def test_check_from_file_leaves_out_boards_the_grid_does_not_connect() -> None:
    check = check_from_file(Path(__file__).with_name("pilot.toml"), length=900)
    noon = {"house-01": 10_000, "house-02": 4_600, "school": 50_000, "farm": 30_000, "house-04": 8_000}
    assets = {b: Assets(b, pv_w=w) for b, w in noon.items()} | {"elsewhere": Assets("elsewhere", pv_w=9)}
    checked = check(noon | {"elsewhere": 9}, assets)
    changes = checked.changes
    assert (
        changes
        and {c.kind for c in changes} == {"pv_limit"}
        and "elsewhere" not in {c.board for c in changes}
    )
    # the summary is of the curtailed schedule: within every limit, the worst places named
    s = checked.summary
    assert s.violations == 0 and s.v_max_bus and s.v_max_pu is not None and s.v_max_pu <= 1.1
    assert s.trafo_max and s.trafo_max_pct is not None and s.line_max and s.source in ("screen", "ac")
