"""A member's devices from its preferences, and their ranges for one interval."""

from __future__ import annotations

import pytest

from coordinator.delivery.devices import Devices, hhmm, next_time
from coordinator.delivery.errors import AssetError

DAY = 1_750_032_000 - 1_750_032_000 % 86_400  # a midnight (UTC)
BAT = {"capacity_mwh": 10_000_000, "max_charge_w": 5_000, "max_discharge_w": 4_000, "min_soc": 100}


def test_battery_range_follows_the_state_of_charge() -> None:
    dev = Devices.from_prefs("m", {"storage": BAT}, feed_in=4_000)
    assert dev.costs.pv == 4_000 and dev.battery == (10_000_000, 5_000, 4_000, 1_000_000)
    a = dev.assets("b", DAY, 900, export_w=-500, soc=1_500_000, bat_w=-4_000)
    # 0.5 kWh above min_soc: 2 kW for 15 minutes; the planned 4 kW is clipped to it
    assert (a.bat_discharge_w, a.bat_charge_w, a.bat_w, a.pv_w) == (2_000, 5_000, -2_000, 0)
    full = dev.assets("b", DAY, 900, export_w=3_000, soc=10_000_000)
    assert (full.bat_charge_w, full.pv_w) == (0, 3_000)


def test_ev_must_charge_what_the_rest_of_its_window_cannot() -> None:
    ev = {"kind": "ev", "capacity_mwh": 60_000_000, "max_charge_w": 11_000, "phases": 3}
    dev = Devices.from_prefs("m", {"storage": ev}, feed_in=4_000)
    leave = DAY + 3600  # four intervals left, 2.75 kWh each
    a = dev.assets("b", DAY, 900, export_w=0, ev_w=0, ev_need=10_000_000, ev_deadline=leave)
    # the three later intervals take 8.25 kWh: 1.75 kWh must go now, 7 kW
    assert (a.ev_min_w, a.ev_w, a.ev_max_w, a.ev_phases) == (7_000, 7_000, 11_000, 3)
    relaxed = dev.assets("b", DAY, 900, export_w=0, ev_w=0, ev_need=10_000_000, ev_deadline=DAY + 86_000)
    assert (relaxed.ev_min_w, relaxed.ev_w) == (0, 0)


def test_deferrable_load_hours_and_flex_price() -> None:
    prefs = {"deferrable": {"w": 3_000, "relay": 2, "hours": [22, 6]}, "flex": {"load": 900, "price": 15_000}}
    dev = Devices.from_prefs("m", prefs, feed_in=4_000)
    assert [dev.load_on(DAY + h * 3600) for h in (21, 22, 3, 6)] == [0, 3_000, 3_000, 0]
    a = dev.assets("b", DAY + 23 * 3600, 900, export_w=0)
    assert (a.load_w, a.load_relay, a.costs.load) == (3_000, 2, 900)
    assert dev.ask("load") == 15_000 and Devices.from_prefs("n", {}, feed_in=4_000).ask("ev") == 800


def test_times() -> None:
    assert hhmm("07:30", "x") == 27_000 and next_time(DAY + 28_000, 27_000) == DAY + 86_400 + 27_000
    with pytest.raises(AssetError, match="HH:MM"):
        hhmm("7h30", "member 'm' departure")


@pytest.mark.parametrize(
    ("prefs", "message"),
    [
        (
            {"storage": {"capacity_mwh": -1, "max_charge_w": 1}},
            "storage.capacity_mwh must be an integer >= 0",
        ),
        ({"storage": {"capacity_mwh": 1, "max_charge_w": 1.5}}, "storage.max_charge_w"),
        ({"deferrable": {"w": 100, "relay": 9}}, "relay must be 0..7"),
        ({"deferrable": {"w": 100, "hours": [1]}}, "hours must be"),
        ({"flex": {"ev": "cheap"}}, "flex.ev must be an integer"),
        ({"flex": 3}, "flex must be a table"),
    ],
)
def test_bad_prefs_are_refused_with_the_key(prefs: dict[str, object], message: str) -> None:
    with pytest.raises(AssetError, match=message):
        Devices.from_prefs("m", prefs, feed_in=4_000)
