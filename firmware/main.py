# Board entry point (MicroPython runs main.py after boot.py). main.py stays on the board's
# filesystem as source and is never replaced over the air: it is the loader. ``start()`` first
# picks the half of the ROMFS partition to run (``select``: the slot record ota.json, written by
# ota.py; a trial boot of new code that never confirmed itself is rolled back here, before any of
# its code runs), mounts it at /rom, then arms the watchdog, counts the boot (boots.py: a back-off
# after failed boots, safe mode after five), loads settings, joins the Wi-Fi (provision.py) and
# runs the runtime. If it ever stops (an error, or an update to switch to), the board resets.
# ``run(hw, clock)`` is what tests and the unix port call with fake hardware.
import asyncio
import sys
import time


def select():
    """Mount the slot to run at /rom; returns (slot, rolled back?). The unix port's launcher
    puts its stand-in of the partition in sys.modules["romfs_partition"]."""
    import json
    import os

    try:
        with open("ota.json") as f:
            st = json.load(f)
    except (OSError, ValueError):
        st = None  # never updated: slot 0, as flashed
    run, back = 0, False
    if st:
        run = st["run"]
        if run != st["good"]:  # new code on trial
            if st["tries"]:  # its boot never confirmed: back to the good slot, for good
                back = True
                st["rolled"], st["bad"], st["fw"] = st["fw"], st["digest"], st["good_fw"]
                st["run"] = run = st["good"]
                st["digest"] = None
            st["tries"] += 1
            with open("ota.json.new", "w") as f:
                json.dump(st, f)
            os.rename("ota.json.new", "ota.json")
    import vfs

    part = sys.modules.get("romfs_partition")
    if part is None:
        try:
            part = vfs.rom_ioctl(2, 0)  # the ROMFS partition, memory-mapped (ESP32)
        except (AttributeError, OSError):
            return run, back  # no partition: the code is on the filesystem
    half = len(part) // 2
    try:
        vfs.umount("/rom")
    except OSError:
        pass
    rom = vfs.VfsRom(memoryview(part)[run * half:(run + 1) * half])  # type: ignore[attr-defined]
    vfs.mount(rom, "/rom")  # (VfsRom, 1.25+, is missing from the stubs)
    return run, back


def run(hw=None, clock=None, until=None, boots=None, make_hw=None):
    import provision

    cfg, settings = provision.load()
    if hw is None:  # a real board: the ESP32's buses, watchdog and radio
        if make_hw is None:
            from board_hw import EspHardware as make_hw
        hw = make_hw(cfg)
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


def start(make_hw=None, make_clock=None, until=None):
    """The whole boot: slot, boot count, runtime. Returns the board when it stopped (an update
    to switch to, or ``until``), None when it failed (logged). ``make_hw(cfg)`` and
    ``make_clock()`` (tests, the unix port) are called once the slot is mounted."""
    try:
        slot, back = select()
        if back:
            print("peergrid: new code never confirmed: rolled back to slot", slot)
        from boots import Boots

        return run(clock=make_clock() if make_clock else None, until=until, boots=Boots(),
                   make_hw=make_hw)
    except Exception as e:  # never leave a board hanging: log, reset (the next boot backs off)
        sys.print_exception(e)
    return None


if __name__ == "__main__":
    start()
    time.sleep(1)
    import machine

    machine.reset()
