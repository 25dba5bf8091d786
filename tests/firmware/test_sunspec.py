"""SunSpec inverters and batteries on the real MicroPython unix port: the board finds the models
from the SunSpec header of a real model map served by the fake Modbus slave (the RTU byte
protocol), curtails PV export through model 123 and sets the battery through model 124 on a signed
order, reads state of charge and power back into its readings; a map without a needed model falls
back to the hand-listed register or counts a fault; a device without a map, with an out-of-range
state of charge or scale factor is reported and the board keeps running. A device with the DER
models only (701, 702, 704, 802) is driven through 704 and read through 802 and 701; one with both
kinds uses the legacy models; ``ac_power`` reads the inverter's AC power from either."""

from __future__ import annotations

import json
from pathlib import Path

from coordinator.provision import boardfile
from protocol import crypto, frame, messages, topics
from tests.mpy import FIRMWARE_HEAP_NOW, run_micropython

COORD = crypto.SigningKey(bytes(range(32)))
T = 1_750_000_200

BOARD_TOML = """
type = "esp32-sunspec"
[frontend]
chip = "pzem004t"
uart = 2
tx = 17
rx = 16
[modbus]
uart = 1
tx = 32
rx = 33
baud = 9600
[pv]
max_export_w = 5000
sunspec = 1
[battery]
max_charge_w = 3300
max_discharge_w = 3300
sunspec = 1
[limits]
import_w = 11000
export_w = 5000
"""


def board(tmp_path: Path, toml: str = BOARD_TOML) -> None:
    (tmp_path / "b.toml").write_text(toml)
    cfg = boardfile.compact(boardfile_dict(toml))
    (tmp_path / "board.json").write_text(json.dumps(cfg))
    settings = {
        "board": "m01",
        "grid": "g1",
        "coordinator_key": COORD.public.hex(),
        "broker": {"host": "127.0.0.1", "port": 1},
    }
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    o = messages.Order(
        board="m01",
        oseq=1,
        interval=T,
        valid_from=T - 60,
        valid_until=T + 900,
        bat_w=-1650,
        pv_limit_w=2000,
        relay_mask=0,
        relay_state=0,
    )
    (tmp_path / "order.bin").write_bytes(frame.seal(o, topics.board_topic("g1", "m01", "order"), COORD))


PRELUDE = r"""
import asyncio
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
from fakes import sunspec as fake
from protocol import crypto, frame
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
hw = FakeHardware(cfg, lambda now: -3000)
b = app.Board(cfg, settings, hw, SimClock(1750000000, 1))
ver = crypto.Verifier(b.key.public)
s = hw.slave
def reading(now):
    b.bat = asyncio.run(hw.battery_state())
    r = frame.open_frame(b.t_reading, b.reading(now), lambda m: ver)
    return [r.bat_soc, r.bat_p]
def order():
    with open("order.bin", "rb") as f:
        t, fr = asyncio.run(b.orders.handle(b.t_order, f.read(), 1750000200))
    a = frame.open_frame(t, fr, lambda m: ver)
    return [a.status, a.bat_w, a.pv_limit_w]
"""

CURTAIL = (
    PRELUDE
    + r"""
fake.load(s)
s.regs[fake.at(s, 103, 12)] = 1650  # the inverter's AC power out: the battery discharging
out = [reading(1750000010)]
out.append(order())  # PV export limit 2000 W of WMax 5000 W; battery discharge 1650 W of 3300 W
out.append([s.regs[fake.at(s, 123, 3)], s.regs[fake.at(s, 123, 7)],  # WMaxLimPct (0.01 %), WMaxLim_Ena
            s.regs[fake.at(s, 124, 3)], s.regs[fake.at(s, 124, 10)]])  # StorCtl_Mod, OutWRte (0.1 %)
s.regs[fake.at(s, 124, 6)] = 1500  # 150 %: out of range, not reported
out.append(reading(1750000020))
out.append(b.hw.ss["pv"].faults)
print("RESULT", out)
"""
)


def test_sunspec_models_found_export_curtailed_and_battery_set_on_order(tmp_path: Path) -> None:
    board(tmp_path)
    out = run_micropython(CURTAIL, heap=FIRMWARE_HEAP_NOW, cwd=tmp_path).stdout
    got = eval(out.split("RESULT")[1])
    assert got[0] == [500, -1650]  # ChaState 50.0 % -> 500 per-mille; W out 1650 -> discharging
    assert got[1] == [messages.ST_APPLIED, -1650, 2000]
    assert got[2] == [4000, 1, 2, 500]
    assert got[3] == [None, -1650] and got[4] == 1  # the out-of-range state of charge counted


BEFORE = (
    PRELUDE
    + r"""
fake.load(s)
out = [order()]  # before the first reading: not discovered yet, a fault, applied once discovered
out.append(reading(1750000010))
out.append([s.regs[fake.at(s, 123, 3)], s.regs[fake.at(s, 123, 7)]])
print("RESULT", out)
"""
)


def test_an_order_before_discovery_is_applied_when_the_device_is_found(tmp_path: Path) -> None:
    board(
        tmp_path,
        BOARD_TOML.replace("[battery]\nmax_charge_w = 3300\nmax_discharge_w = 3300\nsunspec = 1\n", ""),
    )
    out = run_micropython(BEFORE, heap=FIRMWARE_HEAP_NOW, cwd=tmp_path).stdout
    got = eval(out.split("RESULT")[1])
    assert got[0][2] is None and got[2] == [4000, 1]  # the ack tells it was not applied then


FALLBACK = (
    PRELUDE
    + r"""
fake.load(s, models=(1, 103, 124))  # no immediate controls (123), no basic settings (121)
s.regs[40300] = 0
out = [reading(1750000010), order(), s.regs[40300]]
fake.load(s, models=(1, 103))  # a fresh device without storage: the battery's setpoint has nowhere to go
b.hw.ss["pv"].ok = False
b.act.faults = 0
b.regs.last_oseq = 0
out.append(reading(1750000020))
out.append(order())
out.append(b.act.faults)
s.regs.clear()  # no SunSpec map at all: reported, the board goes on
b.hw.ss["pv"].ok = False
out.append(reading(1750000030))
print("RESULT", out)
"""
)

FALLBACK_TOML = BOARD_TOML.replace(
    "sunspec = 1\n[battery]", "sunspec = 1\nmodbus = { addr = 1, reg = 40300 }\n[battery]"
)


def test_a_map_without_the_model_falls_back_to_the_register_or_counts_a_fault(tmp_path: Path) -> None:
    board(tmp_path, FALLBACK_TOML)
    out = run_micropython(FALLBACK, heap=FIRMWARE_HEAP_NOW, cwd=tmp_path).stdout
    got = eval(out.split("RESULT")[1])
    assert got[0] == [500, 0]
    assert got[1] == [messages.ST_APPLIED, -1650, 2000] and got[2] == 2000  # the hand-listed register
    assert got[3] == [None, None]  # no storage model: no state of charge
    assert (
        got[4][0] == messages.ST_APPLIED and got[4][1] == -1650 and got[5] == 1
    )  # battery not applied: a fault
    assert got[6] == [None, None]
    assert "no SunSpec header" in out


ONE_AT_A_TIME = (
    PRELUDE
    + r"""
class Lag:  # the bus to a device slow to answer: a reply shows after a few checks (the writes yield)
    def __init__(self, slave):
        self.slave = slave
        self.wait = 0
        self.wrote = []  # the registers written, in order
    def write(self, buf):
        self.wait = 3
        if buf[1] == 6:
            self.wrote.append((buf[2] << 8) | buf[3])
        return self.slave.write(buf)
    def any(self):
        if self.wait:
            self.wait -= 1
            return 0
        return self.slave.any()
    def readinto(self, buf, n=None):
        return self.slave.readinto(buf, n)
fake.load(s)
reading(1750000010)  # discovered
lag = b.act.modbus._uart = Lag(s)
ss = b.hw.ss["battery"]
# a setpoint held for discovery (written from the readings task) and an order's (the order path)
got = asyncio.run(asyncio.gather(ss.write(True, -1650), ss.write(True, 0)))
print("RESULT", [got, [r - fake.at(s, 124, 0) for r in lag.wrote],
                 [s.regs[fake.at(s, 124, k)] for k in (3, 10, 11)]])
"""
)


def test_one_setpoint_at_a_time_goes_to_a_sunspec_device(tmp_path: Path) -> None:
    # the writes yield while the device answers: two setpoints written at once by two tasks must
    # not go register by register in turn (StorCtl_Mod of one, then of the other, then the rates),
    # leaving the device with a mix of both; each goes whole, the later one after the earlier
    board(tmp_path)
    out = run_micropython(ONE_AT_A_TIME, heap=FIRMWARE_HEAP_NOW, cwd=tmp_path).stdout
    got = eval(out.split("RESULT")[1])
    assert got[0] == [-1650, 0]
    assert got[1] == [3, 10, 3, 11, 10]  # StorCtl_Mod, OutWRte; StorCtl_Mod, InWRte, OutWRte
    assert got[2] == [3, 0, 0]  # both directions, at 0 %


# The fake device's map with the DER models (about 400-550 registers) lives in the test's heap too,
# in one dict table of up to 11 KB on this 64-bit port, grown after the board has fragmented the
# heap: these tests pass from 136k; the board's own peaks are measured in test_heap_peak.py.
DER_HEAP = "160k"

DER_HELPERS = r"""
def wset():  # 704 WSet, int32 over two registers, high word first
    v = (s.regs[fake.at(s, 704, 22)] & 0xFFFF) << 16 | (s.regs[fake.at(s, 704, 23)] & 0xFFFF)
    return v - (1 << 32) if v & 0x80000000 else v
def der():  # 704 WMaxLimPctEna, WMaxLimPct, WSetEna, WSetMod, WSet
    return [s.regs[fake.at(s, 704, k)] for k in (12, 13, 20, 21)] + [wset()]
"""

DER_ONLY = (
    PRELUDE
    + DER_HELPERS
    + r"""
fake.load(s, models=(1, 701, 702, 704, 802))
s.regs[fake.at(s, 704, 53)] = 1  # WSet_SF: 10 W steps
s.regs[fake.at(s, 702, 9)] = 300  # WDisChaRteMaxRtg 3000 W (W_SF 1): below the charge rating
s.regs[fake.at(s, 701, 8)] = 1650  # W out of the inverter: the battery discharging
s.regs[fake.at(s, 802, 9)] = 640  # SoC 64.0 %
ss = b.hw.ss["battery"]
out = [reading(1750000010)]
out.append([ss is b.hw.ss["pv"], ss.stor, ss.wmax, ss.wcha, ss.wdis])
out.append(order())  # PV export limit 2000 W of WMaxRtg 5000 W; battery discharge 1650 W
out.append(der())
for w in (2000, 5000, -9999, 1234, 0):  # charge; beyond either rating; 10 W steps; idle
    out.append([asyncio.run(ss.write(True, w)), wset()])
s.regs[fake.at(s, 802, 9)] = 1500  # 150 %: out of range, not reported
s.regs[fake.at(s, 701, 8)] = -2000  # the inverter takes 2000 W from the grid: charging
out.append(reading(1750000020))
out.append([asyncio.run(ss.ac_power()), ss.faults])
print("RESULT", out)
"""
)


def test_a_der_only_device_is_driven_through_704_and_read_through_802_and_701(tmp_path: Path) -> None:
    board(tmp_path)
    out = run_micropython(DER_ONLY, heap=DER_HEAP, cwd=tmp_path).stdout
    got = eval(out.split("RESULT")[1])
    assert got[0] == [640, -1650]  # 802 SoC 64.0 % -> 640 per-mille; 701 W out 1650 -> discharging
    assert got[1] == [True, 0, 5000, 3300, 3000]  # no 124; WMaxRtg and the ratings from 702 (x 10^1)
    assert got[2] == [messages.ST_APPLIED, -1650, 2000]
    # WMaxLimPctEna 1, WMaxLimPct 40.0 % (WMaxLimPct_SF -1: 400), WSetEna 1, WSetMod 1 (watts),
    # WSet +165 x 10^1 W: + is the DER generating, the battery discharging
    assert got[3] == [1, 400, 1, 1, 165]
    assert got[4] == [2000, -200]  # charging 2000 W: WSet -200 x 10^1 W
    assert got[5] == [3300, -330]  # capped at WChaRteMaxRtg
    assert got[6] == [-3000, 300]  # capped at WDisChaRteMaxRtg
    assert got[7] == [1230, -123]  # the device's 10 W steps, towards zero
    assert got[8] == [0, 0]
    assert got[9] == [None, 2000] and got[10] == [-2000, 1]  # the out-of-range SoC counted


MIXED = (
    PRELUDE
    + DER_HELPERS
    + r"""
fake.load(s, models=(1, 103, 121, 123, 124, 701, 702, 704, 802))
s.regs[fake.at(s, 103, 12)] = 1000  # 103 W
s.regs[fake.at(s, 701, 8)] = 1650  # 701 W: not the one read
s.regs[fake.at(s, 124, 6)] = 600  # ChaState 60.0 %
s.regs[fake.at(s, 802, 9)] = 400  # SoC 40.0 %: not the one read
ss = b.hw.ss["battery"]
out = [reading(1750000010), order()]
out.append([s.regs[fake.at(s, 123, 3)], s.regs[fake.at(s, 123, 7)],  # WMaxLimPct, WMaxLim_Ena
            s.regs[fake.at(s, 124, 3)], s.regs[fake.at(s, 124, 10)]])  # StorCtl_Mod, OutWRte
out.append(der())
out.append([asyncio.run(ss.ac_power()), ss.faults])
print("RESULT", out)
"""
)


def test_a_device_with_legacy_and_der_models_uses_the_legacy_ones(tmp_path: Path) -> None:
    board(tmp_path)
    out = run_micropython(MIXED, heap=DER_HEAP, cwd=tmp_path).stdout
    got = eval(out.split("RESULT")[1])
    assert got[0] == [600, -1000]  # 124 ChaState and 103 W
    assert got[1] == [messages.ST_APPLIED, -1650, 2000]
    assert got[2] == [4000, 1, 2, 500]  # 123 and 124 as on a legacy device
    assert got[3] == [0, 1000, 0, 0, 0]  # 704 untouched
    assert got[4] == [1000, 0]


BAD_704 = (
    PRELUDE
    + DER_HELPERS
    + r"""
fake.load(s, models=(1, 701, 702, 704, 802))
s.regs[fake.at(s, 704, 52)] = -32768  # WMaxLimPct_SF: not implemented
s.regs[fake.at(s, 704, 53)] = 11  # WSet_SF: out of range
s.regs[41000] = 0
out = [reading(1750000010), order(), s.regs[41000], der(), b.hw.ss["pv"].faults, b.act.faults]
print("RESULT", out)
"""
)


def test_a_704_with_a_bad_scale_factor_is_reported_and_falls_back_to_the_register(tmp_path: Path) -> None:
    board(
        tmp_path,
        BOARD_TOML.replace(
            "sunspec = 1\n[battery]", "sunspec = 1\nmodbus = { addr = 1, reg = 41000 }\n[battery]"
        ),
    )
    out = run_micropython(BAD_704, heap=DER_HEAP, cwd=tmp_path).stdout
    got = eval(out.split("RESULT")[1])
    assert got[0] == [500, 0]  # 802 SoC and 701 W still read
    assert got[1][0] == messages.ST_APPLIED and got[1][2] == 2000
    assert got[2] == 2000  # the export limit in the hand-listed register
    assert got[3] == [0, 1000, 0, 0, 0]  # nothing written to 704
    assert got[4] == 2  # both scale factors reported
    assert got[5] == 1  # the battery's setpoint had nowhere to go: a fault
    assert "model 704: scale factor -32768" in out and "model 704: scale factor 11" in out


AC_POWER = (
    PRELUDE
    + r"""
ss = b.hw.ss["pv"]
def found(models):
    fake.load(s, models=models)
    ss.ok = False
    reading(1750000010)
    return ss
out = []
# the largest map first: the later ones reuse its registers (the fake's register dict never grows
# again, which on the test's heap could fail for a large enough block)
found((1, 701, 702, 704, 802))
s.regs[fake.at(s, 701, 8)] = 4321
s.regs[fake.at(s, 701, 114)] = 0
n = s.reads
out.append([asyncio.run(ss.ac_power()), s.reads - n])  # one register read
found((1, 103, 121, 123, 124))
s.regs[fake.at(s, 103, 12)] = -123  # W: the inverter takes 1230 W (W_SF 1, 10 W steps)
s.regs[fake.at(s, 103, 13)] = 1
out.append(asyncio.run(ss.ac_power()))
s.regs[fake.at(s, 103, 13)] = 2  # W_SF is read with W: a change shows at once
out.append(asyncio.run(ss.ac_power()))
found((1, 121, 123, 124))  # no inverter model
f = ss.faults
out.append([asyncio.run(ss.ac_power()), ss.faults - f])
found((1, 103, 121, 123, 124))
s.regs[fake.at(s, 103, 12)] = -32768  # W not implemented
out.append([asyncio.run(ss.ac_power()), ss.faults - f])
s.silent = True
out.append([asyncio.run(ss.ac_power()), ss.faults - f])
print("RESULT", out)
"""
)


def test_ac_power_reads_the_inverter_model_or_the_der_measurement(tmp_path: Path) -> None:
    board(tmp_path)
    out = run_micropython(AC_POWER, heap=DER_HEAP, cwd=tmp_path).stdout
    got = eval(out.split("RESULT")[1])
    assert got[0] == [4321, 1]
    assert got[1] == -1230 and got[2] == -12300
    assert got[3] == [None, 0]  # no model to read: nothing to count
    assert got[4] == [None, 1]  # not implemented: counted
    assert got[5] == [None, 2]  # the device silent: counted


def test_board_file_sunspec_keys_are_checked() -> None:
    cfg = boardfile.compact(boardfile_dict(BOARD_TOML))
    assert cfg["pv"] == {"max_export_w": 5000, "sunspec": 1}
    assert cfg["battery"]["sunspec"] == 1 and "modbus" not in cfg["battery"]
    import pytest

    with pytest.raises(boardfile.BoardFileError, match="pv.sunspec"):
        boardfile.compact(
            boardfile_dict(BOARD_TOML.replace("sunspec = 1\n[battery]", "sunspec = 300\n[battery]"))
        )
    with pytest.raises(boardfile.BoardFileError, match="pv.modbus"):
        boardfile.compact(boardfile_dict(BOARD_TOML.replace("sunspec = 1\n[battery]", "[battery]")))


def boardfile_dict(toml: str) -> dict[str, object]:
    import tomllib

    return tomllib.loads(toml)


SILENT = (
    PRELUDE
    + r"""
fake.load(s)
asked = [0]
send = s.write
def write(buf):  # every request frame the master puts on the bus
    asked[0] += 1
    return send(buf)
s.write = write
s.silent = True
out = [reading(1750000010), asked[0], b.hw.ss["pv"].ok]  # one request: a silent device is not asked
s.silent = False                                          # at the other header addresses
out.append(reading(1750000020))  # found at the next reading
out.append(b.hw.ss["pv"].ok)
print("RESULT", out)
"""
)


def test_a_silent_device_is_asked_once_per_reading_not_at_every_header_address(tmp_path: Path) -> None:
    board(tmp_path)
    out = run_micropython(SILENT, heap=FIRMWARE_HEAP_NOW, cwd=tmp_path).stdout
    got = eval(out.split("RESULT")[1])
    assert got[0] == [None, None] and got[1] == 1 and got[2] is False
    assert got[3] == [500, 0] and got[4] is True
    assert "sunspec 1: discovery: modbus slave 1 did not answer" in out
