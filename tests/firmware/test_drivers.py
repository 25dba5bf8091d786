"""Metering front-end drivers, run against their byte-level fakes.

Every scenario below is one script that runs twice: on the real MicroPython unix port with
``-X heapsize=64k`` (the ESP32 budget) and on CPython (the simulator imports the same
modules in-process). A scenario prints ``@@key=repr(value)`` lines; the tests parse them and
assert, so a handful of interpreter runs back many narrow tests. On MicroPython the polling
paths additionally run under ``micropython.heap_lock()``, which turns any allocation into a
MemoryError.

Reference values are independent of the firmware: CRCs are recomputed here with a plain
bitwise implementation, and the DSMR 5 telegram is a public example with its published CRC.
"""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys

import pytest

from tests.mpy import FIRMWARE, ROOT, run_micropython

# --- independent references ---------------------------------------------------------------


def ref_crc16(data: bytes, init: int) -> int:
    """Bitwise CRC-16 with reflected polynomial 0xA001 (textbook form, no tables)."""
    crc = init
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def lcg_buffers() -> list[bytes]:
    """The same pseudo-random buffers the CRC scenario builds on the device."""
    out = []
    x = 12345
    for n in (0, 1, 2, 7, 64, 255):
        b = bytearray(n)
        for i in range(n):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            b[i] = (x >> 16) & 0xFF
        out.append(bytes(b))
    return out


# Public DSMR 5.0 example telegram (Iskra AM550-style "ISk5\2MT382-1000" header), as used in
# the test suite of the dsmr_parser project; its published CRC is 6EEE.
DSMR5_TELEGRAM = (
    b"/ISk5\\2MT382-1000\r\n"
    b"\r\n"
    b"1-3:0.2.8(50)\r\n"
    b"0-0:1.0.0(170102192002W)\r\n"
    b"0-0:96.1.1(4B384547303034303436333935353037)\r\n"
    b"1-0:1.8.1(000004.426*kWh)\r\n"
    b"1-0:1.8.2(000002.399*kWh)\r\n"
    b"1-0:2.8.1(000002.444*kWh)\r\n"
    b"1-0:2.8.2(000000.000*kWh)\r\n"
    b"0-0:96.14.0(0002)\r\n"
    b"1-0:1.7.0(00.244*kW)\r\n"
    b"1-0:2.7.0(00.000*kW)\r\n"
    b"0-0:96.7.21(00013)\r\n"
    b"0-0:96.7.9(00000)\r\n"
    b"1-0:99.97.0(0)(0-0:96.7.19)\r\n"
    b"1-0:32.32.0(00000)\r\n"
    b"1-0:52.32.0(00000)\r\n"
    b"1-0:72.32.0(00000)\r\n"
    b"1-0:32.36.0(00000)\r\n"
    b"1-0:52.36.0(00000)\r\n"
    b"1-0:72.36.0(00000)\r\n"
    b"0-0:96.13.0()\r\n"
    b"1-0:32.7.0(0230.0*V)\r\n"
    b"1-0:52.7.0(0230.0*V)\r\n"
    b"1-0:72.7.0(0229.0*V)\r\n"
    b"1-0:31.7.0(0.48*A)\r\n"
    b"1-0:51.7.0(0.44*A)\r\n"
    b"1-0:71.7.0(0.86*A)\r\n"
    b"1-0:21.7.0(00.070*kW)\r\n"
    b"1-0:41.7.0(00.032*kW)\r\n"
    b"1-0:61.7.0(00.142*kW)\r\n"
    b"1-0:22.7.0(00.000*kW)\r\n"
    b"1-0:42.7.0(00.000*kW)\r\n"
    b"1-0:62.7.0(00.000*kW)\r\n"
    b"0-1:24.1.0(003)\r\n"
    b"0-1:96.1.0(3232323241424344313233343536373839)\r\n"
    b"0-1:24.2.1(170102161005W)(00000.107*m3)\r\n"
    b"0-2:24.1.0(003)\r\n"
    b"0-2:96.1.0()\r\n"
    b"!6EEE\r\n"
)

# --- scenario scripts (MicroPython and CPython) -------------------------------------------

PRELUDE = """
import gc
try:
    import micropython
    MPY = hasattr(micropython, 'heap_lock')
except ImportError:
    MPY = False
from errors import FirmwareError, DriverError, DeviceError

def out(k, v):
    print('@@' + k + '=' + repr(v))

def locked(fn):
    # True if fn() ran without allocating (always True on CPython).
    if not MPY:
        fn()
        return True
    gc.collect()
    ok = False
    micropython.heap_lock()
    try:
        fn()
        ok = True
    except MemoryError:
        pass
    finally:
        micropython.heap_unlock()
    return ok

def err(fn):
    try:
        fn()
    except FirmwareError as e:
        name = type(e).__name__
        if isinstance(e, DeviceError):
            name += ':%d' % e.code_value
        return name
    return 'none'
"""

CRC_HAL = """
from drivers.crc16 import crc16, crc16_modbus, crc16_arc, INIT_MODBUS, INIT_ARC
import hal
out('check_modbus', crc16_modbus(b'123456789'))
out('check_arc', crc16_arc(b'123456789'))
bufs = []
x = 12345
for n in (0, 1, 2, 7, 64, 255):
    b = bytearray(n)
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        b[i] = (x >> 16) & 0xFF
    bufs.append(b)
out('lcg_modbus', [crc16(b, INIT_MODBUS) for b in bufs])
out('lcg_arc', [crc16(b, INIT_ARC) for b in bufs])
b = bufs[4]
out('range', crc16(b, 0xFFFF, 5, 20) == crc16(bytes(b[5:20]), 0xFFFF))
out('crc_noalloc', locked(lambda: crc16(b, 0xFFFF)))
out('lock_detects', locked(lambda: bytearray(8)))
t1 = hal.ticks_add(0, -5)  # just below the wrap-around (the period is the port's)
t2 = hal.ticks_add(t1, 10)
out('ticks_wrap', [t1 > t2, hal.ticks_diff(t2, t1), hal.ticks_diff(t1, t2),
                   hal.ticks_diff(hal.ticks_add(100, 250), 100)])
t0 = hal.ticks_ms()
hal.sleep_ms(15)
out('sleep_elapsed', hal.ticks_diff(hal.ticks_ms(), t0) >= 14)
out('irq_consts', [hal.IRQ_RISING, hal.IRQ_FALLING])
"""

PZEM = """
from drivers.pzem004t import Pzem004t, ADDR_GENERAL
from fakes import pzem004t as fp
from errors import BusTimeout, CrcError, FrameError, ModbusError

f = fp.FakePzemUart(address=1)
f.set_state(voltage_mv=230_100, current_ma=12_345, power_mw=2_839_500, energy_mwh=9_876_543_210,
            frequency_mhz=49_900, pf_pct=97, alarm=True)
d = Pzem004t(f, address=1, timeout_ms=30)
r = d.read()
out('read', [r.voltage_mv, r.current_ma, r.power_dw, r.power_w, r.energy_wh,
             r.frequency_mhz, r.power_factor_pct, r.alarm])
out('energy_mwh', r.energy_mwh())
out('read_request', list(f.last_request[:f.last_request_len]))
# 32-bit current with a non-zero high word, low word first on the wire
f.current_ma = 70_000
out('current_32bit', d.read().current_ma)

def fault(kind, code=4):
    f.fault = kind
    f.fault_count = 1
    f.exception_code = code
    return err(d.read)

f.voltage_dv = 2222
out('f_timeout', fault(fp.FAULT_NO_REPLY))
out('kept_after_fault', r.voltage_mv)
out('f_bad_crc', fault(fp.FAULT_BAD_CRC))
out('f_exception', fault(fp.FAULT_EXCEPTION, 2))
out('f_truncate', fault(fp.FAULT_TRUNCATE))
out('f_wrong_addr', fault(fp.FAULT_WRONG_ADDRESS))
out('f_wrong_fc', fault(fp.FAULT_WRONG_FUNCTION))
out('recovered', [err(d.read), r.voltage_mv])
out('hierarchy', [issubclass(BusTimeout, DriverError), issubclass(CrcError, DriverError),
                  issubclass(FrameError, DriverError), issubclass(ModbusError, DeviceError),
                  issubclass(DriverError, FirmwareError)])
# a request for another slave gets no answer at all
other = Pzem004t(f, address=7, timeout_ms=20)
out('other_slave', err(other.read))
# the general address reaches any single meter
g = Pzem004t(f, address=ADDR_GENERAL, timeout_ms=30)
out('general', [err(g.read), f.last_request[0]])
d.reset_energy()
out('reset', [f.energy_wh, f.resets, list(f.last_request[:f.last_request_len])])
g.reset_energy()
out('reset_general_request', list(f.last_request[:f.last_request_len]))
f.fault = fp.FAULT_EXCEPTION
f.fault_count = 1
out('reset_exception', err(d.reset_energy))
try:
    Pzem004t(f, address=0)
    out('bad_address', 'accepted')
except ValueError:
    out('bad_address', 'ValueError')
f.add_energy_mwh(1500)
f.add_energy_mwh(600)
out('fake_energy_carry', d.read().energy_wh)
out('read_noalloc', locked(d.read))
ok = True
for _ in range(20):
    ok = ok and locked(d.read)
out('read_noalloc_20', ok)
out('reset_noalloc', locked(d.reset_energy))
# arbitrary bytes as the reply: only the driver's own errors, never anything else
x = 7
kinds = []
for n in range(40):
    raw = bytearray(n % 30)
    for i in range(len(raw)):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        raw[i] = (x >> 16) & 0xFF
    if n % 3 == 0 and len(raw) > 2:
        raw[0] = 1
        raw[1] = 0x04 if n % 2 else 0x84
    f.reply_override = raw
    k = err(d.read)
    if k not in kinds:
        kinds.append(k)
kinds.sort()
out('garbage_replies', kinds)
out('after_garbage', err(d.read))
"""

ATM = """
from drivers import atm90e32 as atm
from fakes.atm90e32 import FakeAtm90e32
from errors import VerifyError

chip = FakeAtm90e32()

class Wire:
    # SPI pass-through that records the bytes the driver clocks out
    def __init__(self, spi):
        self.spi = spi
        self.log = []
    def write(self, buf):
        self.log.extend(buf)
        self.spi.write(buf)
    def readinto(self, buf, write=0):
        self.spi.readinto(buf, write)
    def write_readinto(self, w, r):
        self.log.extend(w)
        self.spi.write_readinto(w, r)

w = Wire(chip)
a = atm.Atm90e32(w, chip.cs)
a.read_reg(0xD9)
a.write_reg(0x7F, 0x55AA)
out('wire', w.log)
a = atm.Atm90e32(chip, chip.cs)
cfg = atm.default_config(line_hz=50, ugain=(0xA100, 0xA200, 0xA300), igain=(0x7E00, 0x7E01, 0x7E02),
                         pga=0x0015)
a.configure(cfg)
r = chip.regs
out('configured', [r[0x00], r[0x31], r[0x32], r[0x33], r[0x34], r[0x61], r[0x62], r[0x65],
                   r[0x6A], r[0x7F], a.mmode0])
out('pl_constant', [atm.pl_constant(3200), atm.pl_constant(1000)])
a.write_reg(0x33, 0x1234)  # window closed: ignored by the chip
out('write_protected', a.read_reg(0x33))
out('check_config', err(a.check_config))

chip.set_phase(0, voltage_mv=230_120, current_ma=5_000, power_w=1_150, pf_milli=999)
chip.set_phase(1, voltage_mv=229_870, current_ma=8_700, power_w=-2_000, pf_milli=-1000)
chip.set_phase(2, voltage_mv=231_000, current_ma=0, power_w=0, pf_milli=0)
chip.set_frequency(50_020)
a.poll()
out('voltage_mv', list(a.voltage_mv))
out('current_ma', list(a.current_ma))
out('power_w', list(a.power_w))
out('pf_milli', list(a.power_factor_milli))
out('frequency_mhz', a.frequency_mhz)

# forward on A, reverse on B, many small feeds with polls in between: exact totals
for i in range(100):
    chip.add_energy(0, 10)
    chip.add_energy(1, -25)
    chip.add_energy(2, 7)
    if i % 7 == 0:
        a.poll_energy()
a.poll_energy()
out('cleared_on_read', [r[0x80], r[0x81], r[0x85]])
out('energy', [a.energy_mwh(ch) for ch in range(atm.N_CHANNELS)])
# one LSB (3.125 mWh at MC 3200) per poll: the remainder is carried, nothing lost
base = a.energy_mwh(atm.FWD_C)
steps = []
for i in range(8):
    r[0x83] = 1
    a.poll_energy()
    steps.append(a.energy_mwh(atm.FWD_C) - base)
out('lsb_steps', steps)
# a full register (65535 LSB) in one poll
r[0x84] = 0xFFFF
a.poll_energy()
out('full_register', a.energy_mwh(atm.REV_T) - 2500)
a.set_energy_mwh(atm.FWD_A, 5_000_000_123)
r[0x81] = 320
a.poll_energy()
out('big_total', [a.energy_mwh(atm.FWD_A), a.energy_wh(atm.FWD_A) < (1 << 30)])

# faults: MISO stuck high must never be added as energy
before = [a.energy_mwh(ch) for ch in range(atm.N_CHANNELS)]
chip.add_energy(0, 1000)
chip.miso_stuck = 0xFFFF
out('stuck_high', err(a.poll_energy))
chip.miso_stuck = 0x0000
out('stuck_low', err(a.poll_energy))
chip.miso_stuck = None
out('unchanged', [a.energy_mwh(ch) for ch in range(atm.N_CHANNELS)] == before)
a.poll_energy()
out('after_fault', a.energy_mwh(atm.FWD_A) - before[atm.FWD_A])
chip.power_loss()
out('power_loss', [err(a.poll_energy), err(a.check_config)])
chip.miso_stuck = 0xFFFF
out('configure_stuck', err(lambda: a.configure(cfg)))
chip.miso_stuck = None
a.configure(cfg)
out('reconfigured', err(a.poll))
try:
    atm.Atm90e32(chip, chip.cs, meter_constant=0)
    out('bad_mc', 'accepted')
except ValueError:
    out('bad_mc', 'ValueError')
chip.add_energy(0, 50)
chip.add_energy(1, -50)
ok = True
for _ in range(10):
    ok = ok and locked(a.poll)
out('poll_noalloc', ok)
"""

P1_COMMON = """
from drivers import dsmr_p1 as p1
from drivers.crc16 import crc16_arc
from fakes import dsmr_p1 as fk
from errors import CrcError, FrameError, OversizeError

port = fk.FakeP1Port()
rd = p1.P1Reader(port)

def drain():
    # poll until the UART is empty; list of outcomes ('T' telegram, or the error name)
    res = []
    for _ in range(200):
        try:
            if not rd.poll():
                return res
            res.append('T')
        except FirmwareError as e:
            res.append(type(e).__name__)
    return res

"""

P1_PARSE = """
V = TELEGRAM
bang = V.find(b'!')
out('v5_crc', [crc16_arc(V, bang + 1), int(V[bang + 1:bang + 5], 16)])
port.feed(V)
out('v5_outcome', drain())
v = rd.values
out('v5_energy', [v[p1.IMPORT_T1], v[p1.IMPORT_T2], v[p1.EXPORT_T1], v[p1.EXPORT_T2]])
out('v5_power', [v[p1.POWER_IMPORT], v[p1.POWER_EXPORT], v[p1.POWER_IMPORT_L1],
                 v[p1.POWER_IMPORT_L2], v[p1.POWER_IMPORT_L3], v[p1.POWER_EXPORT_L1]])
out('v5_voltage', [v[p1.VOLTAGE_L1], v[p1.VOLTAGE_L2], v[p1.VOLTAGE_L3]])
out('v5_current', [v[p1.CURRENT_L1], v[p1.CURRENT_L2], v[p1.CURRENT_L3]])
out('v5_meta', [v[p1.TARIFF], rd.timestamp_str(), rd.equipment_id_str(),
                rd.import_mwh(), rd.export_mwh(), rd.present == (1 << 21) - 1])

# byte-at-a-time arrival: nothing until the final LF
trues = 0
for i in range(len(V)):
    port.feed(V[i:i + 1])
    last = rd.poll()
    trues += last
out('bytewise', [trues, last])

# the fake's telegrams round-trip through the reader
port.import_t1_wh = 123_456_789
port.import_t2_wh = 1_234_567
port.export_t1_wh = 7
port.export_t2_wh = 999_999_999
port.power_import_w = 0
port.power_export_w = 3_456
port.voltage_mv = [231_400, 229_900, 230_000]
port.current_ma = [7_000, 0, 16_000]
port.tariff = 1
port.timestamp = '240615123000S'
port.equipment_id = 'E0012345678901234'
port.emit()
out('fake_outcome', drain())
out('fake_values', [v[p1.IMPORT_T1], v[p1.IMPORT_T2], v[p1.EXPORT_T1], v[p1.EXPORT_T2],
                    v[p1.POWER_EXPORT], v[p1.VOLTAGE_L1], v[p1.VOLTAGE_L2], v[p1.CURRENT_L3],
                    v[p1.TARIFF], rd.timestamp_str(), rd.equipment_id_str()])
out('parse_fixed', [p1.parse_fixed(b'001234.567', 0, 10, 3), p1.parse_fixed(b'0.48', 0, 4, 3),
                    p1.parse_fixed(b'230.12345', 0, 9, 1), p1.parse_fixed(b'7', 0, 1, 3),
                    err(lambda: p1.parse_fixed(b'9999999999', 0, 10, 0)),
                    err(lambda: p1.parse_fixed(b'1.2.3', 0, 5, 3))])
port.emit()
port.emit()
ok = True
for _ in range(2):
    ok = locked(rd.poll) and ok
out('poll_noalloc', [ok, rd.telegrams])
"""

P1_FAULTS = """
v = rd.values
for name, kind in (('crc', fk.FAULT_CRC), ('body', fk.FAULT_BODY),
                   ('truncate', fk.FAULT_TRUNCATE), ('oversize', fk.FAULT_OVERSIZE),
                   ('no_crc', fk.FAULT_NO_CRC), ('garbage', fk.FAULT_GARBAGE)):
    port.import_t1_wh += 1
    port.emit(kind)
    port.import_t1_wh += 1
    port.emit()
    o = drain()
    out('fault_' + name, [o, v[p1.IMPORT_T1] == port.import_t1_wh])
out('counters', [rd.telegrams, rd.errors])

# a value that passes the CRC but is not a number is rejected whole
bad = b'/ABC5 test\\r\\n\\r\\n1-0:1.8.1(12a4.567*kWh)\\r\\n1-0:2.7.0(01.000*kW)\\r\\n!'
port.feed(bad + ('%04X' % crc16_arc(bad)).encode() + b'\\r\\n')
before = list(v)
out('bad_value', [drain(), list(v) == before])
# base-unit meters (*Wh, *W) are read as well
base = (b'/EST5\\\\253710000_A\\r\\n\\r\\n1-0:1.8.1(005017120*Wh)\\r\\n'
        b'1-0:1.7.0(000000286*W)\\r\\n1-0:2.8.2(000000058*Wh)\\r\\n!')
port.feed(base + ('%04X' % crc16_arc(base)).encode() + b'\\r\\n')
out('base_units', [drain(), v[p1.IMPORT_T1], v[p1.POWER_IMPORT], v[p1.EXPORT_T2],
                   rd.present & (1 << p1.IMPORT_T2)])

# line noise (including stray '/' and '!') then a good telegram: no crash, resync
x = 99
noise = bytearray(600)
for i in range(600):
    x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    noise[i] = (x >> 16) & 0xFF
    if i % 97 == 0:
        noise[i] = 0x2F
    if i % 89 == 0:
        noise[i] = 0x21
port.feed(noise)
port.emit()
o = drain()
out('noise', [o[-1], all(k in ('T', 'CrcError', 'FrameError', 'OversizeError') for k in o),
              v[p1.IMPORT_T1] == port.import_t1_wh])

# mutated telegrams whose CRC is recomputed: the parser itself sees the garbage
tricky = b'()*.!/:-kW\\r\\n0123456789AZ'
outcomes = []
for n in range(40):
    t = port.telegram()
    bang = t.find(b'!')
    for _ in range(1 + n % 4):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        t[1 + (x >> 8) % (bang - 1)] = tricky[(x >> 4) % len(tricky)]
    bang = t.find(b'!')
    t = t[:bang + 1]
    t += ('%04X' % crc16_arc(t)).encode() + b'\\r\\n'
    port.feed(t)
    for k in drain():
        if k not in outcomes:
            outcomes.append(k)
port.emit()
o = drain()
outcomes.sort()
out('mutations', [outcomes, o[-1], v[p1.IMPORT_T1] == port.import_t1_wh])
"""

S0 = """
from drivers.s0 import S0Counter
from fakes.s0 import FakeS0Pin

pin = FakeS0Pin()
c = S0Counter(pin, pulses_per_kwh=1000, debounce_ms=50, clock=pin)
out('trigger', pin.trigger)
pin.edges([0, 1, 3, 100, 102, 130, 200])
out('debounce', [c.update(), c.rejected, c.energy_mwh()])
out('power', [c.power_w()])
pin.advance(900)
out('power_decay', c.power_w())
out('nothing_new', c.update())

def exact(ppk, plan):
    p = FakeS0Pin()
    k = S0Counter(p, pulses_per_kwh=ppk, debounce_ms=5, clock=p)
    t = 0
    total = 0
    ok = True
    for n in plan:
        for _ in range(n):
            t += 10
            p.edge(t)
        total += n
        k.update()
        ok = ok and k.energy_mwh() == total * 1_000_000 // ppk
    return [ok, k.energy_mwh(), k.pulses]

out('exact_800', exact(800, [1, 2, 3, 5, 7]))
out('exact_3200', exact(3200, [1, 1, 1, 1, 3, 9, 2500]))
out('exact_1000', exact(1000, [4, 999, 1]))
out('exact_375', exact(375, [1, 2, 2, 10, 1]))

# counter wrap in the ISR (2**30) is handled by update()
c2 = S0Counter(FakeS0Pin(), pulses_per_kwh=1000)
c2._isr_count = (1 << 30) - 2
c2._seen = (1 << 30) - 2
c2._isr_count = 3  # 5 pulses later, wrapped
out('wrap', [c2.update(), c2.energy_mwh()])
c.set_energy_mwh(5_000_000_001)
out('restore', [c.energy_mwh(), c.energy_wh() < (1 << 30)])
for bad in (0, 100_001):
    try:
        S0Counter(FakeS0Pin(), pulses_per_kwh=bad)
        out('bad_ppk_%d' % bad, 'accepted')
    except ValueError:
        out('bad_ppk_%d' % bad, 'ValueError')
pin3 = FakeS0Pin()
c3 = S0Counter(pin3, pulses_per_kwh=1000, debounce_ms=50, clock=pin3)
out('isr_noalloc', locked(lambda: pin3.pulses(1000, 200, 50, (1, 2, 4))))
out('update_noalloc', [locked(c3.update), locked(c3.power_w), c3.energy_mwh(), c3.rejected])
"""

SCENARIOS = {
    "crc_hal": CRC_HAL,
    "pzem": PZEM,
    "atm": ATM,
    "p1_parse": P1_COMMON + P1_PARSE,
    "p1_faults": P1_COMMON + P1_FAULTS,
    "s0": S0,
}


def script(name: str) -> tuple[str, str]:
    """(program, stdin): the program imports the modules under test first, collects, then
    compiles the scenario body it reads from stdin -- so the 64 KiB heap never has to hold
    the compiled scenario and a module being compiled at the same time."""
    src = SCENARIOS[name].replace("TELEGRAM", repr(DSMR5_TELEGRAM))
    lines = src.split("\n")
    imports = [ln for ln in lines if ln.startswith(("from ", "import "))]
    body = [ln for ln in lines if not ln.startswith(("from ", "import "))]
    program = (
        PRELUDE
        + "\n".join(imports)
        + "\nimport sys\ngc.collect()\nexec(sys.stdin.read(), globals())\nprint('@@done=True')\n"
    )
    return program, "\n".join(body) + "\n"


def parse(stdout: str) -> dict[str, object]:
    res: dict[str, object] = {}
    for line in stdout.splitlines():
        if line.startswith("@@"):
            key, _, val = line[2:].partition("=")
            res[key] = ast.literal_eval(val)
    return res


@functools.cache
def run(interp: str, name: str) -> dict[str, object]:
    code, body = script(name)
    if interp == "micropython":
        out = run_micropython(code, heap="64k", stdin=body).stdout
    else:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(FIRMWARE), str(ROOT)])
        proc = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=str(ROOT),
            input=body,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            raise AssertionError(f"python failed\n{proc.stdout}\n{proc.stderr}")
        out = proc.stdout
    res = parse(out)
    assert res.get("done") is True, out
    return res


INTERPS = ["micropython", "cpython"]


@pytest.fixture(params=INTERPS)
def interp(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- CRC and HAL --------------------------------------------------------------------------


def test_crc_check_values(interp: str) -> None:
    r = run(interp, "crc_hal")
    assert r["check_modbus"] == 0x4B37 == ref_crc16(b"123456789", 0xFFFF)
    assert r["check_arc"] == 0xBB3D == ref_crc16(b"123456789", 0x0000)


def test_crc_matches_bitwise_reference(interp: str) -> None:
    r = run(interp, "crc_hal")
    bufs = lcg_buffers()
    assert r["lcg_modbus"] == [ref_crc16(b, 0xFFFF) for b in bufs]
    assert r["lcg_arc"] == [ref_crc16(b, 0x0000) for b in bufs]
    assert r["range"] is True
    assert r["crc_noalloc"] is True
    # the allocation check is not vacuous: an allocation under the lock is caught
    assert r["lock_detects"] is (interp == "cpython")


def test_hal_ticks(interp: str) -> None:
    r = run(interp, "crc_hal")
    assert r["ticks_wrap"] == [True, 10, -10, 250]
    assert r["sleep_elapsed"] is True
    assert r["irq_consts"] == [1, 2]


def test_published_modbus_frames() -> None:
    # PZEM-004T manual examples: read all, reset energy (slave 1 and general address)
    def frame(body: bytes) -> list[int]:
        c = ref_crc16(body, 0xFFFF)
        return list(body) + [c & 0xFF, c >> 8]

    assert frame(b"\x01\x04\x00\x00\x00\x0a") == [0x01, 0x04, 0, 0, 0, 0x0A, 0x70, 0x0D]
    assert frame(b"\x01\x42") == [0x01, 0x42, 0x80, 0x11]
    assert frame(b"\xf8\x42") == [0xF8, 0x42, 0xC2, 0x41]


# --- PZEM-004T ----------------------------------------------------------------------------


def test_pzem_read_values(interp: str) -> None:
    r = run(interp, "pzem")
    # 230.1 V, 12.345 A, 2839.5 W, 9876.543 kWh, 49.9 Hz, pf 0.97, alarm
    assert r["read"] == [230_100, 12_345, 28_395, 2_840, 9_876_543, 49_900, 97, True]
    assert r["energy_mwh"] == 9_876_543_000
    assert r["current_32bit"] == 70_000
    assert r["fake_energy_carry"] == 2  # 1500 + 600 mWh after a reset: 2 Wh + 100 mWh carried


def test_pzem_request_frames(interp: str) -> None:
    r = run(interp, "pzem")
    assert r["read_request"] == [0x01, 0x04, 0, 0, 0, 0x0A, 0x70, 0x0D]
    assert r["reset"] == [0, 1, [0x01, 0x42, 0x80, 0x11]]
    assert r["reset_general_request"] == [0xF8, 0x42, 0xC2, 0x41]
    assert r["general"] == ["none", 0xF8]


def test_pzem_faults(interp: str) -> None:
    r = run(interp, "pzem")
    assert r["f_timeout"] == "BusTimeout"
    assert r["f_bad_crc"] == "CrcError"
    assert r["f_exception"] == "ModbusError:2"
    assert r["f_truncate"] == "BusTimeout"
    assert r["f_wrong_addr"] == "FrameError"
    assert r["f_wrong_fc"] == "FrameError"
    assert r["other_slave"] == "BusTimeout"
    assert r["reset_exception"] == "ModbusError:4"
    assert r["kept_after_fault"] == 230_100  # a failed read leaves the last good values
    assert r["recovered"] == ["none", 222_200]
    assert r["hierarchy"] == [True] * 5
    assert r["bad_address"] == "ValueError"
    assert set(r["garbage_replies"]) <= {"BusTimeout", "CrcError", "FrameError"}
    assert "FrameError" in r["garbage_replies"] and "BusTimeout" in r["garbage_replies"]
    assert r["after_garbage"] == "none"


def test_pzem_poll_does_not_allocate(interp: str) -> None:
    r = run(interp, "pzem")
    assert r["read_noalloc"] is True
    assert r["read_noalloc_20"] is True
    assert r["reset_noalloc"] is True


# --- ATM90E32 -----------------------------------------------------------------------------


def test_atm_spi_framing(interp: str) -> None:
    r = run(interp, "atm")
    # read 0xD9: address word with bit 15 set; write 0x7F <- 0x55AA: address then data
    assert r["wire"] == [0x80, 0xD9, 0x00, 0x7F, 0x55, 0xAA]


def test_atm_configuration(interp: str) -> None:
    r = run(interp, "atm")
    assert r["configured"] == [
        0x0001,  # MeterEn
        0x0861,  # PLconstH  (MC 3200 -> 140,625,000)
        0xC468,  # PLconstL
        0x0087,  # MMode0 (50 Hz, 3P4W)
        0x0015,  # MMode1 PGA 2x
        0xA100,  # UgainA
        0x7E00,  # IgainA
        0xA200,  # UgainB
        0x7E02,  # IgainC
        0x0000,  # CfgRegAccEn closed again
        0x0087,
    ]
    assert r["pl_constant"] == [140_625_000, 450_000_000]
    assert r["write_protected"] == 0x0087
    assert r["check_config"] == "none"


def test_atm_measurements(interp: str) -> None:
    r = run(interp, "atm")
    assert r["voltage_mv"] == [230_120, 229_870, 231_000]
    assert r["current_ma"] == [5_000, 8_700, 0]
    assert r["power_w"] == [-850, 1_150, -2_000, 0]  # total, A, B, C; export negative
    assert r["pf_milli"] == [0, 999, -1000, 0]
    assert r["frequency_mhz"] == 50_020


def test_atm_forward_reverse_accumulation(interp: str) -> None:
    r = run(interp, "atm")
    assert r["cleared_on_read"] == [0, 0, 0]
    # fed: A +10 mWh x100, B -25 mWh x100, C +7 mWh x100
    assert r["energy"] == [
        1000 + 700,  # FWD_T
        1000,  # FWD_A
        0,  # FWD_B
        700,  # FWD_C
        2500,  # REV_T
        0,  # REV_A
        2500,  # REV_B
        0,  # REV_C
    ]
    # 3.125 mWh per LSB: floor(k * 3.125) exactly, the remainder carried
    assert r["lsb_steps"] == [3, 6, 9, 12, 15, 18, 21, 25]
    assert r["full_register"] == 65535 * 3125 // 1000
    assert r["big_total"] == [5_000_001_123, True]


def test_atm_faults(interp: str) -> None:
    r = run(interp, "atm")
    assert r["stuck_high"] == "VerifyError"
    assert r["stuck_low"] == "VerifyError"
    assert r["unchanged"] is True
    assert r["after_fault"] == 1000  # the energy was still in the chip and is counted once
    # MMode0 of this configuration equals the power-on default, so only the digest notices
    assert r["power_loss"] == ["none", "VerifyError"]
    assert r["configure_stuck"] == "VerifyError"
    assert r["reconfigured"] == "none"
    assert r["bad_mc"] == "ValueError"


def test_atm_poll_does_not_allocate(interp: str) -> None:
    assert run(interp, "atm")["poll_noalloc"] is True


# --- DSMR P1 ------------------------------------------------------------------------------


def test_p1_published_telegram(interp: str) -> None:
    r = run(interp, "p1_parse")
    body = DSMR5_TELEGRAM[: DSMR5_TELEGRAM.index(b"!") + 1]
    assert ref_crc16(body, 0) == 0x6EEE
    assert r["v5_crc"] == [0x6EEE, 0x6EEE]
    assert r["v5_outcome"] == ["T"]
    assert r["v5_energy"] == [4426, 2399, 2444, 0]
    assert r["v5_power"] == [244, 0, 70, 32, 142, 0]
    assert r["v5_voltage"] == [230_000, 230_000, 229_000]
    assert r["v5_current"] == [480, 440, 860]
    assert r["v5_meta"] == [2, "170102192002W", "K8EG004046395507", 6_825_000, 2_444_000, True]


def test_p1_bytewise_and_fake_roundtrip(interp: str) -> None:
    r = run(interp, "p1_parse")
    assert r["bytewise"] == [1, True]
    assert r["fake_outcome"] == ["T"]
    assert r["fake_values"] == [
        123_456_789,
        1_234_567,
        7,
        999_999_999,
        3_456,
        231_400,
        229_900,
        16_000,
        1,
        "240615123000S",
        "E0012345678901234",
    ]


def test_p1_faults_and_resync(interp: str) -> None:
    r = run(interp, "p1_faults")
    # each faulty telegram is followed by a good one, which must be decoded
    assert r["fault_crc"] == [["CrcError", "T"], True]
    assert r["fault_body"] == [["CrcError", "T"], True]
    assert r["fault_truncate"] == [["FrameError", "T"], True]
    assert r["fault_oversize"] == [["OversizeError", "T"], True]
    assert r["fault_no_crc"] == [["FrameError", "T"], True]
    assert r["fault_garbage"] == [["T", "T"], True]
    assert r["counters"] == [7, 5]  # six good telegrams + the one behind line noise
    assert r["bad_value"] == [["FrameError"], True]
    assert r["base_units"] == [["T"], 5_017_120, 286, 58, 0]
    assert r["noise"][0] == "T" and r["noise"][1:] == [True, True]
    outcomes, last, current = r["mutations"]
    assert set(outcomes) <= {"T", "CrcError", "FrameError", "OversizeError"}
    assert "FrameError" in outcomes and "T" in outcomes
    assert last == "T" and current is True


def test_p1_parse_fixed(interp: str) -> None:
    r = run(interp, "p1_parse")
    assert r["parse_fixed"] == [1_234_567, 480, 2301, 7000, "FrameError", "FrameError"]


def test_p1_poll_does_not_allocate(interp: str) -> None:
    assert run(interp, "p1_parse")["poll_noalloc"] == [True, 5]


# --- S0 -----------------------------------------------------------------------------------


def test_s0_debounce_and_power(interp: str) -> None:
    r = run(interp, "s0")
    assert r["trigger"] == 2  # falling edge
    # edges 0, 1, 3, 100, 102, 130, 200 ms with 50 ms debounce: 0, 100, 200 count
    assert r["debounce"] == [3, 4, 3000]
    assert r["power"] == [36_000]  # 3.6 kJ per pulse every 100 ms
    assert r["power_decay"] == 4_000  # 900 ms since the last pulse: 3.6 kJ / 0.9 s
    assert r["nothing_new"] == 0


def test_s0_exact_mwh(interp: str) -> None:
    r = run(interp, "s0")
    assert r["exact_800"] == [True, 18 * 1250, 18]
    assert r["exact_3200"] == [True, 2516 * 1_000_000 // 3200, 2516]
    assert r["exact_1000"] == [True, 1_004_000, 1004]
    assert r["exact_375"] == [True, 16 * 1_000_000 // 375, 16]
    assert r["wrap"] == [5, 5000]
    assert r["restore"] == [5_000_000_001, True]
    assert r["bad_ppk_0"] == "ValueError"
    assert r["bad_ppk_100001"] == "ValueError"


def test_s0_isr_and_update_do_not_allocate(interp: str) -> None:
    r = run(interp, "s0")
    assert r["isr_noalloc"] is True
    assert r["update_noalloc"][:2] == [True, True]
    assert r["update_noalloc"][2] == 50_000  # 50 pulses at 1000 imp/kWh
    assert r["update_noalloc"][3] == 150  # three bounce edges after every pulse
