# Board entry point (MicroPython runs main.py after boot.py): the watchdog first, then the boot
# count (boots.py: a back-off after failed boots, safe mode after five), settings and Wi-Fi
# (provision.py), then the runtime. If it ever stops with an error, it logs it and resets the
# board. ``run(hw, clock)`` is what tests and the unix port call with fake hardware.
import asyncio
import sys
import time

import provision


def run(hw=None, clock=None, until=None, boots=None):
    cfg, settings = provision.load()
    if hw is None:  # a real board: the ESP32's buses, watchdog and radio
        from board_hw import EspHardware

        hw = EspHardware(cfg)
    wdt = hw.wdt()  # armed before the network: a hang in the join resets the board
    if boots is not None and boots.failed:
        wait = boots.backoff_s()
        print("peergrid: %d failed boots: waiting %d s%s" % (
            boots.failed, wait, ", then safe mode" if boots.safe else ""))
        for _ in range(wait):
            time.sleep(1)
            wdt.feed()
    provision.network_up(settings, wdt)
    if clock is None:
        from clock import Clock

        clock = Clock()
    import app

    board = app.Board(cfg, settings, hw, clock, boots)
    asyncio.run(board.run(until))
    return board


if __name__ == "__main__":
    try:
        from boots import Boots

        run(boots=Boots())
    except Exception as e:  # never leave a board hanging: log, reset (the next boot backs off)
        sys.print_exception(e)
    time.sleep(1)
    import machine

    machine.reset()
