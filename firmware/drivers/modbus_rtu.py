# Modbus RTU master for the inverters on the board's RS-485 UART: write single holding register
# (function 0x06) for setpoints (battery, PV export limit, wallbox), write two holding registers
# in one request (function 0x10, write multiple registers) for a 32-bit point, read holding
# registers (function 0x03, one register) for what the battery inverter reports (state of charge,
# power). A single write is echoed by the slave, the two registers' answered with their start
# register and quantity; a read is answered with the register's value; an exception reply
# (function | 0x80, code) raises ModbusError. No retries here. All are awaited: the request is
# sent, then the reply checked for every few ms (``asyncio.sleep_ms``) up to the timeout, so a
# silent slave never holds the event loop.
#
# ``battery_state`` reads the registers the board file's [battery] section names: only battery
# boards import this module (lazily), so none of it costs a board without a battery any heap.
try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


import asyncio

import hal
from drivers.crc16 import INIT_MODBUS, crc16
from errors import BusTimeout, CrcError, DriverError, FrameError, ModbusError

_FC_READ = const(0x03)
_FC_WRITE = const(0x06)
_FC_WRITE_N = const(0x10)
_FC_ERROR = const(0x80)
_READ_REPLY_LEN = const(7)  # addr, 0x03, byte count 2, value hi, value lo, CRC lo, CRC hi
_ERROR_REPLY_LEN = const(5)  # addr, function | 0x80, exception code, CRC lo, CRC hi
_WAIT_MS = const(5)  # between checks for a reply: 9600 baud brings ~5 bytes in that time


class ModbusMaster:
    def __init__(self, uart, timeout_ms=200, clock=None):
        self._uart = uart
        self.timeout_ms = timeout_ms
        self._clock = clock if clock is not None else hal
        # the request: 8 bytes (functions 3, 6), 13 for function 16 (addr, 0x10, register,
        # quantity 2, byte count 4, two values, CRC); the 13 fit the 16-byte heap block the 8
        # took, the view of the first 8 is the one object more
        self._tx = bytearray(13)
        self._t8 = memoryview(self._tx)[:8]
        self._rx = bytearray(8)  # the longest reply: a write's (8 bytes)
        self._one = bytearray(1)
        self._t0 = self._pos = self._need = 0  # the transaction under way
        self.busy = False  # a transaction is under way (its task waits for the reply)

    def _start(self, addr, fc, reg, v, need):
        """Send the 8-byte request ``addr fc reg v`` or, function 16 (``v`` 2), the 13-byte one
        with the byte count and the values ``write_registers`` put in it; its ``need``-byte reply
        is then collected by ``step()`` into ``self._rx``."""
        if not 1 <= addr <= 247 or not 0 <= reg <= 0xFFFF:
            raise FrameError("modbus address or register out of range")
        t = self._tx
        t[0], t[1], t[2], t[3], t[4], t[5] = addr, fc, reg >> 8, reg & 0xFF, v >> 8, v & 0xFF
        n = 11 if fc == _FC_WRITE_N else 6
        c = crc16(t, INIT_MODBUS, 0, n)
        t[n], t[n + 1] = c & 0xFF, c >> 8
        u = self._uart
        while u.any():
            u.readinto(self._rx)
        u.write(t if n > 6 else self._t8)
        self._t0 = self._clock.ticks_ms()
        self._pos = 0
        self._need = need

    def step(self):
        """Take what the UART holds of the reply, without waiting: True once it is whole and
        checked, False while more is to come; raise on a timeout, a bad CRC, a reply from
        another slave or function, or an exception reply."""
        u, rx, one, clock = self._uart, self._rx, self._one, self._clock
        t = self._tx
        addr, fc = t[0], t[1]
        while self._pos < self._need:
            if not (u.any() and u.readinto(one, 1)):
                if clock.ticks_diff(clock.ticks_ms(), self._t0) >= self.timeout_ms:
                    raise BusTimeout("modbus slave %d did not answer" % addr)
                return False
            rx[self._pos] = one[0]
            self._pos += 1
            if self._pos == 2 and rx[1] == fc | _FC_ERROR:
                self._need = _ERROR_REPLY_LEN
        need = self._need
        c = crc16(rx, INIT_MODBUS, 0, need - 2)
        if rx[need - 2] != c & 0xFF or rx[need - 1] != c >> 8:
            raise CrcError("modbus reply CRC mismatch")
        if rx[0] != addr:
            raise FrameError("modbus reply from slave %d, not %d" % (rx[0], addr))
        if rx[1] == fc | _FC_ERROR:
            raise ModbusError("modbus exception", rx[2])
        if rx[1] != fc:
            raise FrameError("modbus reply to function %d, not %d" % (rx[1], fc))
        return True

    async def _transact(self, addr, fc, reg, v, need):
        """``_start``, then ``step()`` every few ms until the reply is whole, yielding to the
        event loop meanwhile. One transaction at a time: the bus is shared by the readings task
        (battery state) and the order path (setpoints), and a request sent while another waits
        for its reply would take that reply. A task that sends its next request as soon as a
        reply is in (without yielding) keeps the bus: the registers of one setpoint go whole."""
        while self.busy:
            await asyncio.sleep_ms(_WAIT_MS)
        self.busy = True
        try:
            self._start(addr, fc, reg, v, need)
            while not self.step():
                await asyncio.sleep_ms(_WAIT_MS)
        finally:
            self.busy = False

    async def write_register(self, addr, reg, value):
        """Write a 16-bit value (negative values as two's complement) and check the echo."""
        if not -0x8000 <= value <= 0xFFFF:
            raise FrameError("modbus write out of range")
        await self._transact(addr, _FC_WRITE, reg, value & 0xFFFF, 8)
        self._echo()

    async def write_registers(self, addr, reg, hi, lo):
        """Write two registers in one request (function 16: a 32-bit point, high word ``hi``
        first as SunSpec orders it; negative words as two's complement) and check the reply's
        start register and quantity."""
        if not (-0x8000 <= hi <= 0xFFFF and -0x8000 <= lo <= 0xFFFF):
            raise FrameError("modbus write out of range")
        while self.busy:  # the request's values go in once the bus is this task's
            await asyncio.sleep_ms(_WAIT_MS)
        t = self._tx
        t[6], t[7], t[8], t[9], t[10] = 4, (hi >> 8) & 0xFF, hi & 0xFF, (lo >> 8) & 0xFF, lo & 0xFF
        await self._transact(addr, _FC_WRITE_N, reg, 2, 8)  # takes the bus at once: no yield before
        self._echo()

    def _echo(self):
        """The reply to a write (address, function and CRC checked by ``step()``) repeats the
        request's bytes 2-5: register and value (function 6), start register and quantity (16)."""
        rx, t = self._rx, self._tx
        if rx[2] != t[2] or rx[3] != t[3] or rx[4] != t[4] or rx[5] != t[5]:
            raise FrameError("modbus reply does not echo the write")

    async def read_register(self, addr, reg, signed=False):
        """Read one holding register: its 16-bit value (two's complement if ``signed``)."""
        await self._transact(addr, _FC_READ, reg, 1, _READ_REPLY_LEN)
        return self._value(signed)

    def _value(self, signed):
        rx = self._rx
        if rx[2] != 2:
            raise FrameError("modbus read reply with %d data bytes, not 2" % rx[2])
        v = (rx[3] << 8) | rx[4]
        return v - 0x10000 if signed and v & 0x8000 else v


async def battery_state(master, bat):
    """(state of charge in per-mille, power in W, + charging) of the battery inverter, read from
    the holding registers named in the board file's [battery] section (compact form):

    * ``soc = {addr, reg, full}``: unsigned; ``full`` is what the register reads at 100 % (100:
      whole percent, 1000: 0.1 % steps, 255: a 0..255 scale), so per-mille = value * 1000 / full,
      rounded down and capped at 1000;
    * ``power = {addr, reg, scale_w}``: signed 16-bit, W per register unit; a negative
      ``scale_w`` for an inverter that counts discharging as positive.

    None for the pair when the section names neither register; None for a value whose register
    is not named or did not answer (timeout, CRC, exception): a reading is never held up by it.
    """
    soc_reg = bat.get("soc")
    p_reg = bat.get("power")
    if not soc_reg and not p_reg:
        return None
    soc = p = None
    if soc_reg:
        try:
            v = await master.read_register(soc_reg["addr"], soc_reg["reg"])
            soc = min(v * 1000 // soc_reg["full"], 1000)
        except DriverError:
            pass
    if p_reg:
        try:
            p = await master.read_register(p_reg["addr"], p_reg["reg"], True) * p_reg.get("scale_w", 1)
        except DriverError:
            pass
    return soc, p
