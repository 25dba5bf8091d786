"""SunSpec inverters and batteries on the real MicroPython unix port: the board finds the models
from the SunSpec header of a real model map served by the fake Modbus slave (the RTU byte
protocol), curtails PV export through model 123 and sets the battery through model 124 on a signed
order, reads state of charge and power back into its readings; a map without a needed model falls
back to the hand-listed register or counts a fault; a device without a map, with an out-of-range
state of charge or scale factor is reported and the board keeps running. A device with the DER
models only (701, 702, 704, 802) is driven through 704 (WSet's two registers in one function 16
request) and read through 802 and 701; one with both kinds uses the legacy models; ``ac_power``
reads the inverter's AC power from either; a battery's power comes from 802 W signed by ChaSt when
the device implements them. The RTU master's function 16: the request frame, an exception reply, a
reply with another start register or quantity, concurrent writers."""

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
asked = []  # (function, register) of every request frame the master puts on the bus
send = s.write
def write(buf):
    asked.append((buf[1], ((buf[2] << 8) | buf[3]) - fake.at(s, 704, 0)))
    return send(buf)
s.write = write
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
s.regs[fake.at(s, 701, 8)] = 4650  # W out of the inverter: 3000 W of PV and the battery's 1650
s.regs[fake.at(s, 802, 45)] = 1650  # 802 W (W_SF 0)
s.regs[fake.at(s, 802, 14)] = 3  # ChaSt: discharging
s.regs[fake.at(s, 802, 9)] = 640  # SoC 64.0 %
ss = b.hw.ss["battery"]
out = [reading(1750000010)]
out.append([ss is b.hw.ss["pv"], ss.stor, ss.wmax, ss.wcha, ss.wdis])
del asked[:]
out.append(order())  # PV export limit 2000 W of WMaxRtg 5000 W; battery discharge 1650 W
out.append(der())
out.append(asked[:])
for w in (2000, 5000, -9999, 1234, 0):  # charge; beyond either rating; 10 W steps; idle
    del asked[:]
    out.append([asyncio.run(ss.write(True, w)), wset(), len(asked)])
s.regs[fake.at(s, 802, 9)] = 1500  # 150 %: out of range, not reported
s.regs[fake.at(s, 802, 14)] = 4  # ChaSt: charging
s.regs[fake.at(s, 802, 45)] = -2000  # W counted negative by this device: the sign is ChaSt's
s.regs[fake.at(s, 701, 8)] = -1000  # the inverter takes 1000 W from the grid
out.append(reading(1750000020))
out.append([asyncio.run(ss.ac_power()), ss.faults])
print("RESULT", out)
"""
)


def test_a_der_only_device_is_driven_through_704_and_read_through_802_and_701(tmp_path: Path) -> None:
    board(tmp_path)
    out = run_micropython(DER_ONLY, heap=DER_HEAP, cwd=tmp_path).stdout
    got = eval(out.split("RESULT")[1])
    # 802 SoC 64.0 % -> 640 per-mille; 802 W 1650, ChaSt discharging (not 701's AC W with the PV)
    assert got[0] == [640, -1650]
    assert got[1] == [True, 0, 5000, 3300, 3000]  # no 124; WMaxRtg and the ratings from 702 (x 10^1)
    assert got[2] == [messages.ST_APPLIED, -1650, 2000]
    # WMaxLimPctEna 1, WMaxLimPct 40.0 % (WMaxLimPct_SF -1: 400), WSetEna 1, WSetMod 1 (watts),
    # WSet +165 x 10^1 W: + is the DER generating, the battery discharging
    assert got[3] == [1, 400, 1, 1, 165]
    # the requests, (function, offset in 704): the battery's WSetMod, WSet's two registers in one
    # write multiple registers (16), WSetEna; the PV's WMaxLimPct and WMaxLimPctEna
    assert sorted(got[4]) == [(6, 12), (6, 13), (6, 20), (6, 21), (16, 22)]
    assert got[4][:3] == [(6, 21), (16, 22), (6, 20)]
    assert got[5] == [2000, -200, 3]  # charging 2000 W: WSet -200 x 10^1 W, in 3 requests
    assert got[6] == [3300, -330, 3]  # capped at WChaRteMaxRtg
    assert got[7] == [-3000, 300, 3]  # capped at WDisChaRteMaxRtg
    assert got[8] == [1230, -123, 3]  # the device's 10 W steps, towards zero
    assert got[9] == [0, 0, 3]
    assert got[10] == [None, 2000]  # |W| charging; the out-of-range SoC not reported
    assert got[11] == [-1000, 1]  # ac_power: 701 W; the out-of-range SoC counted


MIXED = (
    PRELUDE
    + DER_HELPERS
    + r"""
fake.load(s, models=(1, 103, 121, 123, 124, 701, 702, 704, 802))
s.regs[fake.at(s, 103, 12)] = 1000  # 103 W
s.regs[fake.at(s, 701, 8)] = 1650  # 701 W: not the one read
s.regs[fake.at(s, 124, 6)] = 600  # ChaState 60.0 %
s.regs[fake.at(s, 802, 9)] = 400  # SoC 40.0 %: not the one read
s.regs[fake.at(s, 802, 45)] = 70  # 802 W 700 W (W_SF 1)
s.regs[fake.at(s, 802, 61)] = 1
s.regs[fake.at(s, 802, 14)] = 4  # ChaSt: charging
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
    assert got[0] == [600, 700]  # 124 ChaState; 802 W, the battery's own (no legacy model has it)
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


BATTERY_POWER = (
    PRELUDE
    + r"""
fake.load(s, models=(1, 701, 702, 704, 802))
ss = b.hw.ss["battery"]
def at(o):
    return fake.at(s, 802, o)
s.regs[fake.at(s, 701, 8)] = 4650  # the inverter's AC power out: 3000 W of PV, 1650 of the battery
s.regs[at(61)] = 1  # W_SF: 10 W steps
out = []
for w, st in ((165, 3), (-165, 3), (-200, 4), (200, 4), (3, 6), (40, 5), (0, 2), (7, 1), (9, 7),
              (1, -1)):  # ChaSt not implemented (0xFFFF): the AC power
    s.regs[at(45)], s.regs[at(14)] = w, st
    out.append(reading(1750000010)[1])
s.regs[at(14)] = 4
s.regs[at(45)] = -32768  # W not implemented: the AC power
out.append(reading(1750000020)[1])
s.regs[at(45)] = 123
n = s.reads
out.append([reading(1750000030)[1], s.reads - n])  # SoC, W, ChaSt: three reads
s.regs[at(61)] = -32768  # W_SF not implemented, seen at discovery: the AC power from then on
ss.ok = False
reading(1750000040)
n = s.reads
out.append([reading(1750000050)[1], s.reads - n, ss.faults])  # SoC, 701 W: two reads; no fault
print("RESULT", out)
"""
)


def test_a_battery_with_model_802_reports_its_own_power_signed_by_its_charge_status(tmp_path: Path) -> None:
    board(tmp_path)
    out = run_micropython(BATTERY_POWER, heap=DER_HEAP, cwd=tmp_path).stdout
    got = eval(out.split("RESULT")[1])
    # |W| x 10^W_SF, + charging (ChaSt 4), - discharging (3), whatever W's own sign
    assert got[:4] == [-1650, -1650, 2000, 2000]
    assert got[4:9] == [0, 0, 0, 0, 0]  # holding, full, empty, off, testing
    assert got[9] == -4650  # ChaSt not implemented: the inverter's AC power, negated
    assert got[10] == -4650  # W not implemented
    assert got[11] == [1230, 3]
    assert got[12] == [-4650, 2, 0]


MASTER16 = r"""
import asyncio
from drivers.modbus_rtu import ModbusMaster
from drivers.crc16 import INIT_MODBUS, crc16
from fakes.modbus_rtu import FakeModbusSlave
from errors import BusTimeout, FrameError, ModbusError

class Wire:  # the bus: records each request; ``twist`` rewrites a reply byte (CRC made right)
    def __init__(self, slave):
        self.slave = slave
        self.sent = []
        self.twist = None  # (index, value)
        self.lag = self.wait = 0  # the reply shows only after this many checks
    def write(self, buf):
        self.sent.append(bytes(buf).hex())
        self.wait = self.lag
        n = self.slave.write(buf)
        if self.twist is not None and self.slave._tx:
            r = bytearray(self.slave._tx)
            r[self.twist[0]] = self.twist[1]
            c = crc16(r, INIT_MODBUS, 0, len(r) - 2)
            r[-2], r[-1] = c & 0xFF, c >> 8
            self.slave._tx = bytes(r)
        return n
    def any(self):
        if self.wait:
            self.wait -= 1
            return 0
        return self.slave.any()
    def readinto(self, buf, n=None):
        return self.slave.readinto(buf, n)

slave = FakeModbusSlave(addr=3, writable={40100, 40101, 40200})
for r in (40100, 40101, 40102, 40200):
    slave.regs[r] = 0
wire = Wire(slave)
m = ModbusMaster(wire)
def run(coro):
    try:
        return asyncio.run(coro)
    except ModbusError as e:
        return ["ModbusError", e.code_value]
    except FrameError as e:
        return ["FrameError", str(e)]
    except BusTimeout as e:
        return ["BusTimeout", str(e)]
out = [[run(m.write_registers(3, 40100, 0xFFFF, -2000)), wire.sent, slave.writes,
        [slave.regs[40100], slave.regs[40101]]]]
wire.sent = []
out.append([run(m.write_registers(3, 40101, 1, 2)), wire.sent[:], slave.writes,
            slave.regs[40101], slave.regs[40102]])  # 40102 not writable: exception 2, nothing written
out.append([run(m.write_register(3, 40200, 7)), slave.regs[40200], len(wire.sent[-1])])  # 8 bytes still
wire.twist = (5, 3)  # the reply's quantity 3
out.append([run(m.write_registers(3, 40100, 5, 6)), slave.regs[40100]])
wire.twist = (3, 0x65)  # the reply's start register 40101
out.append(run(m.write_registers(3, 40100, 7, 8)))
wire.twist = (4, 7)  # a single write's echo with another value
out.append(run(m.write_register(3, 40200, 9)))
wire.twist = None
out.append([run(m.write_registers(3, 40100, 0x10000, 0)), run(m.write_registers(3, 40100, 1, -0x8001))])
out.append(run(m.write_registers(4, 40100, 1, 2)))  # another slave's address: no answer
# three tasks at once on a slow bus, the two-register writes waiting for a single one: each
# request goes whole, its values its own
wire.lag = 3
wire.sent = []
async def three():
    return await asyncio.gather(m.write_register(3, 40200, 5), m.write_registers(3, 40100, 1, 2),
                                m.write_registers(3, 40100, 3, 4))
out.append([run(three()), wire.sent, slave.regs[40100], slave.regs[40101], slave.regs[40200]])
# the fake slave: a request whose byte count disagrees with its quantity (illegal data value)
f = bytearray((3, 0x10, 0x9C, 0xA4, 0, 2, 2, 0, 1))
c = crc16(f, INIT_MODBUS)
f.append(c & 0xFF)
f.append(c >> 8)
slave.write(f)
r = bytearray(8)
out.append(bytes(r[:slave.readinto(r)]).hex())
print("RESULT", out)
"""


def _crc(b: bytes) -> bytes:
    c = 0xFFFF
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
    return bytes((c & 0xFF, c >> 8))


def test_the_rtu_master_writes_two_registers_in_one_function_16_request(tmp_path: Path) -> None:
    out = run_micropython(MASTER16, heap=FIRMWARE_HEAP_NOW, cwd=tmp_path).stdout
    got = eval(out.split("RESULT")[1])
    # slave 3, function 16, start 40100 (0x9CA4), quantity 2, byte count 4, 0xFFFF then -2000
    # (0xF830), CRC low byte first: one 13-byte frame
    req = bytes((3, 0x10, 0x9C, 0xA4, 0, 2, 4, 0xFF, 0xFF, 0xF8, 0x30))
    assert got[0] == [None, [(req + _crc(req)).hex()], 1, [-1, -2000]]
    req = bytes((3, 0x10, 0x9C, 0xA5, 0, 2, 4, 0, 1, 0, 2))
    assert got[1] == [["ModbusError", 2], [(req + _crc(req)).hex()], 1, -2000, 0]
    assert got[2] == [None, 7, 16]  # a single write: the 8-byte frame as before (hex: 16 chars)
    assert got[3] == [["FrameError", "modbus reply does not echo the write"], 5]  # written, reply wrong
    assert got[4] == ["FrameError", "modbus reply does not echo the write"]
    assert got[5] == ["FrameError", "modbus reply does not echo the write"]
    assert got[6] == [["FrameError", "modbus write out of range"]] * 2
    assert got[7][0] == "BusTimeout"
    # each request whole with its own values, in the tasks' order
    assert got[8][0] == [None, None, None]
    reqs = [
        bytes((3, 6, 0x9D, 0x08, 0, 5)),
        bytes((3, 0x10, 0x9C, 0xA4, 0, 2, 4, 0, 1, 0, 2)),
        bytes((3, 0x10, 0x9C, 0xA4, 0, 2, 4, 0, 3, 0, 4)),
    ]
    assert got[8][1] == [(q + _crc(q)).hex() for q in reqs]
    assert got[8][2:] == [3, 4, 5]
    ex = bytes((3, 0x90, 3))
    assert got[9] == (ex + _crc(ex)).hex()
