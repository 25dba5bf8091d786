"""PZEM-004T v3.0 single-phase AC meter over UART (Modbus RTU, 9600 8N1).

Protocol (Peacefair PZEM-004T V3.0 user manual):

* Read input registers (function 0x04), registers 0x0000..0x0009, all big-endian words;
  32-bit values are sent LOW word first:

  ======  ==================  ======================
  reg     quantity            resolution
  ======  ==================  ======================
  0x0000  voltage             0.1 V
  0x0001  current low word    0.001 A (32-bit)
  0x0002  current high word
  0x0003  power low word      0.1 W (32-bit)
  0x0004  power high word
  0x0005  energy low word     1 Wh (32-bit)
  0x0006  energy high word
  0x0007  frequency           0.1 Hz
  0x0008  power factor        0.01
  0x0009  power alarm         0xFFFF alarm, 0x0000 none
  ======  ==================  ======================

* Reset energy: ``addr 0x42 CRC``; the meter echoes the 4 bytes.
* Error reply: ``addr (function | 0x80) exception-code CRC`` (1 illegal function,
  2 illegal address, 3 illegal data, 4 slave error) -> ``errors.ModbusError``.
* Slave address 0x01..0xF7 (factory default 0x01); 0xF8 is the general address that any
  single meter on the bus answers (use it only with one meter per UART).

The PZEM measures consumed energy only: its power and energy are unsigned, it cannot tell an
export from an import. Use it on pure loads (or on a PV inverter output, where it counts the
generation); a bidirectional grid connection needs the ATM90E32 or the utility meter's P1.

Units here: voltage mV, current mA, power W (and dW, its native 0.1 W), energy Wh (native;
``energy_mwh()`` converts), frequency mHz, power factor in hundredths.

Polling path (``read()``) is allocation-free: request and response live in preallocated
buffers, results go into the preallocated ``PzemReading``. No retries: a fault raises
``BusTimeout``, ``CrcError``, ``FrameError`` or ``ModbusError`` and the caller decides.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


import hal
from drivers.crc16 import crc16
from errors import BusTimeout, CrcError, FrameError, ModbusError

ADDR_GENERAL = const(0xF8)
_ADDR_DEFAULT = const(0x01)

_FC_READ_INPUT = const(0x04)
_FC_RESET_ENERGY = const(0x42)
_FC_ERROR = const(0x80)

_REG_VOLTAGE = const(0x0000)
_REG_COUNT = const(10)
_DATA_BYTES = const(20)  # _REG_COUNT * 2
_READ_REPLY_LEN = const(25)  # addr fc count data[20] crc[2]
_RESET_REPLY_LEN = const(4)  # addr fc crc[2]
_ERROR_REPLY_LEN = const(5)  # addr fc|0x80 code crc[2]
_ALARM_ON = const(0xFFFF)

_INIT = const(0xFFFF)

_DEFAULT_TIMEOUT_MS = const(200)


class PzemReading:
    """Preallocated result of one ``Pzem004t.read()``; integer units."""

    def __init__(self):
        self.voltage_mv = 0
        self.current_ma = 0
        self.power_dw = 0  # 0.1 W, as measured
        self.power_w = 0  # rounded to 1 W
        self.energy_wh = 0  # consumed energy counter of the meter (resettable)
        self.frequency_mhz = 0
        self.power_factor_pct = 0  # 0..100 hundredths
        self.alarm = False

    def energy_mwh(self):
        """Energy in mWh. Reporting path only: above ~1074 kWh this is a long int, which
        allocates on a 32-bit port (the Wh field itself stays a small int)."""
        return self.energy_wh * 1000


def _u16(b, i):
    return (b[i] << 8) | b[i + 1]


class Pzem004t:
    """Owns the UART and the frame buffers for one PZEM-004T v3.0."""

    def __init__(self, uart, address=_ADDR_DEFAULT, timeout_ms=_DEFAULT_TIMEOUT_MS, clock=None):
        if not (1 <= address <= 0xF7 or address == ADDR_GENERAL):
            raise ValueError("PZEM address must be 0x01..0xF7 or 0xF8")
        self._uart = uart
        self.address = address
        self.timeout_ms = timeout_ms
        self._clock = clock if clock is not None else hal
        self._req = bytearray(8)
        self._rst = bytearray(4)
        self._rx = bytearray(_READ_REPLY_LEN)
        self._one = bytearray(1)
        self._t0 = self._fc = self._ok = self._pos = self._need = 0  # the transaction under way
        self.reading = PzemReading()
        self._build_requests()

    def _build_requests(self):
        r = self._req
        r[0] = self.address
        r[1] = _FC_READ_INPUT
        r[2] = _REG_VOLTAGE >> 8
        r[3] = _REG_VOLTAGE & 0xFF
        r[4] = 0
        r[5] = _REG_COUNT
        c = crc16(r, _INIT, 0, 6)
        r[6] = c & 0xFF
        r[7] = c >> 8
        s = self._rst
        s[0] = self.address
        s[1] = _FC_RESET_ENERGY
        c = crc16(s, _INIT, 0, 2)
        s[2] = c & 0xFF
        s[3] = c >> 8

    # --- transport ------------------------------------------------------------------------

    def _flush(self):
        # Drop stale bytes (e.g. the tail of a reply that came after a timeout). Bounded.
        u = self._uart
        for _ in range(64):
            if not u.any():
                return
            u.readinto(self._rx)

    def _start(self, req, fc, ok_len):
        """Send ``req``; the reply for function ``fc`` (``ok_len`` bytes when normal) is then
        collected by ``step()`` into ``self._rx``."""
        self._flush()
        self._uart.write(req)
        self._t0 = self._clock.ticks_ms()
        self._fc = fc
        self._ok = ok_len
        self._pos = 0
        self._need = 2  # until the function byte tells what kind of reply this is

    def step(self):
        """Take what the UART holds of the reply, without waiting: True once it is whole and
        checked, False while more is to come. Raises on any fault (a timeout included)."""
        u = self._uart
        rx = self._rx
        one = self._one
        fc = self._fc
        while self._pos < self._need:
            if not (u.any() and u.readinto(one, 1)):
                if self._clock.ticks_diff(self._clock.ticks_ms(), self._t0) >= self.timeout_ms:
                    raise BusTimeout("PZEM did not answer in time")
                return False
            pos = self._pos
            rx[pos] = one[0]
            self._pos = pos = pos + 1
            if pos == 2:
                if rx[1] == fc | _FC_ERROR:
                    self._need = _ERROR_REPLY_LEN
                elif rx[1] == fc:
                    self._need = self._ok
                else:
                    raise FrameError("PZEM reply has wrong function code")
            elif pos == 3 and self._need == _READ_REPLY_LEN and rx[2] != _DATA_BYTES:
                raise FrameError("PZEM reply has wrong byte count")
        need = self._need
        c = crc16(rx, _INIT, 0, need - 2)
        if rx[need - 2] != (c & 0xFF) or rx[need - 1] != (c >> 8):
            raise CrcError("PZEM reply CRC mismatch")
        if self.address != ADDR_GENERAL and rx[0] != self.address:
            raise FrameError("PZEM reply from another slave address")
        if rx[1] & _FC_ERROR:
            raise ModbusError("PZEM Modbus exception", rx[2])
        return True

    def _transact(self, req, fc, ok_len):
        """Send ``req`` and wait for its checked reply in ``self._rx`` (blocking: ``sleep_ms``
        between checks). The board's metering task waits with ``request()``/``step()`` instead."""
        self._start(req, fc, ok_len)
        while not self.step():
            self._clock.sleep_ms(1)

    # --- commands -------------------------------------------------------------------------

    def read(self):
        """Read all measurements into ``self.reading`` (and return it)."""
        self._transact(self._req, _FC_READ_INPUT, _READ_REPLY_LEN)
        return self._parse()

    def _parse(self):
        b = self._rx
        r = self.reading
        # data starts at b[3]; register k at b[3 + 2k]
        r.voltage_mv = _u16(b, 3) * 100
        r.current_ma = _u16(b, 5) | (_u16(b, 7) << 16)
        p = _u16(b, 9) | (_u16(b, 11) << 16)
        r.power_dw = p
        r.power_w = (p + 5) // 10
        r.energy_wh = _u16(b, 13) | (_u16(b, 15) << 16)
        r.frequency_mhz = _u16(b, 17) * 100
        r.power_factor_pct = _u16(b, 19)
        r.alarm = _u16(b, 21) == _ALARM_ON
        return r

    def meter_read(self):
        """For the meter layer: (import counter mWh, export counter mWh, power W, voltage mV)."""
        self._transact(self._req, _FC_READ_INPUT, _READ_REPLY_LEN)
        return self.result()

    def request(self):
        """Start a read for the meter layer, which then calls ``step()`` until it is True (or
        raises) and takes ``result()``: the wait never blocks the board's event loop."""
        self._start(self._req, _FC_READ_INPUT, _READ_REPLY_LEN)

    def result(self):
        """The completed read as ``meter_read()`` returns it."""
        r = self._parse()
        return r.energy_wh * 1000, 0, r.power_w, r.voltage_mv

    def reset_energy(self):
        """Zero the meter's energy counter (function 0x42)."""
        self._transact(self._rst, _FC_RESET_ENERGY, _RESET_REPLY_LEN)


def open_frontend(fe, hw):
    """The driver for a board file's front end (compact form) on ``hw``'s UART."""
    return Pzem004t(hw.uart(fe), address=fe.get("addr", 1))
