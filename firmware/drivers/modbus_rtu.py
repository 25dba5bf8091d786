# Modbus RTU master for actuator setpoints: write single holding register (function 0x06) to a
# battery inverter, PV inverter or wallbox on an RS-485 UART. The slave echoes the request;
# an exception reply (function | 0x80, code) raises ModbusError. No retries here.
try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


import hal
from drivers.crc16 import INIT_MODBUS, crc16
from errors import BusTimeout, CrcError, FrameError, ModbusError

_FC_WRITE = const(0x06)
_FC_ERROR = const(0x80)


class ModbusMaster:
    def __init__(self, uart, timeout_ms=200, clock=None):
        self._uart = uart
        self.timeout_ms = timeout_ms
        self._clock = clock if clock is not None else hal
        self._tx = bytearray(8)
        self._rx = bytearray(8)
        self._one = bytearray(1)

    def write_register(self, addr, reg, value):
        """Write a 16-bit value (negative values as two's complement) and check the echo."""
        if not 1 <= addr <= 247 or not 0 <= reg <= 0xFFFF or not -0x8000 <= value <= 0xFFFF:
            raise FrameError("modbus write out of range")
        v = value & 0xFFFF
        t = self._tx
        t[0], t[1], t[2], t[3], t[4], t[5] = addr, _FC_WRITE, reg >> 8, reg & 0xFF, v >> 8, v & 0xFF
        c = crc16(t, INIT_MODBUS, 0, 6)
        t[6], t[7] = c & 0xFF, c >> 8
        u = self._uart
        while u.any():
            u.readinto(self._rx)
        u.write(t)
        rx, one, clock = self._rx, self._one, self._clock
        start = clock.ticks_ms()
        pos, need = 0, 8
        while pos < need:
            if u.any() and u.readinto(one, 1):
                rx[pos] = one[0]
                pos += 1
                if pos == 2 and rx[1] == _FC_WRITE | _FC_ERROR:
                    need = 5
                continue
            if clock.ticks_diff(clock.ticks_ms(), start) >= self.timeout_ms:
                raise BusTimeout("modbus slave %d did not answer" % addr)
            clock.sleep_ms(1)
        c = crc16(rx, INIT_MODBUS, 0, need - 2)
        if rx[need - 2] != c & 0xFF or rx[need - 1] != c >> 8:
            raise CrcError("modbus reply CRC mismatch")
        if rx[1] == _FC_WRITE | _FC_ERROR:
            raise ModbusError("modbus exception", rx[2])
        if rx != t:
            raise FrameError("modbus reply does not echo the write")
