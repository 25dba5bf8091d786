"""Fake PZEM-004T v3.0 behind a UART: parses Modbus RTU requests, answers from a state.

Each ``write()`` is taken as one complete request frame (a real bus delimits frames by
3.5 character times of silence). Like a real slave, the fake stays silent on a request with
a bad CRC or for another address; it answers function 0x04 (input registers 0..9) and
0x42 (reset energy) and reports illegal function/address as Modbus exceptions.

Simulated state, native resolution (set directly or via ``set_state``):
``voltage_dv`` (0.1 V), ``current_ma``, ``power_dw`` (0.1 W), ``energy_wh``,
``frequency_dhz`` (0.1 Hz), ``pf_pct`` (0.01), ``alarm``.

Faults: set ``fault`` to one of the FAULT_* values; ``fault_count`` is how many requests it
hits (-1: until cleared). ``reply_override`` (bytes) is sent verbatim, once, instead of the
next reply (line noise, frames of other devices).
"""

from drivers.crc16 import crc16

FAULT_NONE = 0
FAULT_NO_REPLY = 1
FAULT_BAD_CRC = 2
FAULT_EXCEPTION = 3  # answer with Modbus exception ``exception_code``
FAULT_TRUNCATE = 4  # send only the first half of the reply
FAULT_WRONG_ADDRESS = 5  # reply carries another slave address (valid CRC)
FAULT_WRONG_FUNCTION = 6  # reply carries another function code (valid CRC)

ADDR_GENERAL = 0xF8


class FakePzemUart:
    def __init__(self, address=0x01):
        self.address = address
        self.voltage_dv = 2300
        self.current_ma = 0
        self.power_dw = 0
        self.energy_wh = 0
        self.frequency_dhz = 500
        self.pf_pct = 100
        self.alarm = False
        self._energy_frac_mwh = 0
        self.fault = FAULT_NONE
        self.fault_count = -1
        self.exception_code = 0x04
        self.reply_override = None  # bytes to send instead of the next computed reply
        self.requests = 0  # frames received (any)
        self.replies = 0  # replies sent
        self.resets = 0
        self.last_request = bytearray(16)  # copy of the last frame received
        self.last_request_len = 0
        self._out = bytearray(32)
        self._olen = 0
        self._opos = 0

    # --- simulator side -------------------------------------------------------------------

    def set_state(
        self,
        voltage_mv=None,
        current_ma=None,
        power_mw=None,
        energy_mwh=None,
        frequency_mhz=None,
        pf_pct=None,
        alarm=None,
    ):
        """Set the simulated measurements in project units (rounded to the PZEM's
        resolution). Power and energy of a PZEM are unsigned: negative values are refused."""
        if voltage_mv is not None:
            self.voltage_dv = (voltage_mv + 50) // 100
        if current_ma is not None:
            self.current_ma = current_ma
        if power_mw is not None:
            if power_mw < 0:
                raise ValueError("PZEM power is unsigned")
            self.power_dw = (power_mw + 50) // 100
        if energy_mwh is not None:
            if energy_mwh < 0:
                raise ValueError("PZEM energy is unsigned")
            self.energy_wh = energy_mwh // 1000
            self._energy_frac_mwh = energy_mwh % 1000
        if frequency_mhz is not None:
            self.frequency_dhz = (frequency_mhz + 50) // 100
        if pf_pct is not None:
            self.pf_pct = pf_pct
        if alarm is not None:
            self.alarm = bool(alarm)

    def physics(self, p_w, import_mwh, export_mwh):
        """Physics: net power ``p_w`` (+ import) now, energy since the last feed. The PZEM counts
        imported energy only (it cannot tell the direction)."""
        self.set_state(power_mw=p_w * 1000 if p_w > 0 else 0, voltage_mv=230_000)
        self.add_energy_mwh(import_mwh)

    def add_energy_mwh(self, mwh):
        """Integrate consumed energy; sub-Wh parts are carried, not lost."""
        if mwh < 0:
            raise ValueError("PZEM counts consumed energy only")
        f = self._energy_frac_mwh + mwh
        self.energy_wh = (self.energy_wh + f // 1000) & 0xFFFFFFFF
        self._energy_frac_mwh = f % 1000

    # --- UART side ------------------------------------------------------------------------

    def any(self):
        return self._olen - self._opos

    def readinto(self, buf, n=-1):
        if n < 0 or n > len(buf):
            n = len(buf)
        avail = self._olen - self._opos
        if n > avail:
            n = avail
        if n <= 0:
            return None
        out = self._out
        p = self._opos
        for i in range(n):
            buf[i] = out[p + i]
        self._opos = p + n
        return n

    def write(self, buf):
        n = len(buf)
        self.requests += 1
        m = n if n < 16 else 16
        for i in range(m):
            self.last_request[i] = buf[i]
        self.last_request_len = m
        if self.reply_override is not None:
            raw = self.reply_override
            self.reply_override = None
            k = len(raw) if len(raw) < len(self._out) else len(self._out)
            for i in range(k):
                self._out[i] = raw[i]
            self._olen = k
            self._opos = 0
            return n
        self._handle(buf, n)
        return n

    # --- Modbus slave ---------------------------------------------------------------------

    def _reg(self, k):
        if k == 0:
            return self.voltage_dv & 0xFFFF
        if k == 1:
            return self.current_ma & 0xFFFF
        if k == 2:
            return (self.current_ma >> 16) & 0xFFFF
        if k == 3:
            return self.power_dw & 0xFFFF
        if k == 4:
            return (self.power_dw >> 16) & 0xFFFF
        if k == 5:
            return self.energy_wh & 0xFFFF
        if k == 6:
            return (self.energy_wh >> 16) & 0xFFFF
        if k == 7:
            return self.frequency_dhz & 0xFFFF
        if k == 8:
            return self.pf_pct & 0xFFFF
        return 0xFFFF if self.alarm else 0x0000

    def _take_fault(self):
        f = self.fault
        if f == FAULT_NONE:
            return FAULT_NONE
        if self.fault_count == 0:
            self.fault = FAULT_NONE
            return FAULT_NONE
        if self.fault_count > 0:
            self.fault_count -= 1
        return f

    def _handle(self, req, n):
        self._olen = 0
        self._opos = 0
        if n < 4:
            return
        c = crc16(req, 0xFFFF, 0, n - 2)
        if req[n - 2] != (c & 0xFF) or req[n - 1] != (c >> 8):
            return  # a slave ignores corrupted frames
        if req[0] != self.address and req[0] != ADDR_GENERAL:
            return
        fault = self._take_fault()
        if fault == FAULT_NO_REPLY:
            return
        fc = req[1]
        out = self._out
        out[0] = self.address
        if fault == FAULT_EXCEPTION:
            self._exception(fc, self.exception_code)
        elif fc == 0x04 and n == 8:
            start = (req[2] << 8) | req[3]
            count = (req[4] << 8) | req[5]
            if count < 1 or start + count > 10:
                self._exception(fc, 0x02)
            else:
                out[1] = 0x04
                out[2] = 2 * count
                p = 3
                for k in range(start, start + count):
                    v = self._reg(k)
                    out[p] = v >> 8
                    out[p + 1] = v & 0xFF
                    p += 2
                self._olen = p
        elif fc == 0x42 and n == 4:
            self.energy_wh = 0
            self._energy_frac_mwh = 0
            self.resets += 1
            out[1] = 0x42
            self._olen = 2
        else:
            self._exception(fc, 0x01)
        if fault == FAULT_WRONG_ADDRESS:
            out[0] = (self.address % 0xF7) + 1
        elif fault == FAULT_WRONG_FUNCTION:
            out[1] = 0x03
        p = self._olen
        c = crc16(out, 0xFFFF, 0, p)
        out[p] = c & 0xFF
        out[p + 1] = c >> 8
        self._olen = p + 2
        if fault == FAULT_BAD_CRC:
            out[p] ^= 0x5A
        elif fault == FAULT_TRUNCATE:
            self._olen = (p + 2) // 2
        self.replies += 1

    def _exception(self, fc, code):
        out = self._out
        out[1] = (fc | 0x80) & 0xFF
        out[2] = code
        self._olen = 3


def device():
    return FakePzemUart()
