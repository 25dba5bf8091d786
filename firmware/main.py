# Board entry point (MicroPython runs main.py after boot.py). Wi-Fi is brought up by boot.py
# (written by the bundler from the site's settings); this starts the runtime and, if it ever
# stops with an error, logs it and resets the board so the watchdog-safe path starts afresh.
import asyncio
import sys
import time

import app
from board_hw import EspHardware
from clock import Clock


def main():
    cfg = app.load_json("board.json")
    settings = app.load_json("settings.json")
    board = app.Board(cfg, settings, EspHardware(cfg), Clock())
    asyncio.run(board.run())


try:
    main()
except Exception as e:  # never leave a board hanging: log, wait, reset
    sys.print_exception(e)
    time.sleep(10)
    __import__("machine").reset()
