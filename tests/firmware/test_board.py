"""The board runtime end to end: the firmware on the real MicroPython unix port (code in a ROMFS
image, as on a board), a fake PZEM-004T fed by a power profile, a real Mosquitto, and the
coordinator's ingest verifying every frame. Simulated time runs 120x faster than real time.

Heap: the full runtime does not fit the 64 KB target yet (see tests/mpy.py FIRMWARE_HEAP_NOW).
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from coordinator.errors import MqttError
from coordinator.ingest import Ingest
from coordinator.mqtt import Connection
from protocol import crypto, messages, topics
from tests.broker import Mosquitto
from tests.mpy import FIRMWARE_HEAP_NOW, run_micropython

START = 1_750_000_000
COORD = crypto.SigningKey(bytes(range(32)))

BOARD = {
    "type": "esp32-pzem004t",
    "frontend": {"chip": "pzem004t", "uart": 2, "tx": 17, "rx": 16, "addr": 1},
    "relays": [{"pin": 25}],
    "reading_s": 10,
    "interval_s": 900,
    "status_s": 60,
}

RUN = """
import asyncio, gc
import app
from clock import SimClock
from fakes.hardware import FakeHardware
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
start = %d
clock = SimClock(start, 120)
hw = FakeHardware(cfg, lambda now: 500 + (now - %d) %% 1000)
hw._fake().set_state(energy_mwh=%d)  # what the PZEM counted before this boot
b = app.Board(cfg, settings, hw, clock)
asyncio.run(b.run(until=start + %d))
gc.collect()
print("RESULT", b.sent, len(b.spool), b.regs.e_imp, b.regs.seq, hw.dog.feeds, gc.mem_free())
"""


def collect(
    broker: Mosquitto, frames: list[tuple[str, bytes]], ready: threading.Event, stop: threading.Event
) -> None:
    async def main() -> None:
        async with Connection(broker.address, "test-coordinator") as conn:
            for leaf in ("reading", "enrol", "status"):
                await conn.subscribe(topics.board_filter("g1", leaf))
            ready.set()
            async for m in conn.messages():
                frames.append((m.topic, m.payload))
                if stop.is_set():
                    return

    try:
        asyncio.run(asyncio.wait_for(main(), timeout=120))
    except (TimeoutError, MqttError):
        pass  # the broker goes away at the end of the test


def boot(tmp: Path, broker: Mosquitto, start: int, seconds: int, pzem_mwh: int) -> list[str]:
    (tmp / "board.json").write_text(json.dumps(BOARD))
    settings = {
        "board": "m01",
        "grid": "g1",
        "coordinator_key": COORD.public.hex(),
        "broker": {"host": "127.0.0.1", "port": broker.port},
    }
    (tmp / "settings.json").write_text(json.dumps(settings))
    proc = run_micropython(
        RUN % (start, START, pzem_mwh, seconds), heap=FIRMWARE_HEAP_NOW, cwd=tmp, timeout=120
    )
    return proc.stdout.split("RESULT")[1].split()


def test_board_publishes_signed_readings_and_survives_restart(tmp_path: Path, mosquitto: Mosquitto) -> None:
    frames: list[tuple[str, bytes]] = []
    ready, stop = threading.Event(), threading.Event()
    t = threading.Thread(target=collect, args=(mosquitto, frames, ready, stop), daemon=True)
    t.start()
    assert ready.wait(10)
    first = boot(tmp_path, mosquitto, START, 600, pzem_mwh=0)
    # a second boot (firmware restart): the PZEM kept counting while the board was down
    second = boot(tmp_path, mosquitto, START + 700, 300, pzem_mwh=int(first[2]) + 25_000)
    stop.set()
    asyncio.run(asyncio.sleep(0.5))

    ingest = Ingest("g1", now=lambda: START + 1000, auto_enrol=True)
    readings = []
    for topic, payload in frames:
        msg = ingest.handle(topic, payload)
        if isinstance(msg, messages.Reading):
            readings.append(msg)
    # a reading whose PUBACK was cut off by the shutdown is replayed at the next boot: the
    # coordinator refuses the second copy as a duplicate (at-least-once, stored once)
    assert set(ingest.rejected) <= {"duplicate"}, ingest.rejected
    assert ingest.accepted["Enrol"] == 2 and ingest.accepted["Status"] >= 2
    seqs = [r.seq for r in readings]
    assert seqs == sorted(set(seqs))  # in order, none twice
    # nothing lost: every sequence number the board used arrived; the restart resumed above
    # the persisted ceiling (SEQ_BLOCK = 64) so no number was reused
    used = sorted(set(range(int(first[3]))) | set(range(64, int(second[3]))))
    left = int(second[1])  # still in the flash spool after the last shutdown (sent next boot)
    assert left <= 1 and seqs == used[: len(used) - left]
    assert len(seqs) >= 85
    assert [r.e_imp for r in readings] == sorted(r.e_imp for r in readings)
    # energy: the register after the restart includes what the chip counted while down
    assert int(second[2]) >= readings[-1].e_imp >= int(first[2]) + 25_000
    assert int(first[4]) > 500  # the watchdog was fed every poll
