"""Heap peaks on a 32-bit MicroPython unix port (tests/mpy32unix.py: x86, 4-byte words, 16-byte GC
blocks as on an ESP32, a collector that runs whenever an allocation fails, viper for x86), and
the viper SHA-512 on that 32-bit native emitter. Skipped unless such a binary is provided
(PEERGRID_MPY32_UNIX or micropython32 on PATH; docs/firmware.md says how to build it).

The board boots as in test_heap32.py (firmware/app.py Board, the fake PZEM-004T, a simulated
clock; code in ROMFS outside the heap). Measured, as the board needs them:

* the smallest ``-X heapsize`` (the whole GC area, its tables included) in which the board boots
  and then builds, encodes and signs one reading, or verifies and executes one order;
* the free heap each of those steps needs above the live data of the booted board (the rest of
  a larger heap filled with ballast), so its peak is live data + that.

A step counts only if it did its work: the reading's meter poll did not fault, the order was not
refused (a MemoryError inside ``OrderHandler.handle`` becomes a refusal), and the frames printed
are checked here on CPython.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path

import pytest

from coordinator.provision import boardfile
from protocol import crypto, frame, messages, topics
from tests import mpy32unix
from tests.firmware.test_heap32 import COORD, ORDER_AT, SEED, board_files
from tests.firmware.test_sunspec import BOARD_TOML
from tests.protocol.test_golden import load, vector_lines

pytestmark = pytest.mark.skipif(mpy32unix.missing() is not None, reason=str(mpy32unix.missing()))

LIMIT = 64 * 1024

# Compiled into the ROMFS image with the firmware (mpy32unix.build_image): its code is not in
# the heap. Each run boots one board; DONE is printed only when the step did its work.
PEAKRUN = """
import asyncio
import gc
import micropython
import sys
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware


def boot():
    cfg = app.load_json("board.json")
    settings = app.load_json("settings.json")
    hw = FakeHardware(cfg, lambda now: 900)
    b = app.Board(cfg, settings, hw, SimClock(1750000000, 1))
    cfg = settings = None
    if hw.ss:  # a SunSpec board: the device's map (on the fake slave, or a Modbus TCP server)
        if hw.slave is not None:
            from fakes import sunspec as fake
            gc.collect()
            a = gc.mem_alloc()
            fake.load(hw.slave)
            fake = None
            del sys.modules["fakes.sunspec"]  # the fake's code: a board has the device instead
            gc.collect()
            print("FAKE", gc.mem_alloc() - a)
        b.bat = asyncio.run(hw.battery_state())
        print("FOUND", sum(1 for k in hw.ss if hw.ss[k].ok))
    gc.collect()
    print("BOOT", gc.mem_alloc(), gc.mem_free())
    micropython.qstr_info()
    return hw, b


def reading(hw, b):
    now = 1750000010
    hw.physics(now)
    b.meter.poll()
    if hw.ss:  # the device's state of charge and power, read over Modbus for the reading
        b.bat = asyncio.run(hw.battery_state())
    fr = b.reading(now)
    ok = not b.meter.fault
    gc.collect()
    print("LIVE", gc.mem_alloc())
    print("READING", fr.hex())
    return ok


def order(b, at):
    with open("order.bin", "rb") as f:
        fr = f.read()
    ack = asyncio.run(b.orders.handle(b.t_order, fr, at))
    fr = None
    ok = b.orders.rejected == 0
    gc.collect()
    print("LIVE", gc.mem_alloc())
    print("ACK", ack[0], ack[1].hex())
    return ok


def step(what, hw, b, at):
    if what == "reading":
        return reading(hw, b)
    if what == "order":
        return order(b, at)
    return True


def main(what, at):
    hw, b = boot()
    if step(what, hw, b, at):
        print("DONE")


def fill(free):
    # ballast down to ``free`` bytes free, in a chain of tuples (no list to grow), the biggest
    # pieces first, smaller ones into the holes the boot left
    keep = None
    gc.collect()
    for size in (4096, 1024, 256, 64, 16, 1):
        while gc.mem_free() > free + size + 48:
            try:
                keep = (keep, bytearray(size))
            except MemoryError:
                break
    return keep


def headroom(what, free, at):
    hw, b = boot()
    keep = fill(free)
    print("FREE", gc.mem_free())
    if step(what, hw, b, at) and keep is not None:
        print("DONE")
"""
SCRIPTS = {"peakrun": PEAKRUN}
BIG = 160 * 1024  # the heap of the headroom runs: the booted board plus ballast


def image() -> Path:
    return mpy32unix.build_image(SCRIPTS)


def smallest_heap(what: str, files: dict[str, bytes] | None = None) -> tuple[int, str]:
    """The smallest heapsize (bytes, to 256) for boot + ``what`` ("boot", "reading", "order")."""
    code = f"import peakrun\npeakrun.main({what!r}, {ORDER_AT})\n"
    return mpy32unix.smallest_heap(code, "DONE", files=files or board_files(), image=image())


def headroom(what: str, files: dict[str, bytes] | None = None) -> tuple[int, int, str]:
    """The free heap (bytes, to 16) the step ``what`` needs above the booted board's live data;
    that live data; the output of the run at that headroom."""
    files, img = files or board_files(), image()

    def run(free: int) -> str:
        code = f"import peakrun\npeakrun.headroom({what!r}, {free}, {ORDER_AT})\n"
        return mpy32unix.run(code, heap=BIG, files=files, image=img, check=False).stdout

    lo, hi = 0, 32 * 1024
    out = run(hi)
    if "DONE" not in out.splitlines():
        raise AssertionError(f"{what} fails with {hi} bytes free\n{out}")
    while hi - lo > 16:
        mid = (lo + hi) // 2
        p = run(mid)
        if "DONE" in p.splitlines():
            hi, out = mid, p
        else:
            lo = mid
    boot = re.search(r"^BOOT (\d+) \d+$", out, re.M)
    free = re.search(r"^FREE (\d+)$", out, re.M)
    assert boot and free, out
    return int(free.group(1)), int(boot.group(1)), out


# what the reading and the ack of each board kind must say: (seq, ts, flags, bat_soc, bat_p) and
# (oseq, status, bat_w, pv_limit_w, relay_state)
PZEM = ((0, 1_750_000_010, 0, None, None), (5, messages.ST_CLAMPED, None, None, 0b1))
SUNSPEC = ((0, 1_750_000_010, 0, 500, 0), (5, messages.ST_APPLIED, -1650, 2000, 0b1))


def check_outputs(out: str, want: tuple[tuple[object, ...], tuple[object, ...]] = PZEM) -> None:
    """The reading and the ack printed by a run are signed by the board's key and say what they
    should (as in test_heap32.py)."""
    ver = crypto.Verifier(crypto.SigningKey(SEED).public)
    for hexframe in re.findall(r"^READING ([0-9a-f]+)$", out, re.M):
        r = frame.open_frame(
            topics.board_topic("bench", "m01", "reading"), bytes.fromhex(hexframe), lambda m: ver
        )
        assert isinstance(r, messages.Reading)
        assert (r.seq, r.ts, r.flags, r.bat_soc, r.bat_p) == want[0], r
    for t, hexframe in re.findall(r"^ACK (\S+) ([0-9a-f]+)$", out, re.M):
        ack = frame.open_frame(t, bytes.fromhex(hexframe), lambda m: ver)
        assert isinstance(ack, messages.Ack)
        assert (ack.oseq, ack.status, ack.bat_w, ack.pv_limit_w, ack.relay_state) == want[1], ack


def qstrs(out: str) -> tuple[int, int]:
    """(interned strings, bytes of their pools) after boot, as micropython.qstr_info() printed."""
    m = re.search(
        r"^qstr pool: n_pool=\d+, n_qstr=(\d+), n_str_data_bytes=\d+, n_total_bytes=(\d+)$", out, re.M
    )
    assert m, out
    return int(m.group(1)), int(m.group(2))


def peaks(
    files: dict[str, bytes] | None = None,
    want: tuple[tuple[object, ...], tuple[object, ...]] = PZEM,
) -> dict[str, int]:
    """All the figures (bytes): smallest heapsize for boot / + reading / + order, the live data
    after boot, each step's headroom above it, the qstrs interned after boot (count, bytes) and,
    on a SunSpec board, what the fake device's register map itself holds of the heap."""
    out: dict[str, int] = {}
    for what in ("boot", "reading", "order"):
        heap, text = smallest_heap(what, files)
        assert "DONE" in text.splitlines()
        check_outputs(text, want)
        out[f"heap_{what}"] = heap
    for what in ("reading", "order"):
        free, live, text = headroom(what, files)
        check_outputs(text, want)
        out[f"free_{what}"] = free
        out["live_boot"] = live
        out["qstr_n"], out["qstr_bytes"] = qstrs(text)
        fake = re.search(r"^FAKE (\d+)$", text, re.M)
        out["fake"] = int(fake.group(1)) if fake else 0
        found = re.search(r"^FOUND (\d+)$", text, re.M)
        out["found"] = int(found.group(1)) if found else 0
    return out


def test_reading_and_order_peaks_under_64k() -> None:
    p = peaks()
    print(
        "32-bit unix port: smallest heapsize (B): boot {heap_boot}, + a reading {heap_reading}, "
        "+ an order {heap_order}; live after boot {live_boot}; headroom above it: reading "
        "{free_reading}, order {free_order}".format(**p)
    )
    # all three tried in the same heaps: a step that needs more than the boot shows here
    assert p["heap_reading"] >= p["heap_boot"] and p["heap_order"] >= p["heap_boot"]
    for what in ("boot", "reading", "order"):
        assert p[f"heap_{what}"] < LIMIT, p
    for what in ("reading", "order"):
        assert p["live_boot"] + p[f"free_{what}"] < LIMIT, p
        assert p[f"free_{what}"] > 1024  # signing/verifying does allocate: the measure is real


def test_step_output_is_real_at_its_smallest_heap() -> None:
    """The runs the bisection settles on printed a reading and an ack that verify (checked in
    peaks()); here one order run without the order's key: refused, so no DONE, at any heap."""
    files = board_files()
    settings = json.loads(files["settings.json"])
    settings["coordinator_key"] = crypto.SigningKey(bytes(32)).public.hex()  # not COORD's
    files["settings.json"] = json.dumps(settings).encode()
    code = f"import peakrun\npeakrun.main('order', {ORDER_AT})\n"
    out = mpy32unix.run(code, heap=BIG, files=files, image=image()).stdout
    assert "DONE" not in out.splitlines() and "ACK " in out, out


# A board with a SunSpec hybrid inverter on its RS-485 (as tests/firmware/test_sunspec.py): PV
# export limit and battery through the device's models, state of charge and power read back.
SUNSPEC_TOML = "reading_s = 10\ninterval_s = 900\n" + BOARD_TOML + "[[relays]]\npin = 25\n"


def sunspec_files() -> dict[str, bytes]:
    """The heap runs' files for the SunSpec board: its board file, and an order that discharges
    the battery and limits PV export (both within the board's limits: applied)."""
    files = board_files()
    files["board.json"] = json.dumps(boardfile.compact(tomllib.loads(SUNSPEC_TOML))).encode()
    order = messages.Order(
        board="m01",
        oseq=5,
        interval=ORDER_AT,
        valid_from=ORDER_AT - 60,
        valid_until=ORDER_AT + 1800,
        bat_w=-1650,
        pv_limit_w=2000,
        relay_mask=0b1,
        relay_state=0b1,
    )
    files["order.bin"] = frame.seal(order, topics.board_topic("bench", "m01", "order"), COORD)
    return files


def test_sunspec_board_peaks_and_qstrs_under_64k() -> None:
    """A board WITH the SunSpec driver (models discovered at boot from the fake device's map, a
    reading with the battery's state read over Modbus, an order written to models 123 and 124)
    boots, reads and executes within 64 KiB, the fake device's own register map included (it is
    in the heap here, on a board it is in the inverter); the driver's qstrs are counted against
    the PZEM board's."""
    base = peaks()
    p = peaks(sunspec_files(), SUNSPEC)
    print(
        "32-bit unix port, SunSpec board: smallest heapsize (B): boot {heap_boot}, + a reading "
        "{heap_reading}, + an order {heap_order}; live after boot {live_boot} (the fake device's "
        "map {fake} of it); headroom above it: reading {free_reading}, order {free_order}; "
        "qstrs {qstr_n} in {qstr_bytes} B".format(**p)
    )
    added = p["qstr_n"] - base["qstr_n"], p["qstr_bytes"] - base["qstr_bytes"]
    print("the SunSpec driver adds {} qstrs, {} B".format(*added))
    assert p["fake"] > 1024 and p["found"] == 2  # the map is there and counted; both setpoints' device found
    assert p["qstr_n"] > base["qstr_n"] and p["live_boot"] > base["live_boot"]
    for what in ("boot", "reading", "order"):
        assert p[f"heap_{what}"] < LIMIT, p
    for what in ("reading", "order"):
        assert p["live_boot"] + p[f"free_{what}"] < LIMIT, p


def tcp_peaks() -> tuple[dict[str, int], list[int]]:
    """peaks() of the SunSpec board reaching its hybrid inverter over Modbus TCP
    (drivers/modbus_tcp.py: one kept connection, asyncio streams) on a pymodbus server holding the
    SunSpec map; and what the last order wrote there (WMaxLimPct, WMaxLim_Ena, StorCtl_Mod,
    OutWRte)."""
    from tests.firmware.test_modbus_tcp import Loop, SunSpecServer

    loop = Loop()
    try:
        srv = SunSpecServer(loop).start()
        files = sunspec_files()
        cfg = json.loads(files["board.json"])
        cfg["modbus"] = {"host": "127.0.0.1", "port": srv.port, "timeout_ms": 2000}
        files["board.json"] = json.dumps(cfg).encode()
        p = peaks(files, SUNSPEC)
        written = [srv.get(123, 3), srv.get(123, 7), srv.get(124, 3), srv.get(124, 10)]
        srv.stop()
    finally:
        loop.stop()
    return p, written


def test_sunspec_tcp_board_peaks_under_64k() -> None:
    """Over Modbus TCP nothing of the device is in the board's heap, the connection and its
    streams are."""
    p, written = tcp_peaks()
    print(
        "32-bit unix port, SunSpec board over Modbus TCP: smallest heapsize (B): boot {heap_boot}, "
        "+ a reading {heap_reading}, + an order {heap_order}; live after boot {live_boot}; headroom "
        "above it: reading {free_reading}, order {free_order}".format(**p)
    )
    assert p["found"] == 2 and p["fake"] == 0 and written == [4000, 1, 2, 500]
    for what in ("boot", "reading", "order"):
        assert p[f"heap_{what}"] < LIMIT, p
    for what in ("reading", "order"):
        assert p["live_boot"] + p[f"free_{what}"] < LIMIT, p


LENGTHS = [0, 1, 3, 55, 111, 112, 113, 127, 128, 129, 239, 240, 255, 256, 1000, 2500]
SHA = """
from protocol import sha512, _sha512_viper
sha512.sha512(b"")
print("CHOSEN", sha512._fallback[0] is _sha512_viper.sha512)
for n in {lengths}:
    data = bytes((7 * i + 3) & 0xFF for i in range(n))
    cut = n // 3
    print("SHA", n, _sha512_viper.sha512(data).hex(), _sha512_viper.sha512(data[:cut], data[cut:]).hex())
print("ABC", _sha512_viper.sha512(b"abc").hex())
"""


def test_viper_sha512_on_a_32bit_native_emitter() -> None:
    """protocol._sha512_viper compiled by mpy-cross -march=x86 and run by the 32-bit port (whose
    hashlib has no sha512, as an ESP32's: protocol.sha512 picks the viper one), against
    CPython's hashlib and the FIPS 180-4 "abc" vector."""
    out = mpy32unix.run(SHA.format(lengths=LENGTHS), heap=64 * 1024, image=image()).stdout
    assert "CHOSEN True" in out.splitlines(), out
    found = re.findall(r"^SHA (\d+) ([0-9a-f]{128}) ([0-9a-f]{128})$", out, re.M)
    got = {int(n): (a, b) for n, a, b in found}
    assert sorted(got) == LENGTHS, out
    for n in LENGTHS:
        want = hashlib.sha512(bytes((7 * i + 3) & 0xFF for i in range(n))).hexdigest()
        assert got[n] == (want, want), n
    assert re.search(
        r"^ABC ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        r"2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f$",
        out,
        re.M,
    )


def test_rfc8032_vectors_on_the_32bit_port() -> None:
    """RFC 8032 Ed25519 (its SHA-512 the viper one) on the 32-bit port in a 64 KiB heap."""
    lines = [v for v in vector_lines(load()) if v["kind"] == "rfc8032"]
    stdin = "".join(json.dumps(v) + "\n" for v in lines)
    proc = mpy32unix.run(
        "from onboard import vectors\nvectors.main()", heap=64 * 1024, stdin=stdin, image=image(), check=False
    )
    failures = [ln for ln in proc.stdout.splitlines() if ln.startswith("FAIL")]
    assert not failures, "\n".join(failures) + proc.stderr
    assert f"vectors: {len(lines)} passed, 0 failed;" in proc.stdout, proc.stdout + proc.stderr
    assert len(lines) >= 5 and proc.returncode == 0
