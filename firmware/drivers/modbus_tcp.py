# Modbus TCP client for inverters on the home LAN (SunSpec over Modbus TCP: Fronius, SMA,
# SolarEdge, Huawei ...), with the interface of drivers/modbus_rtu.py ModbusMaster: write single
# holding register (function 0x06, the echo checked), write two registers in one request
# (function 0x10, the reply's start register and quantity checked) and read one holding register
# (function 0x03); the board file's unit ids (``sunspec = N``, ``addr``) go in the MBAP header's
# unit id.
#
# One connection to a numeric IPv4 address (no DNS on a board), opened at the first transaction
# and kept open between them. Every transaction, connect included, is bounded by ``timeout_ms``
# and awaited (the event loop runs meanwhile). After a timeout, a reset or a malformed reply the
# connection is closed and the next transaction opens a new one, so an inverter that restarted
# is found again. A connection kept from an earlier transaction that the device has closed
# meanwhile (nothing of the reply came, the connection ended) is reopened at once and the
# request sent once more on it: a read and a write of given values are idempotent.
#
# Errors as on the RTU bus: BusTimeout (no answer in time, connection refused or lost),
# FrameError (wrong transaction id, protocol id, unit, function, length; a truncated reply; a
# write not echoed, or one of two registers answered with another register or quantity),
# ModbusError (an exception reply, its code in ``code_value``). Only boards whose board file
# gives ``[modbus] host`` import this module.
try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


import asyncio

from errors import BusTimeout, FrameError, ModbusError

# True for mypy only (pyproject: always_true). A const: a board's compiler drops `if TYPING:`
# blocks whole, so the names they import cost no heap there.
TYPING = const(0)
if TYPING:
    from typing import Any  # noqa: F401  (used in type comments)

try:
    from asyncio import sleep_ms, wait_for_ms
except ImportError:  # CPython (the simulator)

    def sleep_ms(ms):  # type: ignore[no-redef,misc]
        return asyncio.sleep(ms / 1000)

    def wait_for_ms(aw, ms):  # type: ignore[no-redef,misc]
        return asyncio.wait_for(aw, ms / 1000)


_FC_READ = const(0x03)
_FC_WRITE = const(0x06)
_FC_WRITE_N = const(0x10)
_FC_ERROR = const(0x80)
_MBAP = const(7)  # transaction id, protocol id 0, length (unit id and PDU), unit id
_MAX_LEN = const(6)  # the longest reply expected: unit + a write's (function, register, value)
_WAIT_MS = const(5)  # between checks while another task's transaction is under way


class ModbusTcp:
    def __init__(self, host, port=502, timeout_ms=1000):
        self.host = host
        self.port = port
        self.timeout_ms = timeout_ms
        self._r = None  # type: Any
        self._w = None  # type: Any
        self._tid = 0
        # the request: MBAP header, function, register, value (12 bytes; functions 3, 6), or
        # quantity 2, byte count 4 and two values (17 bytes; function 16)
        self._tx = bytearray(17)
        self._t12 = memoryview(self._tx)[:12]
        self.busy = False  # a transaction is under way (its task waits for the reply)

    def close(self):
        w = self._w
        self._r = self._w = None
        if w is not None:
            try:
                w.close()
                # MicroPython's Stream.close() leaves the socket open (wait_closed() closes it)
                s = getattr(w, "s", None)
                if s is not None:
                    s.close()
            except OSError:
                pass

    async def _ask(self):
        """Send the request, return the reply's header and PDU. OSError or EOFError only when
        nothing of the reply came; FrameError when it came malformed or cut off."""
        r, w = self._r, self._w
        t = self._tx
        w.write(t if t[5] > 6 else self._t12)  # by the MBAP length
        await w.drain()
        h = await r.read(_MBAP)
        if not h:
            raise EOFError
        try:
            if len(h) < _MBAP:
                h += await r.readexactly(_MBAP - len(h))
            n = (h[4] << 8) | h[5]
            if not 3 <= n <= _MAX_LEN or h[2] or h[3]:
                raise FrameError("modbus tcp reply: protocol %d, length %d" % ((h[2] << 8) | h[3], n))
            return h, await r.readexactly(n - 1)
        except (OSError, EOFError):
            raise FrameError("modbus tcp reply truncated") from None

    async def _io(self):
        fresh = self._w is None
        if fresh:
            self._r, self._w = await asyncio.open_connection(self.host, self.port)
        try:
            return await self._ask()
        except (OSError, EOFError):
            if fresh:
                raise
        # the device closed the connection since the last transaction (it restarted, or it drops
        # idle clients): the request did not reach it; once more on a new connection
        self.close()
        self._r, self._w = await asyncio.open_connection(self.host, self.port)
        return await self._ask()

    async def _transact(self, unit, fc, reg, v):
        """Send ``unit fc reg v`` (function 16: ``v`` 2, then the byte count and the values that
        ``write_registers`` put in the request); the reply's PDU (function, data), checked
        against the request. One transaction at a time, as on the RTU bus: the readings task
        (battery state) and the order path (setpoints) share the connection, and a task that
        sends its next request as soon as a reply is in (without yielding) keeps it: the
        registers of one setpoint go whole."""
        if not 1 <= unit <= 247 or not 0 <= reg <= 0xFFFF:
            raise FrameError("modbus address or register out of range")
        while self.busy:
            await sleep_ms(_WAIT_MS)
        self.busy = True
        try:
            self._tid = tid = (self._tid + 1) & 0xFFFF
            t = self._tx
            n = 11 if fc == _FC_WRITE_N else 6  # the MBAP length: unit id and PDU
            t[0], t[1], t[2], t[3], t[4], t[5] = tid >> 8, tid & 0xFF, 0, 0, 0, n
            t[6], t[7], t[8], t[9], t[10], t[11] = unit, fc, reg >> 8, reg & 0xFF, v >> 8, v & 0xFF
            try:
                got = await wait_for_ms(self._io(), self.timeout_ms)  # type: Any
            except asyncio.TimeoutError:  # first: on CPython it is an OSError
                self.close()
                raise BusTimeout("modbus tcp %s unit %d did not answer" % (self.host, unit)) from None
            except (OSError, EOFError) as e:
                self.close()
                raise BusTimeout("modbus tcp %s: no connection (%r)" % (self.host, e)) from None
            except BaseException:  # FrameError, or cancelled: the connection is out of step
                self.close()
                raise
            h, pdu = got
            got = (h[0] << 8) | h[1]
            if got != tid or h[6] != unit:
                self.close()  # a reply to another request: the stream is out of step
                raise FrameError(
                    "modbus tcp reply to transaction %d unit %d, not %d unit %d" % (got, h[6], tid, unit)
                )
            if pdu[0] == fc | _FC_ERROR and len(pdu) == 2:
                raise ModbusError("modbus exception", pdu[1])
            if pdu[0] != fc:
                self.close()
                raise FrameError("modbus reply to function %d, not %d" % (pdu[0], fc))
            return pdu
        finally:
            self.busy = False

    async def write_register(self, unit, reg, value):
        """Write a 16-bit value (negative values as two's complement) and check the echo."""
        if not -0x8000 <= value <= 0xFFFF:
            raise FrameError("modbus write out of range")
        self._echo(await self._transact(unit, _FC_WRITE, reg, value & 0xFFFF))

    async def write_registers(self, unit, reg, hi, lo):
        """Write two registers in one request (function 16: a 32-bit point, high word ``hi``
        first as SunSpec orders it; negative words as two's complement) and check the reply's
        start register and quantity."""
        if not (-0x8000 <= hi <= 0xFFFF and -0x8000 <= lo <= 0xFFFF):
            raise FrameError("modbus write out of range")
        while self.busy:  # the request's values go in once the connection is this task's
            await sleep_ms(_WAIT_MS)
        t = self._tx
        t[12], t[13], t[14], t[15], t[16] = 4, (hi >> 8) & 0xFF, hi & 0xFF, (lo >> 8) & 0xFF, lo & 0xFF
        self._echo(await self._transact(unit, _FC_WRITE_N, reg, 2))  # takes it at once: no yield before

    def _echo(self, pdu):
        """The reply to a write repeats the request's register and value (function 6), or start
        register and quantity (16)."""
        t = self._tx
        if len(pdu) != 5 or pdu[1] != t[8] or pdu[2] != t[9] or pdu[3] != t[10] or pdu[4] != t[11]:
            self.close()
            raise FrameError("modbus reply does not echo the write")

    async def read_register(self, unit, reg, signed=False):
        """Read one holding register: its 16-bit value (two's complement if ``signed``)."""
        pdu = await self._transact(unit, _FC_READ, reg, 1)
        if len(pdu) != 4 or pdu[1] != 2:
            self.close()
            raise FrameError("modbus read reply with %d data bytes, not 2" % (len(pdu) - 2))
        v = (pdu[2] << 8) | pdu[3]
        return v - 0x10000 if signed and v & 0x8000 else v
