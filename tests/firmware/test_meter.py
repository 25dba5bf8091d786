"""Front ends feeding the energy registers (meter.Meter + registers.Registers) on the real
MicroPython unix port, through the drivers and their byte-level fakes: what a year on a board
brings that a driver test alone does not show."""

from __future__ import annotations

from pathlib import Path

from tests.mpy import run_micropython

P1_WITHOUT_ENERGY = r"""
from drivers import dsmr_p1 as p1
from drivers.crc16 import crc16_arc
from fakes.dsmr_p1 import FakeP1Port
from meter import Meter
from registers import Registers

port = FakeP1Port()
rd = p1.P1Reader(port)
regs = Registers("regs")
m = Meter(rd, regs)
port.import_t1_wh = 4_000_000  # a meter that has counted 5,000 kWh in and 300 kWh out
port.import_t2_wh = 1_000_000
port.export_t1_wh = 300_000
port.emit()
ok1 = m.poll()
before = (regs.e_imp, regs.e_exp)
# a telegram that passes its CRC but carries no energy registers (a short telegram, a line
# mangled before the CRC was computed): its counters read as 0
t = b"/ISK5\\2M550T-1012\r\n\r\n0-0:1.0.0(240615123000S)\r\n1-0:1.7.0(00.500*kW)\r\n!"
port.feed(t + ("%04X" % crc16_arc(t)).encode() + b"\r\n")
ok2 = m.poll()
port.import_t1_wh += 1  # the next full telegram, 1 Wh later
port.emit()
ok3 = m.poll()
print("RESULT", ok1, ok2, ok3, before, (regs.e_imp, regs.e_exp))
"""


def test_p1_telegram_without_energy_registers_does_not_move_the_registers(tmp_path: Path) -> None:
    # before: the telegram's missing counters became 0, the registers took that for a meter reset
    # (they hold, and follow the counter from 0), and with the next full telegram they added the
    # meter's whole reading again: +5,000 kWh of import billed for one bad telegram
    out = run_micropython(P1_WITHOUT_ENERGY, heap="64k", cwd=tmp_path).stdout
    ok1, ok2, ok3, rest = out.split("RESULT")[1].split(None, 3)
    assert (ok1, ok2, ok3) == ("True", "False", "True"), out
    assert rest.strip() == "(5000000000, 300000000) (5000001000, 300000000)", out


ATM_CHIP_RESET = r"""
from drivers import atm90e32 as atm
from fakes.atm90e32 import FakeAtm90e32
from errors import VerifyError

class Hw:
    def __init__(self, chip):
        self.chip = chip
    def spi(self, fe):
        return self.chip
    def cs(self, fe):
        return self.chip.cs

chip = FakeAtm90e32()
fe = {"chip": "atm90e32", "meter_constant": 3200, "line_hz": 50,
      "calibration": {"ugain": [39470, 39470, 39470], "igain": [38143, 38143, 38143]}}
dev = atm.open_frontend(fe, Hw(chip))
chip.add_energy(0, 10_000)
first = dev.meter_read()[0]
chip.power_loss()  # the chip alone browns out: metering disabled, calibration gone
out = []
for _ in range(2):
    try:
        dev.meter_read()
        out.append("none")
    except VerifyError:
        out.append("VerifyError")
chip.add_energy(0, 5_000)
print("RESULT", first, out, chip.regs[0x00], chip.regs[0x62], dev.meter_read()[0])
"""


def test_atm90e32_that_reset_is_reported_and_configured_again(tmp_path: Path) -> None:
    # before: a chip that reset on its own (brown-out of the metering side) came back with
    # metering disabled and its calibration gone; MMode0 reads its default, which equals the
    # configured value at 50 Hz, so every poll passed and the board went on reporting what an
    # unconfigured chip measures (on the real chip: nothing) until the ESP32 itself rebooted
    out = run_micropython(ATM_CHIP_RESET, heap="64k", cwd=tmp_path).stdout
    first, rest = out.split("RESULT")[1].split(None, 1)
    assert first == "10000", out
    assert rest.split() == ["['VerifyError',", "'none']", "1", "38143", "15000"], out


P1_SILENT = r"""
from drivers import dsmr_p1 as p1
from fakes.dsmr_p1 import FakeP1Port
from meter import Meter
from registers import Registers

from onboard.ticks import Ticks  # the driver's clock, stepped by the test and its sleeps

class Hw:
    def uart(self, fe):
        return port

port = FakeP1Port()
clock = Ticks()
rd = p1.P1Reader(port, stale_ms=30_000, clock=clock)
regs = Registers("regs")
m = Meter(rd, regs)
out = []
def poll(dt_s):
    clock.ms += dt_s * 1000
    out.append((m.poll(), m.fault, regs.e_imp))
port.import_t1_wh = 1_000
port.emit()
poll(0)
poll(29)  # no telegram for 29 s: a DSMR 4 sends one every 10 s, this is still a live port
port.import_t1_wh += 5  # the meter counts on, but the port went quiet (cable pulled, P1 off)
poll(2)
poll(600)
port.emit()  # back: the energy counted meanwhile is in its registers
poll(1)
print("RESULT", out, p1.open_frontend({"stale_s": 5}, Hw()).stale_ms)
"""


def test_p1_port_that_stops_sending_is_a_fault(tmp_path: Path) -> None:
    # before: the reader returned the last telegram's values for ever once one had arrived: a
    # P1 port that went quiet (cable unplugged, the meter's P1 disabled) looked like a meter with
    # no consumption, with no fault flag on the readings
    out = run_micropython(P1_SILENT, heap="64k", cwd=tmp_path).stdout
    got = out.split("RESULT")[1].strip()
    assert got == (
        "[(True, False, 1000000), (True, False, 1000000), (False, True, 1000000), "
        "(False, True, 1000000), (True, False, 1005000)] 5000"
    ), out


JUMP = r"""
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
from protocol import crypto, frame, messages
cfg = {"type": "t", "frontend": {"chip": "pzem004t", "uart": 2, "tx": 17, "rx": 16},
       "limits": {"import_w": 11000, "export_w": 0}}
settings = {"board": "m01", "grid": "g1", "coordinator_key": "00" * 32, "broker": {"host": "x"}}
START = 1_750_000_000
hw = FakeHardware(cfg, lambda now: 1800)
b = app.Board(cfg, settings, hw, SimClock(START, 1))
ver = crypto.Verifier(b.key.public)
def run(t0, t1):
    for t in range(t0, t1):
        hw.physics(START + t)
        b.meter.poll(START + t)  # what the metering task does every second
    r = frame.open_frame(b.t_reading, b.reading(START + t1 - 1), lambda m: ver)
    return r.e_imp, r.flags & messages.F_FRONTEND_FAULT
out = [run(0, 11)]
chip = hw._fake()
chip.set_state(energy_mwh=chip.energy_wh * 1000 + 500_000_000)  # a garbled counter: +500 kWh
out.append(run(11, 21))
out.append(run(21, 31))
print("RESULT", out)
"""


def test_implausible_counter_jump_is_refused_and_flagged(tmp_path: Path) -> None:
    # before: the registers took any advance of the chip's counter (and any decrease for a reset):
    # a CRC-valid garbled count or a replacement meter with a higher count added its difference
    # for good. Now an advance beyond 2 x the board's largest limit (11 kW here) over the time
    # since the counter last moved is refused, and the next reading says the meter is in fault
    out = run_micropython(JUMP, heap="128k", cwd=tmp_path).stdout
    (e0, f0), (e1, f1), (e2, f2) = eval(out.split("RESULT")[1])
    assert (f0, f1, f2) == (0, 8, 0), out
    assert 0 <= e1 - e0 <= 10 * 500 and 4_000 <= e2 - e1 <= 6_000, out  # 1.8 kW: 500 mWh a second
