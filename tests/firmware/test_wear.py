"""Flash wear of the board's storage, counted on the real MicroPython unix port: a LittleFS2
filesystem formatted as the ESP32 port formats it (4 KiB erase blocks, progsize 256) on a RAM
block device that counts erases and bytes programmed (tests/onboard/flash.py)."""

from __future__ import annotations

from pathlib import Path

from tests.mpy import run_micropython

FRAME = 108  # bytes of a signed reading frame

SPOOL = r"""
from onboard import flash
dev = flash.mount()
from spool import Spool

def check(cond, what):
    if not cond:
        raise SystemExit("FAILED: " + what)

fr = bytearray(FRAME)
pushed = [0]
def push(n):
    for _ in range(n):
        fr[0] = pushed[0] & 0xFF
        s.push(bytes(fr))
        pushed[0] += 1
def replay(n):
    for _ in range(n):
        got = s.peek()
        check(got is not None and len(got) == len(fr), "a queued frame")
        s.pop()

s = Spool("spool", 2000)
# the outage profile: a long outage overfills the queue, a partial replay is cut by the next
# outage, then a full replay
push(2300)
replay(900)
push(700)
s = Spool("spool", 2000)  # a reboot in between
replay(len(s))
check(len(s) == 0 and s.peek() is None, "all replayed")
push(50)  # and a queue that grows again after it emptied
replay(50)
print("RESULT", pushed[0], dev.erases, dev.progs, s.dropped)
""".replace("FRAME", str(FRAME))


def test_spool_erases_at_most_two_blocks_per_reading(tmp_path: Path) -> None:
    # before: the spool was a ring of slots in one 400 KB file: on LittleFS, writing a slot in the
    # middle of the file rewrites the file from that slot to its end (copy on write), so once the
    # ring had wrapped each queued reading cost tens of erases (93.8 in the count)
    pushed, erases, progs, dropped = (
        int(x) for x in run_micropython(SPOOL, heap="4m", cwd=tmp_path).stdout.split("RESULT")[1].split()
    )
    print(f"spool: {erases / pushed:.2f} erases, {progs / pushed:.0f} B programmed per reading")
    assert pushed == 3050 and 300 <= dropped <= 340  # 2300 into 2000: the oldest segments went
    assert erases <= 2 * pushed, (erases, pushed)


REGISTERS = r"""
from onboard import flash
dev = flash.mount()
from registers import Registers

def check(cond, what):
    if not cond:
        raise SystemExit("FAILED: " + what)

g = Registers("regs", save_s=300, save_mwh=50_000)
g.counters(5_000_000, 0, 1_750_000_000)
g.maybe_save(1_750_000_000, force=True)
w = g.rec.writes
e = dev.erases
boots = 0
for _ in range(20):  # boots: a board that resets (a fault, a power cut) reads its registers
    g = Registers("regs", save_s=300, save_mwh=50_000)
    g.counters(5_000_000, 0, 1_750_000_000)
    boots += g.rec.writes
idle = Registers("regs", save_s=300, save_mwh=50_000)
for t in range(0, 7200):  # two hours of an idle meter: the counter does not move
    idle.counters(5_000_000, 0, 1_750_000_000 + t)
    idle.maybe_save(1_750_000_000 + t)
idle.maybe_save(1_750_007_200, force=True)  # clean shutdown, nothing new
print("RESULT", boots, idle.rec.writes, dev.erases - e)
"""


def test_registers_are_not_rewritten_when_unchanged(tmp_path: Path) -> None:
    # before: every boot saved the registers, and every save_s (5 min) saved them again whether
    # or not anything had changed (the check compared the sequence number with its ceiling)
    boots, idle, erases = (
        int(x) for x in run_micropython(REGISTERS, heap="4m", cwd=tmp_path).stdout.split("RESULT")[1].split()
    )
    assert (boots, idle, erases) == (0, 0, 0)
