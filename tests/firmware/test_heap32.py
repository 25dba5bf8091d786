"""The board runtime's heap on a 32-bit MicroPython (the WebAssembly port, tests/mpy32.py):
ESP32 object sizes, where the unix port of the other firmware tests is 64-bit.

The board boots as in bench/firmware.py (firmware/app.py Board, the fake PZEM-004T, a
simulated clock), with its code in a ROMFS image outside the heap, and the heap starting at
64 KiB; it takes signed readings and verifies and executes a coordinator's order whose battery
setpoint is out of the board's limits. No MQTT: the port has no sockets, so frames are handed
over as the link task would. The signatures are checked here on CPython.

What is asserted about the heap is the live data after each step (exact on this port); the
peak within a step is not: this port does not collect while Python runs (see tests/mpy32.py),
so its heap grows through a signature instead of collecting.
"""

from __future__ import annotations

import json
import re

import pytest

from bench.firmware import BOARD
from protocol import crypto, frame, messages, topics
from tests import mpy32

pytestmark = pytest.mark.skipif(mpy32.missing() is not None, reason=str(mpy32.missing()))

COORD = crypto.SigningKey(bytes(range(32)))
SEED = bytes(range(1, 33))  # the board's key.bin (the port has no os.urandom to make one)
ORDER_AT = 1_750_000_100
N = 5


def board_files() -> dict[str, bytes]:
    settings = {
        "board": "m01",
        "grid": "bench",
        "broker": {"host": "127.0.0.1", "port": 1883},
        "coordinator_key": COORD.public.hex(),
    }
    t = topics.board_topic("bench", "m01", "order")
    order = messages.Order(
        board="m01",
        oseq=5,
        interval=ORDER_AT,
        valid_from=ORDER_AT - 60,
        valid_until=ORDER_AT + 1800,
        bat_w=2500,  # the board has no battery: limited to 0
        relay_mask=0b1,
        relay_state=0b1,
    )
    return {
        "key.bin": SEED,
        "board.json": json.dumps(BOARD).encode(),
        "settings.json": json.dumps(settings).encode(),
        "order.bin": frame.seal(order, t, COORD),
    }


def heap_figures(stdout: str) -> list[int]:
    """gc.mem_alloc() after boot, after the readings, after the order."""
    return [int(m) for m in re.findall(r"^HEAP (\d+) \d+$", stdout, re.M)]


def test_board_runs_with_32bit_heap_under_64k() -> None:
    out = mpy32.board_run(board_files(), readings=N, order=ORDER_AT, heap=64 * 1024).stdout

    key = re.search(r"^KEY ([0-9a-f]{64})$", out, re.M)
    assert key and bytes.fromhex(key.group(1)) == crypto.SigningKey(SEED).public
    ver = crypto.Verifier(bytes.fromhex(key.group(1)))
    t_reading = topics.board_topic("bench", "m01", "reading")
    readings = []
    for hexframe in re.findall(r"^READING ([0-9a-f]+)$", out, re.M):
        msg = frame.open_frame(t_reading, bytes.fromhex(hexframe), lambda m: ver)
        assert isinstance(msg, messages.Reading)
        readings.append(msg)
    assert [r.seq for r in readings] == list(range(N))
    assert [r.ts for r in readings] == [1_750_000_000 + 10 * i for i in range(1, N + 1)]
    assert readings[-1].p == 900 and readings[-1].e_imp > readings[0].e_imp

    ack_line = re.search(r"^ACK (\S+) ([0-9a-f]+)$", out, re.M)
    assert ack_line and ack_line.group(1) == topics.board_topic("bench", "m01", "ack")
    ack = frame.open_frame(ack_line.group(1), bytes.fromhex(ack_line.group(2)), lambda m: ver)
    assert isinstance(ack, messages.Ack)
    # clamped to the limit (0: no battery), and the board reports no battery setpoint applied
    assert (ack.oseq, ack.status, ack.bat_w, ack.relay_state) == (5, messages.ST_CLAMPED, None, 0b1)
    assert ack.reason == "bat_w limited to 0"

    boot, after_readings, after_order = heap_figures(out)
    print(f"32-bit heap in use (B): boot {boot}, {N} readings {after_readings}, order {after_order}")
    assert after_order < 56 * 1024  # live data with room to spare in 64 KiB (measured: ~45 KiB)
    assert after_readings - boot < 1024  # readings leave nothing behind
