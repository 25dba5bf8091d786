"""The battery inverter's state of charge and power on the real MicroPython unix port: read with
Modbus RTU function 0x03 (drivers/modbus_rtu.py) from the fake slave, which answers in the real
byte protocol, into the board's signed readings; and on the real ESP32 hardware layer
(board_hw.EspHardware), whose battery_state() reported nothing before."""

from __future__ import annotations

import json
from pathlib import Path

from protocol import crypto
from tests.firmware.test_drivers import ref_crc16
from tests.mpy import FIRMWARE_HEAP_NOW, run_micropython

COORD = crypto.SigningKey(bytes(range(32)))

MASTER = r"""
import asyncio
from drivers.modbus_rtu import ModbusMaster
from fakes.modbus_rtu import FakeModbusSlave
from errors import BusTimeout, CrcError, FrameError, ModbusError

class Wire:  # the bus between master and slave, recording the request and able to garble
    def __init__(self, slave):
        self.slave = slave
        self.sent = b""
        self.flip = None  # index of a reply byte to corrupt
        self.n = 0
        self.lag = self.wait = 0  # the reply shows only after this many checks
    def write(self, buf):
        self.sent = bytes(buf)
        self.n = 0
        self.wait = self.lag
        return self.slave.write(buf)
    def any(self):
        if self.wait:
            self.wait -= 1
            return 0
        return self.slave.any()
    def readinto(self, buf, n=None):
        got = self.slave.readinto(buf, n)
        if got and self.flip is not None and self.n <= self.flip < self.n + got:
            buf[self.flip - self.n] ^= 0x01
        self.n += got or 0
        return got

slave = FakeModbusSlave(addr=3)
slave.regs[40110] = 655
slave.regs[40111] = -150
wire = Wire(slave)
m = ModbusMaster(wire)
run = asyncio.run  # each transaction is awaited (it yields while the slave answers)
out = [run(m.read_register(3, 40110)), wire.sent.hex(), run(m.read_register(3, 40111, True)),
       run(m.read_register(3, 40111))]
def fault(f):
    try:
        run(f())
        return "none"
    except ModbusError as e:
        return "ModbusError %d" % e.code_value
    except (BusTimeout, CrcError, FrameError) as e:
        return type(e).__name__
out.append(fault(lambda: m.read_register(3, 40112)))  # nothing mapped there: exception 2
wire.flip = 3
out.append(fault(lambda: m.read_register(3, 40110)))  # a garbled reply: CRC
wire.flip = None
out.append(fault(lambda: m.read_register(4, 40110)))  # another slave address: silence
run(m.write_register(3, 40100, -330))  # the write path shares the transaction code
out.append(slave.regs[40100])
wire.lag = 4  # a slave slow to answer: the transactions of two tasks (a battery reading, an
# order's setpoint) would overlap on the bus; they go one after the other
out.append(run(asyncio.gather(m.read_register(3, 40110), m.write_register(3, 40101, 12),
                              m.read_register(3, 40111, True))))
out.append(slave.regs[40101])
slave.silent = True
out.append(fault(lambda: m.write_register(3, 40100, 1)))  # no echo: a timeout, awaited
print("RESULT", out)
"""


def test_read_holding_register_in_the_real_byte_protocol(tmp_path: Path) -> None:
    # before: the master could only write (function 0x06); nothing read what an inverter reports
    out = run_micropython(MASTER, heap="64k", cwd=tmp_path).stdout
    got = eval(out.split("RESULT")[1])  # a list of ints and strings printed by MicroPython
    # the request: slave 3, function 3, register 40110 (0x9CAE), one register, CRC low byte first
    req = bytes((3, 3, 0x9C, 0xAE, 0, 1))
    crc = ref_crc16(req, 0xFFFF)
    assert got[1] == (req + bytes((crc & 0xFF, crc >> 8))).hex()
    assert got[0] == 655 and got[2] == -150 and got[3] == 0x10000 - 150
    assert got[4:] == ["ModbusError 2", "CrcError", "BusTimeout", -330, [655, None, -150], 12, "BusTimeout"]


BOARD = {
    "type": "esp32-battery",
    "frontend": {"chip": "pzem004t", "uart": 2, "tx": 17, "rx": 16, "addr": 1},
    "modbus": {"uart": 1, "tx": 32, "rx": 33, "baud": 9600},
    "battery": {
        "max_charge_w": 3300,
        "max_discharge_w": 3300,
        "modbus": {"addr": 1, "reg": 40100, "scale_w": 10},
        "soc": {"addr": 1, "reg": 40110, "full": 1000},
        "power": {"addr": 1, "reg": 40111, "scale_w": 10},
    },
    "interval_s": 900,
}

READINGS = r"""
import asyncio
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
from protocol import crypto, frame
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
hw = FakeHardware(cfg, lambda now: 500)
b = app.Board(cfg, settings, hw, SimClock(1750000000, 1))
ver = crypto.Verifier(b.key.public)
def reading(now):  # as the readings task: the inverter's state read (awaited), then the reading
    b.bat = asyncio.run(hw.battery_state())
    r = frame.open_frame(b.t_reading, b.reading(now), lambda m: ver)
    return [r.bat_soc, r.bat_p]
hw.slave.regs[40110] = 655  # 65.5 %, in 0.1 % steps
hw.slave.regs[40111] = -150  # discharging 1500 W, in 10 W steps
out = [reading(1750000010)]
hw.slave.regs[40110] = 1003  # a BMS that reads a little over full: capped at 1000 per-mille
out.append(reading(1750000020))
hw.slave.silent = True  # the inverter does not answer: the reading goes out without its values
out.append(reading(1750000030))
hw.slave.silent = False
del hw.slave.regs[40111]  # the power register refused (exception): the state of charge still
out.append(reading(1750000040))
print("RESULT", out)
"""


def test_board_readings_carry_the_inverters_state_of_charge(tmp_path: Path) -> None:
    # before: FakeHardware and EspHardware both reported no battery (None): the coordinator skips
    # storage without a reported state of charge, so no battery was ever dispatched on a board
    (tmp_path / "board.json").write_text(json.dumps(BOARD))
    settings = {
        "board": "m01",
        "grid": "g1",
        "coordinator_key": COORD.public.hex(),
        "broker": {"host": "127.0.0.1", "port": 1},
    }
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    out = run_micropython(READINGS, heap=FIRMWARE_HEAP_NOW, cwd=tmp_path).stdout
    got = out.split("RESULT")[1].strip()
    assert got == "[[655, -1500], [1000, -1500], [None, None], [1000, None]]", out


ESP = r"""
import asyncio
import board_hw
from drivers.modbus_rtu import ModbusMaster
from fakes.modbus_rtu import FakeModbusSlave
cfg = {"battery": {"soc": {"addr": 1, "reg": 7, "full": 100}, "power": {"addr": 1, "reg": 8, "scale_w": -1}}}
hw = board_hw.EspHardware(cfg)
before = asyncio.run(hw.battery_state())  # no Modbus bus made yet
slave = FakeModbusSlave(addr=1)
slave.regs[7] = 42  # whole percent
slave.regs[8] = 800  # this inverter counts discharging as positive: scale_w -1
hw._mb = ModbusMaster(slave)  # what actuators() makes from the board file's [modbus]
none = asyncio.run(board_hw.EspHardware({}).battery_state())
print("RESULT", before, asyncio.run(hw.battery_state()), none)
"""


def test_esp32_hardware_reads_the_battery_over_modbus(tmp_path: Path) -> None:
    # before: EspHardware.battery_state() returned None ("not wired yet") on every real board
    out = run_micropython(ESP, heap="64k", cwd=tmp_path).stdout
    assert out.split("RESULT")[1].strip() == "None (420, -800) None", out
