"""A PV export limit on a SunSpec inverter (its output limit, model 123 WMaxLimPct) follows the
house's load, on the real MicroPython unix port with the fake Modbus slave holding a real
SunSpec map: output limit = export limit + (inverter AC power + metered grid import), rewritten
only when it moves by 2 % of WMax or more; without a load (meter fault, inverter silent) the
export limit alone (and the inverter not asked again for 30 polls when it was silent); no Modbus
traffic while the limit does not bind; the board's metering task drives it."""

from __future__ import annotations

from pathlib import Path

from tests.firmware.test_sunspec import BOARD_TOML, board
from tests.mpy import FIRMWARE_HEAP_NOW, run_micropython

PV_ONLY = BOARD_TOML.replace("[battery]\nmax_charge_w = 3300\nmax_discharge_w = 3300\nsunspec = 1\n", "")

SCRIPT = r"""
import asyncio
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
from fakes import sunspec as fake
P = [-500]  # the grid power the meter sees, W (+ import)
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
hw = FakeHardware(cfg, lambda now: P[0])
clock = SimClock(1750000000, 50)
b = app.Board(cfg, settings, hw, clock)
s = hw.slave
fake.load(s)
asyncio.run(hw.battery_state())  # discovery
act = b.act
W = fake.at(s, 103, 12)  # the inverter's AC power (W_SF 0)
PCT = fake.at(s, 123, 3)  # WMaxLimPct, 0.01 % of WMax 5000 W
def follow(p):
    asyncio.run(act.follow(p))
    return [s.regs[PCT], act.pv_out]
out = []
with open("order.bin", "rb") as f:
    asyncio.run(b.orders.handle(b.t_order, f.read(), 1750000200))  # export limit 2000 W
out.append([s.regs[PCT], act.pv_limit_w, act.pv_e])  # no load measured yet: the limit alone
s.regs[W] = 2500
out.append(follow(-500))  # 2500 made, 500 exported: the house uses 2000 -> output 4000
w = s.writes
out.append(follow(-520) + [s.writes - w])  # load 1980: 3980 is within 100 W: not rewritten
out.append(follow(None))  # the meter faulted: the export limit alone
s.regs[W] = 2000
s.silent = True
out.append(follow(300) + [act.faults + hw.ss["pv"].faults])  # the inverter is silent: the limit alone
s.silent = False
r = s.reads
out.append(follow(300) + [s.reads - r, act.pv_skip])  # not asked again at once: the limit alone
for _ in range(29):
    follow(300)
out.append(follow(300))  # 30 polls later: 2000 made, 300 imported: load 2300 -> output 4300
out.append(follow(-4000))  # a reading that makes the load negative: never below the limit
asyncio.run(act.apply(None, None, 5000, 0))  # the limit lifted (the board's max export = WMax)
r = s.reads
out.append(follow(-500) + [s.reads - r])  # not binding: nothing read, nothing written
asyncio.run(act.apply(None, None, 1000, 0))
s.regs[W] = 1500
P[0] = -200  # the house uses 1300
steps = [0]
follow_ = act.follow
async def counted(p):
    steps[0] += 1
    await follow_(p)
act.follow = counted
async def run(ms):
    b.stop = False
    t = asyncio.create_task(b.metering())
    await asyncio.sleep_ms(ms)
    b.stop = True
    await t
asyncio.run(run(200))  # ten seconds of board time: ten polls
out.append([s.regs[PCT], act.pv_out, b.meter.p_w, steps[0]])
dev = b.meter.dev
if hasattr(dev, "telegrams"):  # a P1 port that goes quiet: no new power, no step
    n = steps[0]
    hw._fake().emit = lambda *a: None
    hw.physics = lambda now: None
    asyncio.run(run(100))
    out.append(steps[0] - n)
print("RESULT", out)
"""


P1 = PV_ONLY.replace(
    '[frontend]\nchip = "pzem004t"\nuart = 2\ntx = 17\nrx = 16\n',
    '[frontend]\nchip = "dsmr_p1"\nuart = 2\ntx = 17\nrx = 16\n',
)


def follow_run(tmp_path: Path, toml: str) -> list[list[int]]:
    board(tmp_path, toml)
    out = run_micropython(SCRIPT, heap=FIRMWARE_HEAP_NOW, cwd=tmp_path).stdout
    got: list[list[int]] = eval(out.split("RESULT")[1])
    assert got[0] == [4000, 2000, 2000]  # 40.00 % of 5000 W; the ack's limit is the export limit
    assert got[1] == [8000, 4000]
    assert got[2] == [8000, 4000, 0]
    assert got[3] == [4000, 2000]
    assert got[4][:2] == [4000, 2000] and got[4][2] >= 1
    assert got[5] == [4000, 2000, 0, 29]
    assert got[6] == [8600, 4300]
    assert got[7] == [4000, 2000]
    assert got[8] == [10000, 5000, 0]
    return got


def test_the_output_limit_follows_the_house_load(tmp_path: Path) -> None:
    """A board metering with a DSMR P1 port (import and export told apart)."""
    got = follow_run(tmp_path, P1)
    assert got[9][:3] == [4600, 2300, -200]  # the metering task: 1000 W + the house's 1300 W
    assert got[9][3] >= 5  # a step a telegram (one a second)
    assert got[10] <= 1  # a P1 port gone quiet: no step on its old power (one for a telegram in flight)


def test_a_one_way_meter_leaves_the_output_limit_at_the_export_limit(tmp_path: Path) -> None:
    """A PZEM-004T cannot tell an export from an import: the metering task does not follow the
    load with it (an export read as an import would raise the inverter's output past the limit)."""
    got = follow_run(tmp_path, PV_ONLY)
    assert got[9][:2] == [2000, 1000] and got[9][2] >= 0 and got[9][3] == 0  # the export limit alone
