# A driver's clock for tests on MicroPython (the interface of firmware/hal.py's ticks): time moves
# only when the test or the driver's own sleeps step it, so timeouts are met without waiting.


class Ticks:
    def __init__(self):
        self.ms = 0

    def ticks_ms(self):
        return self.ms

    def ticks_diff(self, a, b):
        return a - b

    def ticks_add(self, t, d):
        return t + d

    def sleep_ms(self, ms):
        self.ms += ms
