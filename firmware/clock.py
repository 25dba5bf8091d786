# Wall-clock time for the board: Unix seconds, and an asyncio sleep in the same time base.
# `Clock` is the real one (the ESP32 sets it from NTP; `synced` stays False until then);
# `SimClock` runs time faster than real time so tests and the simulator can run hours quickly.
import asyncio
import time

# MicroPython ports with a 2000-01-01 epoch (older ESP32 builds) report 946684800 s less
EPOCH_OFFSET = 946_684_800 if time.gmtime(0)[0] == 2000 else 0


def _mono_ms():
    if hasattr(time, "ticks_ms"):
        return time.ticks_ms()
    return int(time.monotonic() * 1000)


class Clock:
    def __init__(self):
        self.synced = time.time() + EPOCH_OFFSET > 1_600_000_000

    def now(self):
        t = int(time.time()) + EPOCH_OFFSET
        if not self.synced:  # set later (NTP retried by the hardware layer): readings say so
            self.synced = t > 1_600_000_000
        return t

    async def sleep(self, s):
        await asyncio.sleep(s)


class SimClock:
    """Simulated Unix time starting at ``start``, running ``speed`` times faster than real."""

    def __init__(self, start, speed):
        self.start = start
        self.speed = speed
        self.synced = True
        self._t0 = _mono_ms()

    def now(self):
        dt = _mono_ms() - self._t0
        if hasattr(time, "ticks_diff"):
            dt = time.ticks_diff(_mono_ms(), self._t0)
        return self.start + dt * self.speed // 1000

    async def sleep(self, s):
        await asyncio.sleep(s / self.speed)
