"""Fake DSMR 5 P1 port: emits telegrams with a correct CRC from simulated registers.

UART-like (``any``/``readinto``/``write``); bytes queued by ``emit()`` are read back in
order. Simulated state, integer units: ``import_t1_wh``, ``import_t2_wh``,
``export_t1_wh``, ``export_t2_wh``, ``power_import_w``, ``power_export_w``,
``voltage_mv`` / ``current_ma`` / ``power_import_l_w`` / ``power_export_l_w`` (3-element
lists, L1..L3), ``tariff`` (1 or 2), ``timestamp`` ("YYMMDDhhmmssX"), ``equipment_id``
(ASCII; hex-coded on the wire like a real meter), ``header``.

``emit(fault)`` queues one telegram, intact or with a fault: FAULT_CRC (wrong CRC digits),
FAULT_BODY (one digit changed after the CRC was computed), FAULT_TRUNCATE (cut before '!'),
FAULT_OVERSIZE (padded past ``oversize_to`` bytes), FAULT_NO_CRC (DSMR 3 style '!'),
FAULT_GARBAGE (line noise in front of the telegram, no '/' in it). ``feed(data)`` queues raw
bytes. Building telegrams allocates (simulator side); the UART side does not.
"""

from drivers.crc16 import crc16

FAULT_NONE = 0
FAULT_CRC = 1
FAULT_BODY = 2
FAULT_TRUNCATE = 3
FAULT_OVERSIZE = 4
FAULT_NO_CRC = 5
FAULT_GARBAGE = 6


def _kwh(wh):
    return "%06d.%03d" % (wh // 1000, wh % 1000)


def _kw(w):
    return "%02d.%03d" % (w // 1000, w % 1000)


class FakeP1Port:
    def __init__(self):
        self._tbuf = bytearray(1200)
        self.header = "ISk5\\2MT382-1000"
        self.timestamp = "170102192002W"
        self.equipment_id = "K8EG004046395507"
        self.import_t1_wh = 0
        self.import_t2_wh = 0
        self.export_t1_wh = 0
        self.export_t2_wh = 0
        self.power_import_w = 0
        self.power_export_w = 0
        self.power_import_l_w = [0, 0, 0]
        self.power_export_l_w = [0, 0, 0]
        self.voltage_mv = [230000, 230000, 230000]
        self.current_ma = [0, 0, 0]
        self.tariff = 2
        self.oversize_to = 2100
        self._imp_frac = 0
        self._exp_frac = 0
        self._pending = []  # queued byte strings, oldest first
        self._cur = b""
        self._cpos = 0
        self._avail = 0

    # --- simulator side -------------------------------------------------------------------

    def physics(self, p_w, import_mwh, export_mwh):
        """Physics: net power ``p_w`` (+ import) now, energy since the last feed; sends a telegram."""
        self.add_energy_mwh(import_mwh=import_mwh, export_mwh=export_mwh)
        self.power_import_w = p_w if p_w > 0 else 0
        self.power_export_w = -p_w if p_w < 0 else 0
        self.emit()

    def add_energy_mwh(self, import_mwh=0, export_mwh=0):
        """Integrate energy into the register of the current tariff; sub-Wh parts carried."""
        f = self._imp_frac + import_mwh
        wh = f // 1000
        self._imp_frac = f % 1000
        if self.tariff == 1:
            self.import_t1_wh += wh
        else:
            self.import_t2_wh += wh
        f = self._exp_frac + export_mwh
        wh = f // 1000
        self._exp_frac = f % 1000
        if self.tariff == 1:
            self.export_t1_wh += wh
        else:
            self.export_t2_wh += wh

    def telegram(self, fault=FAULT_NONE):
        """One telegram as a bytearray (with the fault applied)."""
        eid = "".join("%02X" % b for b in self.equipment_id.encode())
        lines = [
            "/" + self.header,
            "",
            "1-3:0.2.8(50)",
            "0-0:1.0.0(%s)" % self.timestamp,
            "0-0:96.1.1(%s)" % eid,
            "1-0:1.8.1(%s*kWh)" % _kwh(self.import_t1_wh),
            "1-0:1.8.2(%s*kWh)" % _kwh(self.import_t2_wh),
            "1-0:2.8.1(%s*kWh)" % _kwh(self.export_t1_wh),
            "1-0:2.8.2(%s*kWh)" % _kwh(self.export_t2_wh),
            "0-0:96.14.0(%04d)" % self.tariff,
            "1-0:1.7.0(%s*kW)" % _kw(self.power_import_w),
            "1-0:2.7.0(%s*kW)" % _kw(self.power_export_w),
            "0-0:96.7.21(00013)",
            "0-0:96.7.9(00000)",
            "1-0:99.97.0(0)(0-0:96.7.19)",
            "1-0:32.32.0(00000)",
            "0-0:96.13.0()",
        ]
        for k, code in enumerate((32, 52, 72)):
            v = self.voltage_mv[k]
            lines.append("1-0:%d.7.0(%03d.%d*V)" % (code, v // 1000, (v % 1000) // 100))
        for k, code in enumerate((31, 51, 71)):
            lines.append("1-0:%d.7.0(%03d*A)" % (code, self.current_ma[k] // 1000))
        for k, code in enumerate((21, 41, 61)):
            lines.append("1-0:%d.7.0(%s*kW)" % (code, _kw(self.power_import_l_w[k])))
        for k, code in enumerate((22, 42, 62)):
            lines.append("1-0:%d.7.0(%s*kW)" % (code, _kw(self.power_export_l_w[k])))
        lines.append("0-1:24.1.0(003)")
        lines.append("0-1:24.2.1(170102161005W)(00000.107*m3)")
        # into one preallocated buffer: growing a bytearray line by line fragments a small heap
        need = 2 * len(lines)
        for ln in lines:
            need += len(ln)
        if fault == FAULT_OVERSIZE:
            need = max(need, self.oversize_to + 80)
        if len(self._tbuf) < need + 16:
            self._tbuf = bytearray(need + 16)
        buf = self._tbuf
        n = 0
        for ln in lines:
            b = ln.encode()
            buf[n : n + len(b)] = b
            n += len(b)
            buf[n : n + 2] = b"\r\n"
            n += 2
        out = bytearray(buf[:n])
        if fault == FAULT_OVERSIZE:
            pad = b"0-0:96.13.0(" + b"3031" * 16 + b")\r\n"
            while len(out) < self.oversize_to:
                out += pad
        out += b"!"
        if fault == FAULT_TRUNCATE:
            return bytes(out[: len(out) // 2])
        if fault == FAULT_NO_CRC:
            out += b"\r\n"
            return out
        crc = crc16(out, 0)
        if fault == FAULT_CRC:
            crc ^= 0x0101
        if fault == FAULT_BODY:
            i = out.find(b"1.8.1(") + 6
            out[i] = 0x30 + ((out[i] - 0x30 + 1) % 10)
        out += ("%04X\r\n" % crc).encode()
        if fault == FAULT_GARBAGE:
            return b"\x00\xff\x13garbage!1234\r\n\x7f" + out
        return out

    def emit(self, fault=FAULT_NONE):
        """Queue one telegram for the reader; returns its bytes."""
        t = self.telegram(fault)
        self.feed(t)
        return t

    def feed(self, data):
        """Queue raw bytes (a bytes/bytearray is queued as is: do not modify it after)."""
        if data:
            if not isinstance(data, (bytes, bytearray)):
                data = bytes(data)
            self._pending.append(data)
            self._avail += len(data)

    # --- UART side ------------------------------------------------------------------------

    def any(self):
        return self._avail

    def readinto(self, buf, n=-1):
        if n < 0 or n > len(buf):
            n = len(buf)
        if n > self._avail:
            n = self._avail
        if n <= 0:
            return None
        i = 0
        while i < n:
            cur = self._cur
            p = self._cpos
            if p >= len(cur):
                self._cur = self._pending.pop(0)
                self._cpos = 0
                continue
            k = len(cur) - p
            if k > n - i:
                k = n - i
            for j in range(k):
                buf[i + j] = cur[p + j]
            i += k
            self._cpos = p + k
        self._avail -= n
        return n

    def write(self, buf):
        return len(buf)  # P1 is send-only; the request line is not modelled


def device():
    return FakeP1Port()
