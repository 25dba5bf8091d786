# The metering front end behind one `poll`: reads the chip, feeds the registers, keeps the
# instantaneous values. Retries live here (not in the drivers): a poll that fails `retries`
# times in a row marks the front end faulty; registers hold their last value meanwhile.
import asyncio
import gc

from errors import DriverError

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc,no-untyped-def]
        return x


_WAIT_MS = const(5)  # between checks for a front end's reply: 9600 baud brings ~5 bytes


class Meter:
    def __init__(self, dev, regs, retries=3):
        self.dev = dev
        self.regs = regs
        self.retries = retries
        self.p_w = 0
        self.u_mv = 0
        self.fault = False
        self.errors = 0
        self.waits = hasattr(dev, "request")  # a front end that answers requests (PZEM)
        # a front end that tells import from export (ATM90E32, DSMR P1); a PZEM-004T or an S0
        # output counts one way
        self.two_way = getattr(dev, "two_way", False)
        self._seen = None  # the P1 telegram ``fresh()`` last saw

    def poll(self, now=None):
        """Read the front end into the registers (at board time ``now``, for the registers'
        plausibility bound); False if it failed ``retries`` times."""
        for _ in range(self.retries):
            try:
                imp, exp, p, u = self.dev.meter_read()
            except DriverError:
                self.errors += 1
                continue
            self._take(imp, exp, p, u, now)
            return True
        self.fault = True
        return False

    async def read(self, now=None):
        """``poll`` for the board's metering task: a front end that answers requests is waited
        for by yielding to the event loop between checks (a silent meter holds it for no more
        than a check), never by sleeping in it."""
        if not self.waits:
            return self.poll(now)
        dev = self.dev
        for _ in range(self.retries):
            try:
                dev.request()
                while not dev.step():
                    await asyncio.sleep_ms(_WAIT_MS)
                imp, exp, p, u = dev.result()
            except DriverError:
                self.errors += 1
                continue
            self._take(imp, exp, p, u, now)
            return True
        self.fault = True
        return False

    def fresh(self):
        """True when ``p_w`` was measured since the last call: a P1 port measures once a telegram
        (every 1 s, or 10 s on a DSMR 4 meter) while it is read every poll; the other front ends
        measure at every read."""
        t = getattr(self.dev, "telegrams", None)
        if t is None:
            return True
        new = t != self._seen
        self._seen = t
        return new

    def _take(self, imp, exp, p, u, now):
        self.regs.counters(imp, exp, now)
        self.p_w, self.u_mv, self.fault = p, u, False


# the front ends a board file may name: one driver module each, with open_frontend(fe, hw)
_CHIPS = ("pzem004t", "atm90e32", "dsmr_p1", "s0")


def build(fe, hw):
    """Create the driver for the board file's front end using ``hw`` (real buses or fakes).

    Only the named chip's driver module is loaded: the others cost the board no heap."""
    gc.collect()  # drivers allocate their buffers once, here: give them the largest free blocks
    chip = fe["chip"]
    if chip not in _CHIPS:
        raise DriverError("unknown front end %s" % chip)
    return __import__("drivers." + chip, None, None, ("open_frontend",)).open_frontend(fe, hw)
