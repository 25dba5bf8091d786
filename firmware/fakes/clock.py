# A board clock for tests and the simulator: simulated Unix time starting at ``start``, running
# ``speed`` times faster than real time, so that hours of a board run in seconds. ``set`` is what
# the NTP task calls on a board's real clock (clock.Clock).
import asyncio

import hal


class SimClock:
    def __init__(self, start, speed):
        self.start = start
        self.speed = speed
        self.synced = True
        self._t0 = hal.ticks_ms()

    def now(self):
        return self.start + hal.ticks_diff(hal.ticks_ms(), self._t0) * self.speed // 1000

    def set(self, t):
        self.start += t - self.now()
        self.synced = True

    async def sleep(self, s):
        await asyncio.sleep(s / self.speed)
