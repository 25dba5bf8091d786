# The metering front end behind one `poll`: reads the chip, feeds the registers, keeps the
# instantaneous values. Retries live here (not in the drivers): a poll that fails `retries`
# times in a row marks the front end faulty; registers hold their last value meanwhile.
import gc

from errors import DriverError


class Meter:
    def __init__(self, chip, dev, regs, retries=3):
        self.chip = chip
        self.dev = dev
        self.regs = regs
        self.retries = retries
        self.p_w = 0
        self.u_mv = 0
        self.fault = False
        self.errors = 0

    def _read(self):
        """(import counter mWh, export counter mWh, power W (+import), voltage mV)"""
        d = self.dev
        if self.chip == "pzem004t":
            r = d.read()
            return r.energy_wh * 1000, 0, r.power_w, r.voltage_mv
        if self.chip == "atm90e32":
            d.poll()
            return d.energy_mwh(0), d.energy_mwh(4), d.power_w[0], d.voltage_mv[0]
        if self.chip == "dsmr_p1":
            fresh = False
            while d.poll():
                fresh = True
            if not fresh and not d.telegrams:
                raise DriverError("no P1 telegram yet")
            v = d.values
            return d.import_mwh(), d.export_mwh(), v[4] - v[5], v[12]
        if self.chip == "s0":
            d.update()
            return d.energy_mwh(), 0, d.power_w(), 0
        raise DriverError("unknown front end %s" % self.chip)

    def poll(self):
        """Read the front end into the registers; False if it failed ``retries`` times."""
        for _ in range(self.retries):
            try:
                imp, exp, p, u = self._read()
            except DriverError:
                self.errors += 1
                continue
            self.regs.counters(imp, exp)
            self.p_w, self.u_mv, self.fault = p, u, False
            return True
        self.fault = True
        return False


def build(fe, hw):
    """Create the driver for the board file's front end using ``hw`` (real buses or fakes)."""
    gc.collect()  # drivers allocate their buffers once, here: give them the largest free blocks
    chip = fe["chip"]
    if chip == "pzem004t":
        from drivers.pzem004t import Pzem004t

        return Pzem004t(hw.uart(fe), address=fe.get("addr", 1))
    if chip == "atm90e32":
        from drivers.atm90e32 import Atm90e32, default_config

        dev = Atm90e32(hw.spi(fe), hw.cs(fe), meter_constant=fe.get("meter_constant", 3200))
        cal = fe.get("calibration") or {}
        dev.configure(default_config(line_hz=fe.get("line_hz", 50),
                                     ugain=tuple(cal.get("ugain", (0, 0, 0))),
                                     igain=tuple(cal.get("igain", (0, 0, 0)))))
        return dev
    if chip == "dsmr_p1":
        from drivers.dsmr_p1 import P1Reader

        return P1Reader(hw.uart(fe))
    if chip == "s0":
        from drivers.s0 import S0Counter

        return S0Counter(hw.pin(fe), pulses_per_kwh=fe.get("pulses_per_kwh", 1000),
                         debounce_ms=fe.get("debounce_ms", 20))
    raise DriverError("unknown front end %s" % chip)
