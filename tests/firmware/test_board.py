"""The board runtime end to end: the firmware on the real MicroPython unix port (code in a ROMFS
image, as on a board), a fake PZEM-004T fed by a power profile, a real Mosquitto, and the
coordinator's ingest verifying every frame. Simulated time runs 120x faster than real time.

Heap: the full runtime does not fit the 64 KB target yet (see tests/mpy.py FIRMWARE_HEAP_NOW).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

from coordinator.errors import MqttError
from coordinator.service.mqtt import Connection
from coordinator.transaction.ingest import Ingest
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
from fakes.clock import SimClock
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
    # let the collector catch up with what the broker acknowledged (a loaded machine is slow);
    # distinct frames: a reading spooled at the first shutdown and replayed at the second boot
    # reaches the collector twice but is counted once in `sent`
    expected = int(first[0]) + int(second[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = len({p for t, p in list(frames) if t.endswith("/reading")})
        if got >= expected:
            break
        time.sleep(0.1)
    stop.set()

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
    # still in the flash spool after the last shutdown (sent next boot); when only its PUBACK was
    # cut off by the shutdown, the broker has it already
    left = int(second[1])
    assert left <= 1 and seqs in (used, used[: len(used) - left])
    assert len(seqs) >= 85
    assert [r.e_imp for r in readings] == sorted(r.e_imp for r in readings)
    # energy: the register after the restart includes what the chip counted while down
    assert int(second[2]) >= readings[-1].e_imp >= int(first[2]) + 25_000
    assert int(first[4]) > 500  # the watchdog was fed every poll


ACT_BOARD = {
    **BOARD,
    "relays": [{"pin": 25}, {"pin": 26}],
    "modbus": {"uart": 1, "tx": 32, "rx": 33, "baud": 9600},
    "battery": {
        "max_charge_w": 3000,
        "max_discharge_w": 2000,
        "modbus": {"addr": 1, "reg": 100, "scale_w": 1},
    },
    "pv": {"max_export_w": 4000, "modbus": {"addr": 1, "reg": 200, "scale_w": 1}},
    "ev": {"pwm_pin": 27, "min_ma": 6000, "max_ma": 16000},
    "safe": {"bat_w": 0, "ev_ma": 0, "pv_limit_w": 4000, "relays": 0},
}

RUN_ACT = """
import asyncio, gc
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
clock = SimClock(%d, 60)
hw = FakeHardware(cfg, lambda now: 700)
b = app.Board(cfg, settings, hw, clock)
asyncio.run(b.run(until=%d))
print("RESULT", b.sent, len(b.spool), b.regs.seq, hw.slave.regs.get(100), hw.slave.regs.get(200),
      hw.pwm.duty, [p.v for p in hw.pins], b.orders.rejected)
"""


def test_orders_clamped_acknowledged_and_broker_restart(tmp_path: Path, mosquitto: Mosquitto) -> None:
    from protocol import frame

    (tmp_path / "board.json").write_text(json.dumps(ACT_BOARD))
    settings = {
        "board": "m01",
        "grid": "g1",
        "coordinator_key": COORD.public.hex(),
        "broker": {"host": "127.0.0.1", "port": mosquitto.port},
    }
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    frames: list[tuple[str, bytes]] = []
    board_key: list[bytes] = []
    t0 = time.monotonic()

    def sim_now() -> int:
        return START + int((time.monotonic() - t0) * 60)

    async def coordinator() -> None:
        sent_orders = False
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            try:
                async with Connection(
                    mosquitto.address, "coord", clean_session=False, manual_ack=True
                ) as conn:
                    for leaf in ("reading", "enrol", "ack"):
                        await conn.subscribe(topics.board_filter("g1", leaf))
                    async for m in conn.messages():
                        frames.append((m.topic, m.payload))
                        conn.ack(m)  # only now: a message lost in a dropped session is redelivered
                        if m.topic.endswith("/enrol") and not board_key:
                            board_key.append(m.payload)
                        if board_key and not sent_orders:
                            sent_orders = True
                            await send_orders(conn)
            except MqttError:
                await asyncio.sleep(0.2)  # the broker is restarting: reconnect, session kept

    async def send_orders(conn: Connection) -> None:
        t = topics.board_topic("g1", "m01", "order")
        now = sim_now()
        good = messages.Order(
            board="m01",
            oseq=5,
            interval=now,
            valid_from=now - 60,
            valid_until=now + 1800,
            bat_w=2500,
            ev_ma=20_000,
            pv_limit_w=3000,
            relay_mask=0b01,
            relay_state=0b01,
        )
        forged = messages.Order(
            board="m01",
            oseq=6,
            interval=now,
            valid_from=now - 60,
            valid_until=now + 1800,
            bat_w=-2000,
            relay_mask=0,
            relay_state=0,
        )
        await conn.publish(t, frame.seal(good, t, COORD))
        await conn.publish(t, frame.seal(forged, t, crypto.SigningKey(bytes(32))))
        await conn.publish(t, frame.seal(good, t, COORD))  # replay

    def restart_broker() -> None:
        time.sleep(5)
        mosquitto.restart(down_s=2)  # about 2 simulated minutes without a broker

    th = threading.Thread(target=restart_broker, daemon=True)
    th.start()

    async def both() -> list[str]:
        task = asyncio.create_task(coordinator())
        proc = await asyncio.to_thread(
            run_micropython, RUN_ACT % (START, START + 900), heap=FIRMWARE_HEAP_NOW, cwd=tmp_path, timeout=120
        )
        res = proc.stdout.split("RESULT")[1].split(None, 6)
        expected = int(res[2]) - int(res[1])  # sequence numbers used, less those still spooled
        for _ in range(100):  # let the collector catch up (a loaded machine is slow)
            if len({p for t, p in frames if t.endswith("/reading")}) >= expected:  # distinct
                break
            await asyncio.sleep(0.1)
        task.cancel()
        return res

    res = asyncio.run(both())
    th.join()
    sent, left, seq = int(res[0]), int(res[1]), int(res[2])
    # what the fake devices received: battery and PV setpoints over Modbus, EV pilot duty, relays
    assert (res[3], res[4], res[5]) == ("2500", "3000", str(16_000 * 65535 // 60_000))
    assert res[6].startswith("[1, 0] 2")  # relay 0 on; two orders refused

    enrol = messages.decode(frame.split(board_key[0])[0])
    assert isinstance(enrol, messages.Enrol)
    ver = crypto.Verifier(enrol.pubkey)
    acks = []
    seqs = set()
    for topic, payload in frames:
        msg = frame.open_frame(topic, payload, lambda m: ver)
        if isinstance(msg, messages.Ack):
            acks.append(msg)
        elif isinstance(msg, messages.Reading):
            seqs.add(msg.seq)
    first = acks[0]
    assert (first.oseq, first.status, first.bat_w, first.ev_ma, first.pv_limit_w, first.relay_state) == (
        5,
        messages.ST_CLAMPED,
        2500,
        16_000,
        3000,
        0b01,
    )
    assert first.reason == "ev_ma limited to 16000"
    assert [a.status for a in acks[1:]] == [messages.ST_REJECTED, messages.ST_REJECTED]
    assert "signature" in acks[1].reason and "replayed order 5" in acks[2].reason
    # the broker restart lost nothing: readings spooled on the board were replayed in order. One
    # spooled at the shutdown may have reached the broker already (only its PUBACK cut off)
    assert seqs in (set(range(seq)), set(range(seq - left))) and sent + left >= seq - 1
