# Board entry point (MicroPython runs main.py after boot.py): settings and first-boot key
# (provision.py), Wi-Fi and NTP, then the runtime. If it ever stops with an error, it logs it and
# resets the board so the watchdog-safe path starts afresh. ``run(hw, clock)`` is what tests and
# the unix port call with fake hardware.
import asyncio
import sys
import time

import provision


def run(hw=None, clock=None, until=None):
    cfg, settings = provision.load()
    if hw is None:  # a real board: radio, NTP, the ESP32's buses and watchdog
        provision.network_up(settings)
        from board_hw import EspHardware

        hw = EspHardware(cfg)
    if clock is None:
        from clock import Clock

        clock = Clock()
    import app

    board = app.Board(cfg, settings, hw, clock)
    asyncio.run(board.run(until))
    return board


if __name__ == "__main__":
    try:
        run()
    except Exception as e:  # never leave a board hanging: log, wait, reset
        sys.print_exception(e)
        time.sleep(10)
        __import__("machine").reset()
