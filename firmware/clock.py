# Wall-clock time for the board: Unix seconds, and an asyncio sleep in the same time base. The
# ESP32's RTC is set from NTP by the board's NTP task (``set``); ``synced`` stays False until then.
# (Tests and the simulator run on fakes/clock.py's SimClock, the same interface at a faster pace.)
import asyncio
import time

# MicroPython ports with a 2000-01-01 epoch (older ESP32 builds) report 946684800 s less
EPOCH_OFFSET = 946_684_800 if time.gmtime(0)[0] == 2000 else 0


class Clock:
    def __init__(self):
        self.synced = time.time() + EPOCH_OFFSET > 1_600_000_000

    def now(self):
        t = int(time.time()) + EPOCH_OFFSET
        if not self.synced:  # set later by the NTP task: readings say so until then
            self.synced = t > 1_600_000_000
        return t

    def set(self, t):
        """Set the RTC to Unix time ``t``."""
        import machine

        y, mo, d, h, mi, s, wd = time.gmtime(t - EPOCH_OFFSET)[:7]
        machine.RTC().datetime((y, mo, d, wd, h, mi, s, 0))
        self.synced = True

    async def sleep(self, s):
        await asyncio.sleep(s)
