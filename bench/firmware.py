"""The board runtime on the MicroPython unix port: per-reading CPU time (meter poll, encode,
sign) and QoS 1 publish time to a real Mosquitto, beside the bare signature in the same run;
heap after boot and after a run of readings; the smallest heap the runtime boots in.
And the live heap on a 32-bit MicroPython (the WebAssembly port, tests/mpy32.py: ESP32
object sizes, where the unix port is 64-bit), code in ROMFS and code in the heap."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bench.table import Row
from protocol import crypto
from tests import mpy32
from tests.broker import Mosquitto
from tests.mpy import FIRMWARE_HEAP_NOW, run_micropython

BOARD = {
    "type": "esp32-devkitc-pzem004t",
    "frontend": {"chip": "pzem004t", "uart": 2, "tx": 17, "rx": 16, "addr": 1},
    "relays": [{"pin": 25}],
    "reading_s": 10,
    "interval_s": 900,
}

SCRIPT = """
import asyncio, gc, time
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
from mqtt import MQTTClient
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
clock = SimClock(1750000000, 1)
hw = FakeHardware(cfg, lambda now: 900)
b = app.Board(cfg, settings, hw, clock)
gc.collect(); boot_free = gc.mem_free()
N = %d
poll, seal, sign = [], [], []
now = 1750000000
for i in range(N):
    now += 10
    hw.physics(now)
    t = time.ticks_us(); b.meter.poll(); poll.append(time.ticks_diff(time.ticks_us(), t))
    t = time.ticks_us(); fr = b.reading(now); seal.append(time.ticks_diff(time.ticks_us(), t))
    t = time.ticks_us(); b.key.sign(fr[:-64]); sign.append(time.ticks_diff(time.ticks_us(), t))
pub = []
async def publish():
    c = MQTTClient("bench", "127.0.0.1", %d)
    await c.connect(clean_session=True)
    task = asyncio.create_task(c.run())
    for i in range(N):
        fr = b.reading(now + i)
        t = time.ticks_us(); await c.publish(b.t_reading, fr); pub.append(time.ticks_diff(time.ticks_us(), t))
    await c.disconnect()
    task.cancel()
if %d:
    asyncio.run(publish())
gc.collect(); run_free = gc.mem_free()
for xs in (poll, seal, sign, pub):
    xs.sort()
m = lambda xs: xs[len(xs) // 2] if xs else 0
print("BENCH", m(poll), m(seal), m(sign), m(pub), boot_free, run_free)
"""

BOOT_ONLY = """
import gc
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
b = app.Board(cfg, settings, FakeHardware(cfg, lambda now: 900), SimClock(1750000000, 1))
b.reading(1750000010)
print("BOOTED")
"""


def _files(d: Path, port: int) -> None:
    (d / "board.json").write_text(json.dumps(BOARD))
    settings = {
        "board": "m01",
        "grid": "bench",
        "broker": {"host": "127.0.0.1", "port": port},
        "coordinator_key": crypto.SigningKey(bytes(32)).public.hex(),
    }
    (d / "settings.json").write_text(json.dumps(settings))


def smallest_heap(d: Path) -> int:
    """Smallest heap (KiB, 8 KiB steps) in which the runtime boots and takes a reading."""
    for kib in range(48, 257, 8):
        for f in d.glob("regs*"):
            f.unlink()
        p = run_micropython(BOOT_ONLY, heap=f"{kib}k", cwd=d, check=False)
        if "BOOTED" in p.stdout:
            return kib
    return 0


def heap32(n: int) -> list[Row]:
    """Live heap on the 32-bit port (heap starting at 64 KiB) after boot, readings, an order."""
    if mpy32.missing():
        print(f"bench firmware: 32-bit rows skipped: {mpy32.missing()}")
        return []
    from tests.firmware.test_heap32 import ORDER_AT, board_files, heap_figures

    files = board_files()
    rom = heap_figures(mpy32.board_run(files, readings=n, order=ORDER_AT).stdout)
    ram = heap_figures(mpy32.board_run(files, readings=1, order=None, code="heap").stdout)
    return [
        Row(
            "board heap used after boot (32-bit MicroPython, wasm port)",
            rom[0] / 1024,
            "KiB",
            64,
            "target heap",
        ),
        Row(
            f"board heap used after {n} readings + an order (32-bit)", rom[2] / 1024, "KiB", 64, "target heap"
        ),
        Row("board heap used after boot (32-bit, code in heap)", ram[0] / 1024, "KiB", 64, "target heap"),
    ]


def heap_peak() -> list[Row]:
    """Heap peaks on a 32-bit MicroPython unix port (tests/firmware/test_heap_peak.py; the binary
    from PEERGRID_MPY32_UNIX or micropython32 on PATH): the smallest heap the board boots in and
    then takes a reading / executes an order, and each step's peak (live data + what it needs)."""
    from tests import mpy32unix

    if mpy32unix.missing():
        print(f"bench firmware: 32-bit unix port rows skipped: {mpy32unix.missing()}")
        return []
    from tests.firmware.test_heap_peak import SUNSPEC, peaks, sunspec_files, tcp_peaks

    p = peaks()
    rows = [
        Row(
            f"board smallest heap, boot + {name} (32-bit unix port)",
            p[f"heap_{what}"] / 1024,
            "KiB",
            64,
            "target heap",
            "< 64 KiB",
        )
        for what, name in (("boot", "nothing"), ("reading", "a reading"), ("order", "an order"))
    ]
    for what, name in (("reading", "reading build + encode + sign"), ("order", "order verify + execute")):
        peak = (p["live_boot"] + p[f"free_{what}"]) / 1024
        rows.append(Row(f"board heap peak, {name} (32-bit unix)", peak, "KiB", 64, "target heap", "< 64 KiB"))
    # the same board with a SunSpec hybrid inverter on its Modbus (the fake device's register
    # map is in this heap too: on a board it is in the inverter)
    s = peaks(sunspec_files(), SUNSPEC)
    rows.append(
        Row(
            "SunSpec board smallest heap, boot + an order (32-bit unix)",
            s["heap_order"] / 1024,
            "KiB",
            64,
            "target heap",
            "< 64 KiB",
        )
    )
    for what, name in (("reading", "reading + its Modbus reads"), ("order", "order to models 123/124")):
        peak = (s["live_boot"] + s[f"free_{what}"]) / 1024
        rows.append(
            Row(f"SunSpec board heap peak, {name} (32-bit unix)", peak, "KiB", 64, "target heap", "< 64 KiB")
        )
    t, _ = tcp_peaks()
    rows.append(
        Row(
            "SunSpec board over Modbus TCP, heap peak of an order (32-bit unix)",
            (t["live_boot"] + t["free_order"]) / 1024,
            "KiB",
            64,
            "target heap",
            "< 64 KiB",
        )
    )
    rows.append(
        Row(
            "SunSpec board qstrs added by the driver",
            s["qstr_bytes"] - p["qstr_bytes"],
            "B",
            s["qstr_bytes"],
            "of all qstr pools",
        )
    )
    return rows


# The outage profile for the flash life: a reading every 10 s, one 24-hour broker outage a week
# (every reading of it spooled, then replayed), registers saved every 5 minutes; the ESP32's
# flash is rated for 100,000 erase cycles a block and LittleFS spreads its erases over the
# free blocks of the filesystem partition (~400 of the 2 MB partition's 512 with a full spool).
OUTAGE_READINGS_A_YEAR = 52 * 8640
REGISTER_SAVES_A_YEAR = 365 * 288
FREE_BLOCKS = 400
CYCLES = 100_000


def wear() -> list[Row]:
    """Erases per spooled reading on a counted LittleFS2 (tests/firmware/test_wear.py), the
    erases of a register save, and the flash life at the outage profile above."""
    from tests.firmware.test_wear import SPOOL

    with tempfile.TemporaryDirectory() as tmp:
        out = run_micropython(SPOOL, heap="4m", cwd=Path(tmp)).stdout
        pushed, erases, progs, _ = (int(x) for x in out.split("RESULT")[1].split())
        regs = run_micropython(REGISTER_SAVES, heap="4m", cwd=Path(tmp)).stdout
        saves, reg_erases = (int(x) for x in regs.split("RESULT")[1].split())
    per = erases / pushed
    per_save = reg_erases / saves
    years = CYCLES * FREE_BLOCKS / (OUTAGE_READINGS_A_YEAR * per + REGISTER_SAVES_A_YEAR * per_save)
    return [
        Row("board spool: flash erases per queued reading (LittleFS2, 4 KiB)", per, "erases", 2, "target"),
        Row("board spool: bytes programmed per queued reading", progs / pushed, "B"),
        Row("board registers: flash erases per save", per_save, "erases"),
        Row(
            "board flash life: 24 h outage a week, reading every 10 s",
            years,
            "years",
            10,
            "target",
            ">= 10 years",
        ),
    ]


REGISTER_SAVES = """
from onboard import flash
dev = flash.mount()
from registers import Registers
g = Registers("regs")
e = dev.erases
for i in range(500):
    g.counters(1000 * i, 0, 1_750_000_000 + 300 * i)
    g.maybe_save(1_750_000_000 + 300 * i, force=True)
print("RESULT", g.rec.writes, dev.erases - e)
"""


def stalls() -> list[Row]:
    """The longest gap between two heartbeats of a task beside the board runtime, per fault
    (tests/firmware/test_stalls.py: the event loop held that long at most, beyond its 10 ms sleep):
    a silent meter, DNS down, NTP unreachable, a Wi-Fi drop, a silent broker, and a silent Modbus
    inverter while an order's setpoints are written to it (inside the writes, and over that run)."""
    import re

    import pytest

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.txt"
        with open(out, "w") as f:
            import contextlib

            with contextlib.redirect_stdout(f):
                pytest.main(["-q", "-s", "-p", "no:cacheprovider", "tests/firmware/test_stalls.py"])
        text = out.read_text()
    return [
        Row(f"board loop: longest stall, {m.group(1)}", float(m.group(2)), "ms", 50, "target", "<= 50 ms")
        for m in re.finditer(r"^\.*(.+): longest stall (\d+) ms$", text, re.M)
    ]


def run(ci: bool) -> list[Row]:
    n = 20 if ci else 200
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        broker = Mosquitto(d)
        broker.start()
        try:
            _files(d, broker.port)
            out = run_micropython(
                SCRIPT % (n, broker.port, 1), heap=FIRMWARE_HEAP_NOW, cwd=d, timeout=600
            ).stdout
        finally:
            broker.stop()
        poll, seal, sign, pub, boot_free, run_free = (int(x) for x in out.split("BENCH")[1].split())
        heap = int(FIRMWARE_HEAP_NOW.rstrip("k"))
        need = smallest_heap(d)
    return [
        Row("board reading: meter poll (fake PZEM, Modbus RTU)", poll / 1000, "ms"),
        Row("board reading: build + encode + sign", seal / 1000, "ms", sign / 1000, "sign alone"),
        Row("board QoS1 publish to Mosquitto (loopback)", pub / 1000, "ms", seal / 1000, "reading build"),
        Row("board sign + publish a reading", (sign + pub) / 1000, "ms", 3, "target", "< 3 ms"),
        Row("board heap used after boot", heap - boot_free / 1024, "KiB", 64, "target heap", "<= 64 KiB"),
        Row(
            f"board heap used after {n} readings + publishes",
            heap - run_free / 1024,
            "KiB",
            64,
            "target heap",
        ),
        Row("board smallest heap that boots and reads", need, "KiB", 64, "target heap"),
        *heap32(n),
        *heap_peak(),
        *wear(),
        *stalls(),
    ]
