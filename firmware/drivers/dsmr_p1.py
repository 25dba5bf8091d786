"""DSMR 4/5 P1 port reader (Dutch/Belgian smart meters), 115200 8N1 for DSMR 5.

A telegram runs from ``/`` to ``!XXXX\\r\\n``, where XXXX is the CRC-16/ARC of every byte
from ``/`` to ``!`` inclusive, as four hex digits. DSMR 5 meters send one every second,
DSMR 4 every ten seconds. The reader collects bytes into a preallocated buffer, checks the
CRC, and decodes the OBIS objects below into integer fields; nothing is parsed as a float.

=============  ========================================  ==============================
OBIS           meaning                                   field (unit)
=============  ========================================  ==============================
1-0:1.8.1/2    energy delivered to client, tariff 1/2    IMPORT_T1/T2 (Wh; 0.001 kWh)
1-0:2.8.1/2    energy delivered by client, tariff 1/2    EXPORT_T1/T2 (Wh)
1-0:1.7.0      actual power delivered (+P)               POWER_IMPORT (W; 0.001 kW)
1-0:2.7.0      actual power received (-P)                POWER_EXPORT (W)
1-0:21/41/61.7.0  +P of L1/L2/L3                         POWER_IMPORT_L1..L3 (W)
1-0:22/42/62.7.0  -P of L1/L2/L3                         POWER_EXPORT_L1..L3 (W)
1-0:32/52/72.7.0  voltage L1/L2/L3                       VOLTAGE_L1..L3 (mV)
1-0:31/51/71.7.0  current L1/L2/L3                       CURRENT_L1..L3 (mA)
0-0:96.14.0    tariff indicator                          TARIFF
0-0:1.0.0      timestamp YYMMDDhhmmssX (X: S summer, W)  ``timestamp`` (13 ASCII bytes)
0-0:96.1.1     equipment identifier (hex-coded ASCII)    ``equipment_id`` (ASCII hex)
=============  ========================================  ==============================

Meter readings have Wh resolution on the wire, so they are kept in Wh (small ints up to
999,999,999 Wh); ``import_mwh()``/``export_mwh()`` convert for reporting. Values printed in
base units by some meters (``*Wh``, ``*W``) are accepted as well as ``*kWh``/``*kW``.

Faults never crash the reader and never touch the last good values: a bad CRC raises
``CrcError``; a telegram longer than the buffer ``OversizeError``; a telegram cut short by
a new ``/``, a missing CRC or an unparsable value ``FrameError``. After any of them the
reader is already hunting for (or collecting) the next telegram: call ``poll()`` again.

A P1 port only ever sends: one that goes quiet (cable pulled, P1 disabled, meter fault) would
leave the last values standing. ``meter_read()`` therefore raises ``DriverError`` once no valid
telegram has arrived for ``stale_ms`` (the board file's ``stale_s``, default 30 s: three times
a DSMR 4's 10 s period), measured on the driver's clock (``hal`` ticks unless one is given).

Polling path: ``poll()`` reads what the UART holds into a preallocated chunk, feeds it byte
by byte into the telegram buffer and, when a telegram completes, checks and parses it in
place (no slicing, no strings): it does not allocate on success.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


from array import array

import hal
from drivers.crc16 import crc16
from errors import CrcError, DriverError, FrameError, OversizeError

DEFAULT_BUFSIZE = const(2048)
DEFAULT_STALE_S = const(30)  # 3 x a DSMR 4's telegram period (DSMR 5: 1 s)
_CHUNK = const(64)

_IDLE = const(0)  # hunting for '/'
_BODY = const(1)  # collecting up to '!'
_CRC = const(2)  # collecting the CRC line after '!'

_SLASH = const(0x2F)
_BANG = const(0x21)
_LF = const(0x0A)
_CR = const(0x0D)
_LPAR = const(0x28)
_RPAR = const(0x29)
_STAR = const(0x2A)
_DOT = const(0x2E)
_ZERO = const(0x30)
_LOWER_K = const(0x6B)

_MAX_VALUE = const(100_000_000)  # guard: results stay below 10**9 (a small int everywhere)

# Field indices of ``P1Reader.values``.
IMPORT_T1 = const(0)
IMPORT_T2 = const(1)
EXPORT_T1 = const(2)
EXPORT_T2 = const(3)
POWER_IMPORT = const(4)
POWER_EXPORT = const(5)
POWER_IMPORT_L1 = const(6)
POWER_IMPORT_L2 = const(7)
POWER_IMPORT_L3 = const(8)
POWER_EXPORT_L1 = const(9)
POWER_EXPORT_L2 = const(10)
POWER_EXPORT_L3 = const(11)
VOLTAGE_L1 = const(12)
VOLTAGE_L2 = const(13)
VOLTAGE_L3 = const(14)
CURRENT_L1 = const(15)
CURRENT_L2 = const(16)
CURRENT_L3 = const(17)
TARIFF = const(18)
N_FIELDS = const(19)

# Bits of ``P1Reader.present`` beyond the value fields.
HAVE_TIMESTAMP = const(1 << 19)
HAVE_EQUIPMENT_ID = const(1 << 20)
_HAVE_ENERGY = const(0x0F)  # IMPORT_T1, IMPORT_T2, EXPORT_T1, EXPORT_T2

TIMESTAMP_LEN = const(13)
EQUIPMENT_ID_MAX = const(96)

# kind of a field: how the printed value maps to the integer unit
_K_KILO = const(0)  # printed in k<unit> (or <unit>): stored in <unit> (Wh, W)
_K_MILLI = const(1)  # printed in V/A: stored in mV/mA
_K_PLAIN = const(2)  # plain integer (tariff)

# OBIS objects of group "1-0:" (pattern after the prefix, field, kind)
_OBIS_1_0 = (
    (b"1.8.1(", IMPORT_T1, _K_KILO),
    (b"1.8.2(", IMPORT_T2, _K_KILO),
    (b"2.8.1(", EXPORT_T1, _K_KILO),
    (b"2.8.2(", EXPORT_T2, _K_KILO),
    (b"1.7.0(", POWER_IMPORT, _K_KILO),
    (b"2.7.0(", POWER_EXPORT, _K_KILO),
    (b"21.7.0(", POWER_IMPORT_L1, _K_KILO),
    (b"41.7.0(", POWER_IMPORT_L2, _K_KILO),
    (b"61.7.0(", POWER_IMPORT_L3, _K_KILO),
    (b"22.7.0(", POWER_EXPORT_L1, _K_KILO),
    (b"42.7.0(", POWER_EXPORT_L2, _K_KILO),
    (b"62.7.0(", POWER_EXPORT_L3, _K_KILO),
    (b"32.7.0(", VOLTAGE_L1, _K_MILLI),
    (b"52.7.0(", VOLTAGE_L2, _K_MILLI),
    (b"72.7.0(", VOLTAGE_L3, _K_MILLI),
    (b"31.7.0(", CURRENT_L1, _K_MILLI),
    (b"51.7.0(", CURRENT_L2, _K_MILLI),
    (b"71.7.0(", CURRENT_L3, _K_MILLI),
)
_PREFIX_1_0 = b"1-0:"
_PREFIX_0_0 = b"0-0:"
_OBIS_TARIFF = b"96.14.0("
_OBIS_TIMESTAMP = b"1.0.0("
_OBIS_EQUIPMENT_ID = b"96.1.1("


def _match(buf, pos, end, pat):
    """True if ``buf[pos:end]`` starts with ``pat`` (no slicing)."""
    n = len(pat)
    if pos + n > end:
        return False
    for i in range(n):
        if buf[pos + i] != pat[i]:
            return False
    return True


def _hexval(c):
    if 0x30 <= c <= 0x39:
        return c - 0x30
    if 0x41 <= c <= 0x46:
        return c - 0x37
    if 0x61 <= c <= 0x66:
        return c - 0x57
    return -1


def parse_fixed(buf, start, end, decimals):
    """Decimal ``buf[start:end]`` (digits, at most one '.') as an integer in units of
    10**-decimals: ``b"001234.567"``, 3 -> 1234567. Extra fraction digits are truncated,
    missing ones padded. Raises ``FrameError`` on anything else or on values >= 10**9."""
    if start >= end:
        raise FrameError("empty P1 value")
    v = 0
    frac = -1  # fraction digits seen; -1 = no '.' yet
    for i in range(start, end):
        c = buf[i]
        if c == _DOT:
            if frac >= 0:
                raise FrameError("bad P1 number")
            frac = 0
            continue
        d = c - _ZERO
        if d < 0 or d > 9:
            raise FrameError("bad P1 number")
        if frac >= 0:
            if frac >= decimals:
                continue
            frac += 1
        if v >= _MAX_VALUE:
            raise FrameError("P1 value out of range")
        v = v * 10 + d
    if frac < 0:
        frac = 0
    while frac < decimals:
        if v >= _MAX_VALUE:
            raise FrameError("P1 value out of range")
        v *= 10
        frac += 1
    return v


class P1Reader:
    """Owns the P1 UART, the telegram buffer and the decoded fields.

    After ``poll()`` returned True: ``values[FIELD]`` (see the module constants),
    ``present`` (bit i set when field i was in the telegram; HAVE_TIMESTAMP,
    HAVE_EQUIPMENT_ID), ``timestamp``/``equipment_id`` bytearrays with
    ``equipment_id_len``, counters ``telegrams`` and ``errors``.
    """

    two_way = True  # its power is signed: an export told from an import

    def __init__(self, uart, bufsize=DEFAULT_BUFSIZE, stale_ms=DEFAULT_STALE_S * 1000, clock=None):
        if bufsize < 64:
            raise ValueError("P1 buffer too small")
        self._uart = uart
        self.stale_ms = stale_ms
        self._clock = clock if clock is not None else hal
        self._seen = 0  # ticks_ms of the newest valid telegram
        self._buf = bytearray(bufsize)
        self._size = bufsize
        self._chunk = bytearray(_CHUNK)
        self._cpos = 0
        self._clen = 0
        self._state = _IDLE
        self._pos = 0
        self._bang = 0
        self.values = array("i", [0] * N_FIELDS)
        self._scratch = array("i", [0] * N_FIELDS)
        self.present = 0
        self.timestamp = bytearray(TIMESTAMP_LEN)
        self._ts = bytearray(TIMESTAMP_LEN)
        self.equipment_id = bytearray(EQUIPMENT_ID_MAX)
        self.equipment_id_len = 0
        self._eid = bytearray(EQUIPMENT_ID_MAX)
        self._eid_len = 0
        self.telegrams = 0
        self.errors = 0
        self.last_length = 0

    # --- byte intake ----------------------------------------------------------------------

    def poll(self):
        """Consume received bytes. True: a new valid telegram was decoded; False: need more
        bytes. Raises CrcError/OversizeError/FrameError for a rejected telegram. Call it
        again until it returns False to drain the UART."""
        u = self._uart
        chunk = self._chunk
        buf = self._buf
        size = self._size
        while True:
            if self._cpos >= self._clen:
                n = u.any()
                if not n:
                    return False
                if n > _CHUNK:
                    n = _CHUNK
                got = u.readinto(chunk, n)
                if not got:
                    return False
                self._cpos = 0
                self._clen = got
            cpos = self._cpos
            clen = self._clen
            state = self._state
            pos = self._pos
            while cpos < clen:
                c = chunk[cpos]
                cpos += 1
                if c == _SLASH:
                    cut = state != _IDLE
                    buf[0] = c
                    pos = 1
                    state = _BODY
                    if cut:
                        self._save(cpos, state, pos)
                        self.errors += 1
                        raise FrameError("P1 telegram cut short by a new '/'")
                    continue
                if state == _IDLE:
                    continue
                if pos >= size:
                    self._save(cpos, _IDLE, 0)
                    self.errors += 1
                    raise OversizeError("P1 telegram longer than the buffer")
                buf[pos] = c
                pos += 1
                if state == _BODY:
                    if c == _BANG:
                        state = _CRC
                        self._bang = pos
                elif c == _LF:
                    self._save(cpos, _IDLE, 0)
                    try:
                        self._finish(pos)
                    except (CrcError, FrameError):
                        self.errors += 1
                        raise
                    self.telegrams += 1
                    self._seen = self._clock.ticks_ms()
                    return True
                elif pos - self._bang > 6:
                    self._save(cpos, _IDLE, 0)
                    self.errors += 1
                    raise FrameError("P1 CRC line too long")
            self._save(cpos, state, pos)

    def _save(self, cpos, state, pos):
        self._cpos = cpos
        self._state = state
        self._pos = pos

    # --- telegram check and decode --------------------------------------------------------

    def _finish(self, end):
        buf = self._buf
        bang = self._bang  # index just after '!'
        self.last_length = end
        if end - bang != 6 or buf[end - 2] != _CR:
            raise FrameError("P1 telegram without a 4-digit CRC (DSMR < 4?)")
        want = 0
        for i in range(bang, bang + 4):
            h = _hexval(buf[i])
            if h < 0:
                raise FrameError("P1 CRC is not hex")
            want = (want << 4) | h
        if crc16(buf, 0, 0, bang) != want:
            raise CrcError("P1 telegram CRC mismatch")
        # header: '/XXX5...' (3-letter manufacturer, baud-rate digit, identification)
        if bang < 7 or buf[4] < _ZERO or buf[4] > 0x39:
            raise FrameError("P1 header malformed")
        sc = self._scratch
        for i in range(N_FIELDS):
            sc[i] = 0
        present = 0
        self._eid_len = 0
        i = 0
        while i < bang:
            j = i
            while j < bang and buf[j] != _LF:
                j += 1
            present |= self._line(i, j)
            i = j + 1
        v = self.values
        for k in range(N_FIELDS):
            v[k] = sc[k]
        if present & HAVE_TIMESTAMP:
            for k in range(TIMESTAMP_LEN):
                self.timestamp[k] = self._ts[k]
        n = self._eid_len if present & HAVE_EQUIPMENT_ID else 0
        for k in range(n):
            self.equipment_id[k] = self._eid[k]
        self.equipment_id_len = n
        self.present = present

    def _line(self, start, end):
        """Decode one line ``buf[start:end]``; return the ``present`` bit(s) it sets."""
        buf = self._buf
        if end > start and buf[end - 1] == _CR:
            end -= 1
        if _match(buf, start, end, _PREFIX_1_0):
            p = start + 4
            for pat, field, kind in _OBIS_1_0:
                if _match(buf, p, end, pat):
                    self._scratch[field] = self._value(p + len(pat), end, kind)
                    return 1 << field
            return 0
        if not _match(buf, start, end, _PREFIX_0_0):
            return 0
        p = start + 4
        if _match(buf, p, end, _OBIS_TARIFF):
            self._scratch[TARIFF] = self._value(p + len(_OBIS_TARIFF), end, _K_PLAIN)
            return 1 << TARIFF
        if _match(buf, p, end, _OBIS_TIMESTAMP):
            s = p + len(_OBIS_TIMESTAMP)
            if end - s != TIMESTAMP_LEN + 1 or buf[end - 1] != _RPAR:
                raise FrameError("P1 timestamp malformed")
            for k in range(TIMESTAMP_LEN):
                self._ts[k] = buf[s + k]
            return HAVE_TIMESTAMP
        if _match(buf, p, end, _OBIS_EQUIPMENT_ID):
            s = p + len(_OBIS_EQUIPMENT_ID)
            e = end - 1
            if e < s or buf[e] != _RPAR or e - s > EQUIPMENT_ID_MAX:
                raise FrameError("P1 equipment id malformed")
            for k in range(e - s):
                self._eid[k] = buf[s + k]
            self._eid_len = e - s
            return HAVE_EQUIPMENT_ID
        return 0

    def _value(self, s, end, kind):
        """Integer value of ``(digits[*unit])`` starting at ``s`` (just after '(')."""
        buf = self._buf
        e = s
        while e < end and buf[e] != _STAR and buf[e] != _RPAR:
            e += 1
        if e >= end:
            raise FrameError("P1 value not closed")
        if kind == _K_PLAIN:
            return parse_fixed(buf, s, e, 0)
        if kind == _K_MILLI:
            return parse_fixed(buf, s, e, 3)
        # kilo kind: '*kWh'/'*kW' -> 3 decimals give Wh/W; '*Wh'/'*W' -> already Wh/W
        if buf[e] == _STAR and e + 1 < end and buf[e + 1] != _LOWER_K:
            return parse_fixed(buf, s, e, 0)
        return parse_fixed(buf, s, e, 3)

    # --- reporting helpers (allocate; not for the polling path) ---------------------------

    def import_wh(self):
        return self.values[IMPORT_T1] + self.values[IMPORT_T2]

    def export_wh(self):
        return self.values[EXPORT_T1] + self.values[EXPORT_T2]

    def import_mwh(self):
        return self.import_wh() * 1000

    def export_mwh(self):
        return self.export_wh() * 1000

    def meter_read(self):
        """For the meter layer: (import mWh, export mWh, power W (+import), voltage mV) from the
        newest complete telegram; DriverError until the first one has arrived, and while none
        has for ``stale_ms``: the meter layer then flags the front end and holds the registers."""
        while self.poll():
            pass
        if not self.telegrams:
            raise DriverError("no P1 telegram yet")
        c = self._clock
        now = c.ticks_ms()
        if c.ticks_diff(now, self._seen) >= self.stale_ms:
            # kept at exactly stale_ms old: ticks wrap around, a silence of days must not end by it
            self._seen = c.ticks_add(now, -self.stale_ms)
            raise DriverError("no valid P1 telegram for %d s" % (self.stale_ms // 1000))
        if self.present & _HAVE_ENERGY != _HAVE_ENERGY:
            # a missing counter would read 0: the registers would take it for a meter reset and
            # then add the whole meter reading again with the next complete telegram
            raise FrameError("P1 telegram without the 1.8.1/1.8.2/2.8.1/2.8.2 energy registers")
        v = self.values
        return self.import_mwh(), self.export_mwh(), v[POWER_IMPORT] - v[POWER_EXPORT], v[VOLTAGE_L1]

    def timestamp_str(self):
        return bytes(self.timestamp).decode() if self.present & HAVE_TIMESTAMP else None

    def equipment_id_str(self):
        """The equipment identifier decoded from its hex coding (raw text if not hex)."""
        n = self.equipment_id_len
        if not n:
            return None
        raw = bytes(self.equipment_id[:n])
        if n % 2:
            return raw.decode()
        out = bytearray(n // 2)
        for k in range(n // 2):
            hi = _hexval(raw[2 * k])
            lo = _hexval(raw[2 * k + 1])
            if hi < 0 or lo < 0:
                return raw.decode()
            out[k] = (hi << 4) | lo
        try:
            return bytes(out).decode()
        except UnicodeError:
            return raw.decode()


def open_frontend(fe, hw):
    """The driver for a board file's front end (compact form) on ``hw``'s UART."""
    return P1Reader(hw.uart(fe), stale_ms=fe.get("stale_s", DEFAULT_STALE_S) * 1000)
