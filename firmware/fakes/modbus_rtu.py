# A fake Modbus RTU slave on a fake UART: answers function 0x06 writes with the echo, function 0x10
# writes (write multiple registers) with their start register and quantity, and function 0x03
# reads of holding registers with their values (checking address and CRC like a real
# device), keeps the register file (``regs``: register -> value, negative values for signed
# registers), and can refuse registers or stay silent.
from drivers.crc16 import INIT_MODBUS, crc16


class FakeModbusSlave:
    def __init__(self, addr=1, writable=None):
        self.addr = addr
        self.regs = {}
        self.writable = writable  # None: any register; else a set of writable registers
        self.silent = False
        self._tx = b""  # reply bytes not yet read by the master
        self._pos = 0
        self.writes = 0
        self.reads = 0

    # UART-like side seen by the master. Each write() is one whole request frame (a real bus
    # delimits frames by 3.5 character times of silence), as long as its function makes it: 8
    # bytes, 9 + the byte count for function 16; a frame of another length is not answered.
    def write(self, buf):
        n = len(buf)
        if n == (9 + buf[6] if n > 6 and buf[1] == 0x10 else 8):
            self._answer(bytes(buf))
        return n

    def any(self):
        return len(self._tx) - self._pos

    def readinto(self, buf, n=None):
        n = min(len(buf) if n is None else n, self.any())
        if not n:
            return None
        buf[:n] = self._tx[self._pos : self._pos + n]
        self._pos += n
        if self._pos == len(self._tx):
            self._tx = b""
            self._pos = 0
        return n

    def _answer(self, f):
        n = len(f) - 2
        c = crc16(f, INIT_MODBUS, 0, n)
        if f[n] != c & 0xFF or f[n + 1] != c >> 8 or f[0] != self.addr or self.silent:
            return  # a real slave ignores frames with a bad CRC or another address
        fc = f[1]
        reg = (f[2] << 8) | f[3]
        v = (f[4] << 8) | f[5]
        if fc == 0x03:
            return self._read(reg, v)
        if fc == 0x10:  # v registers, their values from byte 7
            if not 1 <= v <= 123 or f[6] != 2 * v:
                return self._error(fc, 3)  # illegal data value: quantity and byte count disagree
            d = 7
        elif fc == 0x06:  # one register, its value in bytes 4-5
            d, v = 4, 1
        else:
            return self._error(fc, 1)
        w = self.writable
        for k in range(reg, reg + v):
            if w is not None and k not in w:
                return self._error(fc, 2)  # nothing is written of a refused request
        for i in range(v):
            x = (f[d + 2 * i] << 8) | f[d + 1 + 2 * i]
            self.regs[reg + i] = x - 0x10000 if x & 0x8000 else x
        self.writes += 1
        if fc == 0x06:
            self._tx = f
        else:
            self._reply(bytearray(f[:6]))

    def _read(self, reg, count):
        if not 1 <= count <= 125:
            return self._error(0x03, 3)  # illegal data value
        r = bytearray((self.addr, 0x03, 2 * count))
        for k in range(reg, reg + count):
            if k not in self.regs:
                return self._error(0x03, 2)  # illegal data address: nothing mapped there
            v = self.regs[k] & 0xFFFF
            r.append(v >> 8)
            r.append(v & 0xFF)
        self.reads += 1
        self._reply(r)

    def _error(self, fc, code):
        self._reply(bytearray((self.addr, fc | 0x80, code)))

    def _reply(self, r):
        c = crc16(r, INIT_MODBUS, 0, len(r))
        r.append(c & 0xFF)
        r.append(c >> 8)
        self._tx = bytes(r)
