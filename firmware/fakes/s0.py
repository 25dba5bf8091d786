"""Fake S0 input pin with its own millisecond clock.

``pin = FakeS0Pin()``; give the driver ``pin`` and ``clock=pin`` (the pin is also a clock
object: ``ticks_ms``, ``ticks_diff``, ``sleep_ms``), then ``pin.edges([t0, t1, ...])``
delivers falling edges at those times (ms) to the registered handler -- bounces are just
extra edges a few ms apart. ``pin.pulses(start, period, n, bounces=(1, 3))`` produces a
regular pulse train with bounce edges after each pulse; ``advance(ms)`` moves time without
edges. Edge delivery does not allocate.
"""

_MASK = 0x3FFFFFFF
_HALF = 0x20000000


class FakeS0Pin:
    IRQ_RISING = 1
    IRQ_FALLING = 2

    def __init__(self):
        self.now = 0
        self.handler = None
        self.trigger = 0
        self.delivered = 0
        self._level = 1

    # --- Pin side -------------------------------------------------------------------------

    def irq(self, handler=None, trigger=IRQ_FALLING):
        self.handler = handler
        self.trigger = trigger

    def value(self, v=None):
        if v is None:
            return self._level
        self._level = 1 if v else 0
        return None

    # --- clock side -----------------------------------------------------------------------

    def ticks_ms(self):
        return self.now & _MASK

    def ticks_diff(self, new, old):
        return ((new - old + _HALF) & _MASK) - _HALF

    def sleep_ms(self, ms):
        self.advance(ms)

    def advance(self, ms):
        self.now += ms

    # --- simulator side -------------------------------------------------------------------

    def edge(self, t_ms):
        """One falling edge at absolute time ``t_ms`` (must not go back in time)."""
        if t_ms < self.now:
            raise ValueError("time goes forward only")
        self.now = t_ms
        self._level = 0
        if self.handler is not None and self.trigger & self.IRQ_FALLING:
            self.delivered += 1
            self.handler(self)
        self._level = 1

    def edges(self, times):
        for t in times:
            self.edge(t)

    def pulses(self, start, period, n, bounces=()):
        """``n`` pulses every ``period`` ms from ``start``, each followed by bounce edges
        ``bounces`` ms after it; returns the time of the last pulse."""
        t = start
        for _ in range(n):
            self.edge(t)
            for b in bounces:
                self.edge(t + b)
            t += period
        return t - period
