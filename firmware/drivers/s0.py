"""S0 pulse output (DIN 43864 / IEC 62053-31) counted on a GPIO interrupt.

A meter's S0 output closes for >= 30 ms once per 1/``pulses_per_kwh`` kWh (typical: 1000,
800, 2000 imp/kWh). With the board's pull-up the line falls at the start of a pulse, so the
falling edge is counted by default.

Debounce: an edge less than ``debounce_ms`` after the previous *accepted* edge is ignored
(counted in ``rejected``). Choose it longer than the pulse width plus contact bounce (the
trailing edge of a mechanical/opto output can bounce too) and shorter than the shortest
pulse period: the default 50 ms allows up to 20 pulses/s, i.e. 72 kW at 1000 imp/kWh.

The interrupt handler only reads the clock, compares and increments small ints: it does
not allocate, so it is safe as a hard IRQ. The pulse counter wraps at 2**30 so it stays a
small int; ``update()`` (polling path, also allocation-free) takes the new pulses, converts
them to mWh exactly -- 1,000,000 / pulses_per_kwh mWh per pulse, with the remainder of the
integer division carried, so e.g. 3 pulses at 800 imp/kWh give exactly 3750 mWh and
3 pulses at 3200 imp/kWh 937 mWh with 1/2 mWh carried -- and keeps the total as whole Wh
plus a 0..999 mWh fraction.

Power estimate: energy per pulse / time between the last two pulses, or / the time since
the last pulse when that is longer (so it decays to zero when the pulses stop).
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


import hal

_MASK = const(0x3FFFFFFF)  # counters wrap here: always small ints
_MWH_PER_KWH = const(1_000_000)
_CHUNK = const(1000)  # pulses converted per step: 1000 * 1e6 < 2**30

DEFAULT_DEBOUNCE_MS = const(50)


class S0Counter:
    """Counts S0 pulses from ``pin`` (Pin-like: ``irq(handler, trigger)``)."""

    def __init__(
        self,
        pin,
        pulses_per_kwh=1000,
        debounce_ms=DEFAULT_DEBOUNCE_MS,
        trigger=hal.IRQ_FALLING,
        clock=None,
    ):
        if not 1 <= pulses_per_kwh <= 100_000:
            raise ValueError("pulses_per_kwh must be 1..100000")
        if debounce_ms < 0:
            raise ValueError("debounce_ms must be >= 0")
        clock = clock if clock is not None else hal
        self._ticks_ms = clock.ticks_ms
        self._ticks_diff = clock.ticks_diff
        self.pulses_per_kwh = pulses_per_kwh
        self.debounce_ms = debounce_ms
        # energy of one pulse in mJ (= W * ms), for the power estimate
        self._mj_per_pulse = 3_600_000_000 // pulses_per_kwh
        # written by the IRQ handler
        self._isr_count = 0
        self._have_edge = False
        self._last_edge = 0
        self._interval_ms = 0
        self.rejected = 0
        # owned by update()
        self._seen = 0
        self.pulses = 0  # accepted pulses taken by update() (wraps at 2**30)
        self._rem = 0  # remainder of pulses * 1e6 / ppk, 0..ppk-1
        self._wh = 0
        self._frac = 0
        self._handler = self._on_edge  # bound once: no allocation per interrupt
        pin.irq(self._handler, trigger)

    def _on_edge(self, pin):
        t = self._ticks_ms()
        if self._have_edge:
            d = self._ticks_diff(t, self._last_edge)
            if d < self.debounce_ms:
                self.rejected = (self.rejected + 1) & _MASK
                return
            self._interval_ms = d
        self._last_edge = t
        self._have_edge = True
        self._isr_count = (self._isr_count + 1) & _MASK

    def update(self):
        """Take the pulses counted since the last call into the energy total; returns how
        many there were."""
        c = self._isr_count
        d = (c - self._seen) & _MASK
        if not d:
            return 0
        self._seen = c
        self.pulses = (self.pulses + d) & _MASK
        ppk = self.pulses_per_kwh
        left = d
        while left:
            k = left if left < _CHUNK else _CHUNK
            left -= k
            num = self._rem + k * _MWH_PER_KWH
            mwh = num // ppk
            self._rem = num - mwh * ppk
            f = self._frac + mwh
            if f >= 1000:
                self._wh += f // 1000
                f %= 1000
            self._frac = f
        return d

    def power_w(self):
        """Estimated power in W (0 until two pulses have been seen)."""
        iv = self._interval_ms
        if not iv:
            return 0
        since = self._ticks_diff(self._ticks_ms(), self._last_edge)
        if since > iv:
            iv = since
        return (self._mj_per_pulse + iv // 2) // iv

    def meter_read(self):
        """For the meter layer: (import mWh, 0, power W, 0): an S0 output counts one direction."""
        self.update()
        return self.energy_mwh(), 0, self.power_w(), 0

    # --- results (reporting path) ---------------------------------------------------------

    def energy_mwh(self):
        """Total energy in mWh (a long int above ~1074 kWh on a 32-bit port: reporting only)."""
        return self._wh * 1000 + self._frac

    def energy_wh(self):
        return self._wh

    def set_energy_mwh(self, mwh):
        """Restore a persisted total (e.g. at boot); the pulse remainder restarts at 0."""
        if mwh < 0:
            raise ValueError("energy must be >= 0")
        self._wh = mwh // 1000
        self._frac = mwh % 1000
        self._rem = 0


def open_frontend(fe, hw):
    """The driver for a board file's front end (compact form) on ``hw``'s input pin."""
    return S0Counter(hw.pin(fe), pulses_per_kwh=fe.get("pulses_per_kwh", 1000),
                     debounce_ms=fe.get("debounce_ms", 20))
