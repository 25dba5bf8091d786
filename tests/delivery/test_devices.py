"""A member's devices from its preferences, and their ranges for one interval."""

from __future__ import annotations

from typing import Any

from coordinator.delivery.devices import Devices, next_time
from coordinator.members import MemberPrefs

DAY = 1_750_032_000 - 1_750_032_000 % 86_400  # a midnight (UTC)
BAT = {"capacity_mwh": 10_000_000, "max_charge_w": 5_000, "max_discharge_w": 4_000, "min_soc": 100}


def devices(member: str, prefs: dict[str, Any]) -> Devices:
    return Devices.from_prefs(member, MemberPrefs.parse(member, prefs), feed_in=4_000)


def test_battery_range_follows_the_state_of_charge() -> None:
    dev = devices("m", {"storage": BAT})
    assert dev.costs.pv == 4_000 and dev.battery == (10_000_000, 5_000, 4_000, 1_000_000)
    a = dev.assets("b", DAY, 900, export_w=-500, soc=1_500_000, bat_w=-4_000)
    # 0.5 kWh above min_soc: 2 kW for 15 minutes; the planned 4 kW is clipped to it
    assert (a.bat_discharge_w, a.bat_charge_w, a.bat_w, a.pv_w) == (2_000, 5_000, -2_000, 0)
    full = dev.assets("b", DAY, 900, export_w=3_000, soc=10_000_000)
    assert (full.bat_charge_w, full.pv_w) == (0, 3_000)


def test_ev_must_charge_what_the_rest_of_its_window_cannot() -> None:
    ev = {"kind": "ev", "capacity_mwh": 60_000_000, "max_charge_w": 11_000, "phases": 3}
    dev = devices("m", {"storage": ev})
    leave = DAY + 3600  # four intervals left, 2.75 kWh each
    a = dev.assets("b", DAY, 900, export_w=0, ev_w=0, ev_need=10_000_000, ev_deadline=leave)
    # the three later intervals take 8.25 kWh: 1.75 kWh must go now, 7 kW
    assert (a.ev_min_w, a.ev_w, a.ev_max_w, a.ev_phases) == (7_000, 7_000, 11_000, 3)
    relaxed = dev.assets("b", DAY, 900, export_w=0, ev_w=0, ev_need=10_000_000, ev_deadline=DAY + 86_000)
    assert (relaxed.ev_min_w, relaxed.ev_w) == (0, 0)


def test_deferrable_load_hours_and_flex_price() -> None:
    prefs = {"deferrable": {"w": 3_000, "relay": 2, "hours": [22, 6]}, "flex": {"load": 900, "price": 15_000}}
    dev = devices("m", prefs)
    assert [dev.load_on(DAY + h * 3600) for h in (21, 22, 3, 6)] == [0, 3_000, 3_000, 0]
    a = dev.assets("b", DAY + 23 * 3600, 900, export_w=0)
    assert (a.load_w, a.load_relay, a.costs.load) == (3_000, 2, 900)
    assert dev.ask("load") == 15_000 and devices("n", {}).ask("ev") == 800


def test_next_time_of_day() -> None:
    assert next_time(DAY + 28_000, 27_000) == DAY + 86_400 + 27_000
    assert next_time(DAY + 27_000, 27_000) == DAY + 27_000  # at the time itself: now


def test_an_integrator_homes_ev_and_a_market_ev() -> None:
    home = devices("h", {"integrator": {}, "ev": {"max_charge_w": 7_400, "phases": 1, "need_mwh": 5}})
    assert home.ev == (7_400, 1, 1000) and home.battery is None and home.ev_capacity == 0
    ev = {"kind": "ev", "capacity_mwh": 60_000_000, "max_charge_w": 11_000, "phases": 3, "target_soc": 800}
    market = devices("m", {"storage": ev})
    assert market.ev == (11_000, 3, 800) and market.ev_capacity == 60_000_000
    assert market.ev_need(400) == 24_000_000 and market.ev_need(900) == 0
    assert devices("c", {"flex": {"battery": 700}}).costs.of("battery") == 700
