"""Fake ATM90E32AS on an SPI bus: a register file with the chip's access semantics.

``chip = FakeAtm90e32()`` is the SPI-like bus object (``write``, ``readinto``,
``write_readinto``) and ``chip.cs`` the chip-select pin to hand to the driver. A transfer is
the chip's: CS low, 16-bit address word (bit 15 = read), 16-bit data word, CS high.

Modelled: write protection of 0x00..0x6F unless CfgRegAccEn (0x7F) = 0x55AA; SoftReset
(0x70 <- 0x789A) restores power-on defaults; energy registers 0x80..0x8F clear on read and
saturate at 0xFFFF (``saturated`` counts it); LastSPIData (0x78); CRCDigest (0x7A) follows
every change of the configuration registers (the fake's digest is a simple hash over
0x31..0x6F -- the real chip's algorithm is not reproduced, only the behaviour that the
digest changes when the configuration does).

Simulator side, integer units: ``set_phase(ph, voltage_mv, current_ma, power_w, pf_milli)``,
``set_frequency(mhz)``, ``add_energy(ph, mwh)`` (positive = forward/import, negative =
reverse/export), converted to 0.01 CF counts at the configured meter constant with the
remainder carried. Faults: ``miso_stuck`` (None, 0x0000 or 0xFFFF), ``power_loss()``
(registers back to defaults, as after a brown-out of the chip alone).
"""

from array import array

_CFG_ACC_EN = 0x7F
_SOFT_RESET = 0x70
_LAST_SPI = 0x78
_CRC_DIGEST = 0x7A
_UNLOCK = 0x55AA
_PL_H = 0x31
_PL_L = 0x32

_DEFAULTS = (
    (0x31, 0x0861),  # PLconstH  (MC 3200)
    (0x32, 0xC468),  # PLconstL
    (0x33, 0x0087),  # MMode0
    (0x35, 0x0000),
)


class _CsPin:
    def __init__(self, chip):
        self._chip = chip
        self._v = 1

    def value(self, v=None):
        if v is None:
            return self._v
        v = 1 if v else 0
        if v != self._v:
            self._v = v
            self._chip._select(v == 0)
        return None


class FakeAtm90e32:
    def __init__(self):
        self.regs = array("H", range(256))
        self.cs = _CsPin(self)
        self.miso_stuck = None
        self.saturated = 0
        self.transfers = 0
        self._sel = False
        self._n = 0
        self._addr = 0
        self._val = 0
        self._rem = array("i", [0] * 3)  # per-phase remainder of mWh -> counts
        self._remt = array("i", [0, 0])  # remainder for the T registers (fwd, rev)
        self._reset_regs()

    # --- simulator side -------------------------------------------------------------------

    def _reset_regs(self):
        r = self.regs
        for i in range(256):
            r[i] = 0
        for reg, v in _DEFAULTS:
            r[reg] = v
        r[0xF8] = 5000
        self._update_digest()

    def power_loss(self):
        """The chip alone loses power: every register back to its default."""
        self._reset_regs()

    def meter_constant(self):
        pl = (self.regs[_PL_H] << 16) | self.regs[_PL_L]
        if pl == 0:
            return 3200
        return 450_000_000_000 // pl

    def set_phase(self, ph, voltage_mv=None, current_ma=None, power_w=None, pf_milli=None):
        r = self.regs
        if voltage_mv is not None:
            v = (voltage_mv * 256 + 5) // 10  # 1/256 of 0.01 V
            r[0xD9 + ph] = (v >> 8) & 0xFFFF
            r[0xE9 + ph] = (v & 0xFF) << 8
        if current_ma is not None:
            r[0xDD + ph] = current_ma & 0xFFFF
            r[0xED + ph] = 0
        if power_w is not None:
            r[0xB1 + ph] = power_w & 0xFFFF
            r[0xC1 + ph] = 0
            total = 0
            for k in range(3):
                p = r[0xB1 + k]
                total += p - 0x10000 if p & 0x8000 else p
            # PmeanT: 4 W per LSB, LSB register 4/256 W
            t = total * 64  # 1/256 of 4 W
            r[0xB0] = (t >> 8) & 0xFFFF
            r[0xC0] = (t & 0xFF) << 8
        if pf_milli is not None:
            r[0xBD + ph] = pf_milli & 0xFFFF

    def set_frequency(self, mhz):
        self.regs[0xF8] = (mhz + 5) // 10

    def physics(self, p_w, import_mwh, export_mwh):
        """Physics on phase A: net power ``p_w`` (+ import) now, energy since the last feed."""
        self.add_energy(0, import_mwh - export_mwh)
        self.set_phase(0, voltage_mv=230_000, power_w=p_w)

    def add_energy(self, ph, mwh):
        """Feed energy of phase ``ph`` (0..2): > 0 forward (import), < 0 reverse (export)."""
        if mwh == 0:
            return
        rev = mwh < 0
        if rev:
            mwh = -mwh
        mc = self.meter_constant()
        # counts = mWh * 100 * MC / 1e6 = mWh * MC / 10000, remainder carried per phase
        # (the sign of the carried remainder follows the direction last fed).
        num = mwh * mc + self._rem[ph]
        counts = num // 10000
        self._rem[ph] = num - counts * 10000
        base = 0x84 if rev else 0x80
        self._add_counts(base + 1 + ph, counts)
        t = 1 if rev else 0
        num = mwh * mc + self._remt[t]
        counts = num // 10000
        self._remt[t] = num - counts * 10000
        self._add_counts(base, counts)

    def _add_counts(self, reg, counts):
        v = self.regs[reg] + counts
        if v > 0xFFFF:
            v = 0xFFFF
            self.saturated += 1
        self.regs[reg] = v

    def _update_digest(self):
        d = 0xFFFF
        r = self.regs
        for reg in range(0x31, 0x70):
            d = ((d * 31) ^ r[reg]) & 0xFFFF
        r[_CRC_DIGEST] = d

    # --- SPI side -------------------------------------------------------------------------

    def _select(self, on):
        self._sel = on
        self._n = 0

    def _xfer(self, b):
        """One byte each way while CS is low."""
        if not self._sel:
            return 0xFF
        n = self._n
        self._n = n + 1
        out = 0xFF
        if n == 0:
            self._addr = b << 8
        elif n == 1:
            self._addr |= b
            if self._addr & 0x8000:
                self._val = self._read((self._addr & 0x3FF))
        elif n == 2:
            if self._addr & 0x8000:
                out = self._val >> 8
            else:
                self._val = b << 8
        elif n == 3:
            if self._addr & 0x8000:
                out = self._val & 0xFF
            else:
                self._val |= b
                self._write(self._addr & 0x3FF, self._val)
            self.transfers += 1
        if self.miso_stuck is not None:
            out = self.miso_stuck & 0xFF
        return out

    def _read(self, reg):
        if reg > 0xFF:
            return 0
        v = self.regs[reg]
        if 0x80 <= reg <= 0x8F:
            self.regs[reg] = 0
        self.regs[_LAST_SPI] = v
        return v

    def _write(self, reg, v):
        if reg > 0xFF:
            return
        self.regs[_LAST_SPI] = v
        if reg == _SOFT_RESET:
            if v == 0x789A:
                self._reset_regs()
            return
        if reg == _CFG_ACC_EN:
            self.regs[reg] = v
            return
        if reg <= 0x6F:
            if self.regs[_CFG_ACC_EN] != _UNLOCK:
                return
            self.regs[reg] = v
            if reg >= 0x31:
                self._update_digest()
            return
        # measurement/energy registers are read-only

    def write(self, buf):
        for i in range(len(buf)):
            self._xfer(buf[i])

    def readinto(self, buf, write=0x00):
        for i in range(len(buf)):
            buf[i] = self._xfer(write)

    def write_readinto(self, wbuf, rbuf):
        for i in range(len(wbuf)):
            rbuf[i] = self._xfer(wbuf[i])


def device():
    return FakeAtm90e32()
