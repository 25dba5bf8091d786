"""Small hardware abstraction: the duck-typed contracts the drivers rely on.

Drivers never import ``machine``. They are handed bus objects that follow the contracts
below; on an ESP32 those are ``machine.UART`` / ``machine.SPI`` / ``machine.Pin`` built by
the ``make_*`` helpers in ``board_hw`` (which import ``machine`` lazily), in tests and in the
simulator they are the fakes in ``fakes/``.

UART-like (Modbus RTU to a PZEM-004T, DSMR P1 port)::

    write(buf) -> int            # queue bytes for transmission; returns bytes written
    readinto(buf[, n]) -> int | None
                                 # copy up to n (default len(buf)) received bytes to the
                                 # start of buf; None or 0 when nothing is there
    any() -> int                 # number of received bytes that can be read now

SPI-like (ATM90E32, SPI mode 3, MSB first, <= 200 kHz recommended)::

    write(buf)                   # clock out buf, ignore what comes in
    readinto(buf, write=0)       # clock in len(buf) bytes while sending ``write``
    write_readinto(wbuf, rbuf)   # full duplex, len(wbuf) == len(rbuf)

plus a separate chip-select Pin-like object with ``value(v)`` (active low).

Pin-like (S0 pulse input)::

    irq(handler, trigger)        # call handler(pin) on the given edge(s)
    value() -> int               # current level

Clock: ``ticks_ms()``, ``ticks_diff(new, old)`` and ``sleep_ms(ms)`` follow MicroPython's
``time`` semantics (ticks wrap around; only differences are meaningful). On MicroPython they
ARE ``time.ticks_ms`` etc. (no allocation); on CPython a monotonic fallback with the same
wrap-around period is used. A driver that waits takes an optional ``clock`` object with these
three callables (this module by default) so that a simulator can substitute virtual time.
"""

import time

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]
        return x


# Pin.IRQ_* values of the ESP32 port (machine.Pin.IRQ_RISING / IRQ_FALLING).
IRQ_RISING = const(1)
IRQ_FALLING = const(2)

# ticks wrap-around period used by MicroPython ports (MICROPY_PY_TIME_TICKS_PERIOD = 2**30).
_TICKS_PERIOD = const(1 << 30)
_TICKS_MAX = const((1 << 30) - 1)
_TICKS_HALF = const(1 << 29)

if hasattr(time, "ticks_ms"):  # MicroPython: use the C functions directly.
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
    sleep_ms = time.sleep_ms
else:  # CPython (simulator, unit tests)

    def ticks_ms():
        """Milliseconds from an arbitrary point, wrapping at 2**30 like MicroPython."""
        return int(time.monotonic() * 1000) & _TICKS_MAX  # type: ignore[attr-defined]

    def ticks_add(ticks, delta):
        return (ticks + delta) & _TICKS_MAX

    def ticks_diff(new, old):
        """Signed difference ``new - old`` of two wrapped tick values."""
        return ((new - old + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF

    def sleep_ms(ms):
        if ms > 0:
            time.sleep(ms / 1000)
