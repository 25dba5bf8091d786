"""The delivery check keeps each board within its own connection's limits (the pilot grid's
``import_limit_w`` / ``export_limit_w``) by moving that board's devices: PV export limited, an EV
charging less (never below its departure need), a battery charging or discharging more. A board
whose devices cannot do it is reported, not hidden."""

from __future__ import annotations

from coordinator.delivery.assets import Assets, Costs
from coordinator.delivery.guard import GridCheck, asset_check
from coordinator.delivery.pilot import parse_toml
from coordinator.delivery.screen import Screen

GRID = """
name = "two houses"
[[bus]]
name = "MV"
vn_kv = 20.0
[[bus]]
name = "LV0"
vn_kv = 0.4
[[bus]]
name = "A1"
vn_kv = 0.4
[[transformer]]
name = "T1"
hv_bus = "MV"
lv_bus = "LV0"
std_type = "0.25 MVA 20/0.4 kV"
[[line]]
name = "LV0-A1"
from_bus = "LV0"
to_bus = "A1"
length_m = 100
std_type = "NAYY 4x150 SE"
[[connection]]
board = "ev"
bus = "A1"
import_limit_w = 3500
[[connection]]
board = "pv"
bus = "A1"
export_limit_w = 4000
"""
COSTS = Costs(pv=4000)


def check(schedule: dict[str, int], assets: dict[str, Assets]) -> GridCheck:
    grid = parse_toml(GRID)
    return asset_check(Screen(grid), grid, length=60)(schedule, assets)


def test_each_board_is_brought_within_its_connection_by_its_own_devices() -> None:
    # the grid itself carries this easily (one line, 250 kVA): only the connections break
    got = check(
        {"pv": 4_700, "ev": -4_700},
        {
            "pv": Assets("pv", pv_w=4_700, costs=COSTS),
            "ev": Assets("ev", ev_w=3_700, ev_max_w=7_360, ev_phases=1, costs=COSTS),
        },
    )
    changes = {c.board: c for c in got.changes}
    assert set(changes) == {"pv", "ev"} and got.summary.violations == 0
    pv, ev = changes["pv"], changes["ev"]
    assert pv.kind == "pv_limit" and pv.setpoint <= 4_000 and pv.delta_w >= -701
    assert pv.reason.startswith("export:pv 4700")
    assert ev.kind == "ev" and 1_200 <= ev.delta_w <= 1_201 and ev.setpoint * 230 // 1000 <= 2_500
    assert ev.reason.startswith("import:ev 4700") and ev.compensation > 0


def test_a_battery_takes_the_excess_and_what_no_device_can_take_is_reported() -> None:
    got = check(
        {"ev": -5_000, "pv": 0},
        {"ev": Assets("ev", bat_w=0, bat_charge_w=3_000, bat_discharge_w=3_000, costs=COSTS)},
    )
    (c,) = got.changes
    assert c.kind == "battery" and c.setpoint <= -1_500 and got.summary.violations == 0
    # an EV at its departure need cannot charge less: the import stays above the limit, reported
    got = check(
        {"ev": -5_000, "pv": 0},
        {"ev": Assets("ev", ev_w=4_000, ev_min_w=4_000, ev_max_w=7_360, costs=COSTS)},
    )
    assert got.changes == [] and got.summary.violations == 1
