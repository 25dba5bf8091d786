"""The delivery check's forecast of a house without its battery and EV: the measured flow of the
forecast interval minus the devices' power over that same interval. Orders go out ahead of their
interval, so the forecast interval is an older one than the devices' newest readings: taking out
their newest power instead misjudged the house by the difference (an EV whose current changed
in between was limited from a house load that was not there)."""

from __future__ import annotations

from pathlib import Path

from coordinator.delivery.dispatch import targets, view
from coordinator.ledger import Ledger
from coordinator.members import MemberPrefs
from coordinator.transaction.settlement import settle
from sim.board import VirtualBoard
from tests.coordinator.readings import store
from tests.coordinator.test_dispatch import SITE, START, TARIFF

BATTERY = {"storage": {"capacity_mwh": 10_000_000, "max_charge_w": 3_000, "max_discharge_w": 3_000}}


def test_the_devices_leave_the_forecast_by_their_power_in_the_forecast_interval(tmp_path: Path) -> None:
    led = Ledger.open(tmp_path / "l.db")
    led.add_member("bat", "Bat", "storage", now=START, prefs=MemberPrefs.parse("bat", BATTERY))
    house = 1_000  # W the house itself imports
    b = VirtualBoard("g1", "m-bat", bytes([3]) * 32, lambda t: house + 2_000)  # charging 2 kW
    b.bat_soc, b.bat_p = 500, 2_000
    led.add_board("m-bat", "virtual", b.key.public, now=START, member_id="bat", status="active")
    store(led, [b], range(START, START + 901, 60))  # the forecast interval: charging at 2 kW
    settle(led, START, 900, "pairwise", TARIFF, {}, now=START + 960)
    b.power_w, b.bat_p = (lambda t: house), 0  # the next interval: the battery stopped
    store(led, [b], range(START + 960, START + 1741, 60))
    # orders of START + 1800 go out ahead, before START + 900 settles: the forecast is START's
    v = view.read(led, SITE, START + 1800)
    assert v.forecast == START
    assert v.expected["m-bat"] == -(house + 2_000)  # measured: the house and the charging battery
    assert v.device_w == {"m-bat": 2_000}
    sched, _ = targets.grid_input(SITE, START + 1800, {}, v)
    assert sched["m-bat"] == -house  # the house alone (with the newest power, 0 W: -3,000 W)
    led.close()
