"""ATM90E32AS poly-phase metering IC over SPI.

Bus: SPI mode 3 (CPOL=1, CPHA=1), MSB first, <= 200 kHz recommended, active-low CS.
One access = a 16-bit address word (bit 15 = 1 for a read, 0 for a write; the register
address in the low bits) followed by a 16-bit data word, MSB first. The driver clocks the
address and the data word in two transfers with CS held low, which leaves the >= 4 us
turn-around the chip needs before read data is valid.

Configuration (datasheet section "Configuration Registers"): on the ATM90E32 the
configuration and calibration registers (0x00..0x6F) are write protected unless
CfgRegAccEn (0x7F) holds 0x55AA; writing 0x0000 there closes the window. There is no
ConfigStart/CalStart/CS0..CS3 checksum scheme on this chip -- that belongs to the older
ATM90E26/ATM90E36 (ConfigStart 0x30 etc.). Instead the chip computes a digest of its
configuration itself (CRCDigest 0x7A, CRCErrStatus 0x79); ``configure`` records it and
``check_config`` compares, so that a silent chip reset or a corrupted register is noticed
(to be confirmed on hardware: the fake models the digest's behaviour, not its algorithm).
Every ``poll_energy`` also checks MMode0, which catches a stuck MISO line (0x0000/0xFFFF)
before garbage could be added to the energy totals.

Units:

* Energy registers (0x80..0x8F, 16-bit, CLEARED ON READ): 1 LSB = 0.01 CF pulse, i.e.
  1/(100 * MC) kWh for meter constant MC imp/kWh (PL constant = 450,000,000,000 / MC;
  the default MC 3200 gives 3.125 mWh per LSB). The owner polls them and accumulates the
  counts exactly (the remainder of the mWh conversion is carried), separately for forward
  (import, APenergy*) and reverse (export, ANenergy*) energy, per phase and all-phase-sum.
  A register holds at most 65535 LSB = 204 Wh at MC 3200: poll well within that (at
  least every 30 s at 10 kW per phase); the driver cannot detect an overflow.
* PmeanX: signed, 1 LSB = 1 W per phase, 4 W for the total; PmeanXLSB adds 8 bits
  (1/256 of that) in its upper byte.
* UrmsX: 1 LSB = 0.01 V; IrmsX: 1 LSB = 1 mA; their LSB registers add 8 bits.
* Freq: 0.01 Hz; PFmeanX: signed, 0.001.

Accumulated energy is kept as whole Wh plus a 0..999 mWh fraction plus a sub-mWh remainder,
all small ints, so the polling path never allocates even on a 32-bit port where a plain mWh
count would outgrow a small int after ~1074 kWh.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


from array import array

import hal
from errors import VerifyError

# --- status / special registers -----------------------------------------------------------
_REG_METER_EN = const(0x00)
_REG_SAG_PEAK_DET_CFG = const(0x05)
_REG_SAG_TH = const(0x08)
_REG_FREQ_LO_TH = const(0x0C)
_REG_FREQ_HI_TH = const(0x0D)
_REG_SOFT_RESET = const(0x70)
_REG_EMM_STATE0 = const(0x71)
_REG_EMM_STATE1 = const(0x72)
_REG_LAST_SPI_DATA = const(0x78)
_REG_CRC_ERR_STATUS = const(0x79)
_REG_CRC_DIGEST = const(0x7A)
_REG_CFG_REG_ACC_EN = const(0x7F)

# --- configuration registers --------------------------------------------------------------
_REG_PL_CONST_H = const(0x31)
_REG_PL_CONST_L = const(0x32)
_REG_MMODE0 = const(0x33)
_REG_MMODE1 = const(0x34)  # PGA gain of the current channels
_REG_P_START_TH = const(0x35)
_REG_Q_START_TH = const(0x36)
_REG_S_START_TH = const(0x37)
_REG_P_PHASE_TH = const(0x38)
_REG_Q_PHASE_TH = const(0x39)
_REG_S_PHASE_TH = const(0x3A)

# --- metering calibration -----------------------------------------------------------------
_REG_POFFSET_A = const(0x41)
_REG_QOFFSET_A = const(0x42)
_REG_PQGAIN_A = const(0x47)
_REG_PHI_A = const(0x48)

# --- measurement calibration (phase B = A + 4, phase C = A + 8) ---------------------------
_REG_UGAIN_A = const(0x61)
_REG_IGAIN_A = const(0x62)
_REG_UOFFSET_A = const(0x63)
_REG_IOFFSET_A = const(0x64)

# --- energy (clear on read) ---------------------------------------------------------------
_REG_AP_ENERGY_T = const(0x80)  # forward active: T, A, B, C = 0x80..0x83
_REG_AN_ENERGY_T = const(0x84)  # reverse active: T, A, B, C = 0x84..0x87

# --- power, power factor, rms, frequency --------------------------------------------------
_REG_PMEAN_T = const(0xB0)  # T, A, B, C = 0xB0..0xB3
_REG_PFMEAN_T = const(0xBC)  # T, A, B, C = 0xBC..0xBF
_REG_PMEAN_T_LSB = const(0xC0)  # T, A, B, C = 0xC0..0xC3
_REG_URMS_A = const(0xD9)  # A, B, C
_REG_IRMS_A = const(0xDD)  # A, B, C
_REG_URMS_A_LSB = const(0xE9)
_REG_IRMS_A_LSB = const(0xED)
_REG_FREQ = const(0xF8)
_REG_TEMP = const(0xFC)

_READ = const(0x8000)
_UNLOCK = const(0x55AA)
_LOCK = const(0x0000)
_SOFT_RESET_KEY = const(0x789A)
_METER_ENABLE = const(0x0001)

# Energy channels: index = register - 0x80.
FWD_T = const(0)
FWD_A = const(1)
FWD_B = const(2)
FWD_C = const(3)
REV_T = const(4)
REV_A = const(5)
REV_B = const(6)
REV_C = const(7)
N_CHANNELS = const(8)

DEFAULT_METER_CONSTANT = const(3200)

# Public names for board configuration tables.
REG = {
    "MeterEn": _REG_METER_EN,
    "SagPeakDetCfg": _REG_SAG_PEAK_DET_CFG,
    "SagTh": _REG_SAG_TH,
    "FreqLoTh": _REG_FREQ_LO_TH,
    "FreqHiTh": _REG_FREQ_HI_TH,
    "PLconstH": _REG_PL_CONST_H,
    "PLconstL": _REG_PL_CONST_L,
    "MMode0": _REG_MMODE0,
    "MMode1": _REG_MMODE1,
    "PStartTh": _REG_P_START_TH,
    "QStartTh": _REG_Q_START_TH,
    "SStartTh": _REG_S_START_TH,
    "PPhaseTh": _REG_P_PHASE_TH,
    "QPhaseTh": _REG_Q_PHASE_TH,
    "SPhaseTh": _REG_S_PHASE_TH,
    "PoffsetA": _REG_POFFSET_A,
    "QoffsetA": _REG_QOFFSET_A,
    "PoffsetB": _REG_POFFSET_A + 2,
    "QoffsetB": _REG_QOFFSET_A + 2,
    "PoffsetC": _REG_POFFSET_A + 4,
    "QoffsetC": _REG_QOFFSET_A + 4,
    "PQGainA": _REG_PQGAIN_A,
    "PhiA": _REG_PHI_A,
    "PQGainB": _REG_PQGAIN_A + 2,
    "PhiB": _REG_PHI_A + 2,
    "PQGainC": _REG_PQGAIN_A + 4,
    "PhiC": _REG_PHI_A + 4,
    "UgainA": _REG_UGAIN_A,
    "IgainA": _REG_IGAIN_A,
    "UoffsetA": _REG_UOFFSET_A,
    "IoffsetA": _REG_IOFFSET_A,
    "UgainB": _REG_UGAIN_A + 4,
    "IgainB": _REG_IGAIN_A + 4,
    "UoffsetB": _REG_UOFFSET_A + 4,
    "IoffsetB": _REG_IOFFSET_A + 4,
    "UgainC": _REG_UGAIN_A + 8,
    "IgainC": _REG_IGAIN_A + 8,
    "UoffsetC": _REG_UOFFSET_A + 8,
    "IoffsetC": _REG_IOFFSET_A + 8,
}


def pl_constant(meter_constant):
    """PL_constant for a meter constant in imp/kWh (3200 -> 140,625,000 = 0x0861C468)."""
    return 450_000_000_000 // meter_constant


def default_config(
    line_hz=50,
    meter_constant=DEFAULT_METER_CONSTANT,
    ugain=(0, 0, 0),
    igain=(0, 0, 0),
    pga=0x0000,
    start_th=0x1D4C,
    phase_th=0x02EE,
):
    """(register, value) pairs for ``Atm90e32.configure``: 3P4W, arithmetic sum.

    ``ugain``/``igain`` are the per-phase measurement calibration gains (UgainX/IgainX) of the
    board's voltage dividers and CTs; ``pga`` is MMode1 (0x0000 = 1x on all current channels,
    0x0015 = 2x, 0x002A = 4x). Board calibration tables can append or override pairs.
    """
    if line_hz not in (50, 60):
        raise ValueError("line_hz must be 50 or 60")
    pl = pl_constant(meter_constant)
    mmode0 = 0x1087 if line_hz == 60 else 0x0087
    hz100 = line_hz * 100
    pairs = [
        (_REG_METER_EN, _METER_ENABLE),
        (_REG_SAG_PEAK_DET_CFG, 0x143F),
        (_REG_FREQ_HI_TH, hz100 + 100),
        (_REG_FREQ_LO_TH, hz100 - 100),
        (_REG_PL_CONST_H, (pl >> 16) & 0xFFFF),
        (_REG_PL_CONST_L, pl & 0xFFFF),
        (_REG_MMODE0, mmode0),
        (_REG_MMODE1, pga),
        (_REG_P_START_TH, start_th),
        (_REG_Q_START_TH, start_th),
        (_REG_S_START_TH, start_th),
        (_REG_P_PHASE_TH, phase_th),
        (_REG_Q_PHASE_TH, phase_th),
        (_REG_S_PHASE_TH, phase_th),
    ]
    for ph in range(3):
        pairs.append((_REG_UGAIN_A + 4 * ph, ugain[ph]))
        pairs.append((_REG_IGAIN_A + 4 * ph, igain[ph]))
    return pairs


def _s16(v):
    return v - 0x10000 if v & 0x8000 else v


class Atm90e32:
    """Owns the SPI bus, the CS pin, the transfer buffers and the energy accumulators.

    After ``poll()``: ``voltage_mv[ph]``, ``current_ma[ph]`` (ph 0..2 = A..C),
    ``power_w[i]`` and ``power_factor_milli[i]`` (i 0 = total, 1..3 = A..C, signed,
    positive = import), ``frequency_mhz``; ``energy_mwh(channel)`` for FWD_*/REV_*.
    """

    two_way = True  # its power is signed: an export told from an import

    def __init__(self, spi, cs, meter_constant=DEFAULT_METER_CONSTANT, clock=None):
        if meter_constant <= 0:
            raise ValueError("meter_constant must be positive")
        self._spi = spi
        self._cs = cs
        self._clock = clock if clock is not None else hal
        self.meter_constant = meter_constant
        self._addr = bytearray(2)
        self._data = bytearray(2)
        # energy accumulators per channel: whole Wh, mWh fraction 0..999, and the remainder
        # of counts * 10000 / MC (0..MC-1) so that no energy is lost by integer division.
        self._wh = array("i", [0] * N_CHANNELS)
        self._frac = array("i", [0] * N_CHANNELS)
        self._rem = array("i", [0] * N_CHANNELS)
        self.voltage_mv = array("i", [0, 0, 0])
        self.current_ma = array("i", [0, 0, 0])
        self.power_w = array("i", [0, 0, 0, 0])
        self.power_factor_milli = array("i", [0, 0, 0, 0])
        self.frequency_mhz = 0
        self.mmode0 = -1  # expected MMode0 after configure(); -1 = not configured
        self.digest = -1  # CRCDigest after configure()
        self._pairs = None  # open_frontend's configuration (a function), for after a chip reset
        self._cs.value(1)

    # --- register access ------------------------------------------------------------------

    def read_reg(self, reg):
        """Read one 16-bit register (unsigned). Energy registers clear on read."""
        a = self._addr
        d = self._data
        r = reg | _READ
        a[0] = r >> 8
        a[1] = r & 0xFF
        cs = self._cs
        cs.value(0)
        try:
            self._spi.write(a)
            self._spi.readinto(d, 0xFF)
        finally:
            cs.value(1)
        return (d[0] << 8) | d[1]

    def write_reg(self, reg, value):
        """Write one 16-bit register (no verification; see ``configure``)."""
        a = self._addr
        d = self._data
        a[0] = (reg >> 8) & 0x7F
        a[1] = reg & 0xFF
        d[0] = (value >> 8) & 0xFF
        d[1] = value & 0xFF
        cs = self._cs
        cs.value(0)
        try:
            self._spi.write(a)
            self._spi.write(d)
        finally:
            cs.value(1)

    # --- configuration --------------------------------------------------------------------

    def configure(self, pairs, reset=True):
        """Soft-reset (optional), open the configuration window, write and read back every
        (register, value) pair, close the window, and record MMode0 and CRCDigest.

        Raises ``VerifyError`` if a register does not read back (chip absent, MISO stuck).
        Energy registers are read once afterwards to discard what accumulated meanwhile.
        """
        if reset:
            self.write_reg(_REG_SOFT_RESET, _SOFT_RESET_KEY)
            self._clock.sleep_ms(10)
        self.write_reg(_REG_CFG_REG_ACC_EN, _UNLOCK)
        try:
            if self.read_reg(_REG_CFG_REG_ACC_EN) != _UNLOCK:
                raise VerifyError("ATM90E32 did not open its configuration window")
            mmode0 = -1
            for reg, value in pairs:
                value &= 0xFFFF
                self.write_reg(reg, value)
                if self.read_reg(reg) != value:
                    raise VerifyError("ATM90E32 register 0x%02X did not read back" % reg)
                if reg == _REG_MMODE0:
                    mmode0 = value
        finally:
            self.write_reg(_REG_CFG_REG_ACC_EN, _LOCK)
        self.mmode0 = mmode0 if mmode0 >= 0 else self.read_reg(_REG_MMODE0)
        self.digest = self.read_reg(_REG_CRC_DIGEST)
        for ch in range(N_CHANNELS):
            self.read_reg(_REG_AP_ENERGY_T + ch)

    def check_config(self):
        """Raise ``VerifyError`` if the chip lost its configuration (reset, corruption) or
        does not answer: MMode0 and CRCDigest must still read what ``configure`` left."""
        if self.mmode0 < 0:
            raise VerifyError("ATM90E32 not configured")
        if self.read_reg(_REG_MMODE0) != self.mmode0:
            raise VerifyError("ATM90E32 MMode0 changed: chip reset or bus fault")
        if self.read_reg(_REG_CRC_DIGEST) != self.digest:
            raise VerifyError("ATM90E32 configuration CRC changed")

    # --- polling --------------------------------------------------------------------------

    def poll_energy(self):
        """Read (and thereby clear) the 8 active energy registers and accumulate them.

        MMode0 is checked first: if the chip reset or MISO is stuck at 0xFFFF the registers
        would read garbage, which must never be added to the energy totals.
        """
        if self.read_reg(_REG_MMODE0) != self.mmode0:
            raise VerifyError("ATM90E32 MMode0 changed: chip reset or bus fault")
        for ch in range(N_CHANNELS):
            raw = self.read_reg(_REG_AP_ENERGY_T + ch)
            if raw:
                self._accumulate(ch, raw)

    def _accumulate(self, ch, counts):
        # mWh = counts * 1e6 / (100 * MC) = counts * 10000 / MC, remainder carried.
        mc = self.meter_constant
        num = self._rem[ch] + counts * 10000  # <= 655,350,000 + MC: a small int
        mwh = num // mc
        self._rem[ch] = num - mwh * mc
        f = self._frac[ch] + mwh
        if f >= 1000:
            self._wh[ch] += f // 1000
            f %= 1000
        self._frac[ch] = f

    def read_measurements(self):
        """Instantaneous rms voltage/current, mean active power, power factor, frequency."""
        for ph in range(3):
            hi = self.read_reg(_REG_URMS_A + ph)
            lo = self.read_reg(_REG_URMS_A_LSB + ph) >> 8
            # 0.01 V + 1/256 of it -> mV, rounded
            self.voltage_mv[ph] = (hi * 2560 + lo * 10 + 128) >> 8
            hi = self.read_reg(_REG_IRMS_A + ph)
            lo = self.read_reg(_REG_IRMS_A_LSB + ph) >> 8
            self.current_ma[ph] = (hi * 256 + lo + 128) >> 8
        for i in range(4):
            hi = _s16(self.read_reg(_REG_PMEAN_T + i))
            lo = self.read_reg(_REG_PMEAN_T_LSB + i) >> 8
            v = hi * 256 + lo  # 1/256 of the register unit (4 W total, 1 W per phase)
            if i == 0:
                v *= 4
            self.power_w[i] = (v + 128) >> 8
            self.power_factor_milli[i] = _s16(self.read_reg(_REG_PFMEAN_T + i))
        self.frequency_mhz = self.read_reg(_REG_FREQ) * 10

    def poll(self):
        """One polling cycle: energy first (it is the billing quantity), then measurements."""
        self.poll_energy()
        self.read_measurements()

    def meter_read(self):
        """For the meter layer: (forward mWh, reverse mWh, power W, voltage mV) of phase A.

        A chip that reset on its own (a brown-out of the metering side) comes back with metering
        disabled and its calibration gone, and MMode0 may well read the configured value: MeterEn
        tells. It is configured again and this poll fails (``VerifyError``)."""
        if self.read_reg(_REG_METER_EN) != _METER_ENABLE:
            if self._pairs is not None:
                self.configure(self._pairs())
            raise VerifyError("ATM90E32 metering was off: the chip had reset")
        self.poll()
        return self.energy_mwh(0), self.energy_mwh(4), self.power_w[0], self.voltage_mv[0]

    # --- results (reporting path) ---------------------------------------------------------

    def energy_mwh(self, ch):
        """Accumulated energy of channel ``ch`` (FWD_T..REV_C) in mWh. May allocate a long
        int on a 32-bit port above ~1074 kWh; call from the reporting path."""
        return self._wh[ch] * 1000 + self._frac[ch]

    def energy_wh(self, ch):
        return self._wh[ch]

    def set_energy_mwh(self, ch, mwh):
        """Restore a persisted total (e.g. at boot)."""
        if mwh < 0:
            raise ValueError("energy must be >= 0")
        self._wh[ch] = mwh // 1000
        self._frac[ch] = mwh % 1000
        self._rem[ch] = 0


def open_frontend(fe, hw):
    """The driver for a board file's front end (compact form): SPI bus, chip select, calibration."""
    dev = Atm90e32(hw.spi(fe), hw.cs(fe), meter_constant=fe.get("meter_constant", 3200))
    cal = fe.get("calibration") or {}
    # kept as a function, not as the list it returns: the board file is in memory anyway
    dev._pairs = lambda: default_config(line_hz=fe.get("line_hz", 50),
                                        ugain=tuple(cal.get("ugain", (0, 0, 0))),
                                        igain=tuple(cal.get("igain", (0, 0, 0))))
    dev.configure(dev._pairs())
    return dev
