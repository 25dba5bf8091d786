"""The ingest service against hostile input on a real Mosquitto: a message too large for the lean
subscriber, a flood of refused frames, and an auto-enrolment claiming a retired board's id."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from coordinator.ledger import Ledger
from coordinator.provision import enrol
from coordinator.service.mqtt import Connection
from coordinator.transaction.ingest_service import IngestService
from coordinator.transaction.subscriber import MAX_PACKET
from protocol import frame, messages
from sim.board import VirtualBoard
from tests.broker import Mosquitto

START = 1_750_000_000


def serve(svc: IngestService, body: Callable[[], Awaitable[None]]) -> list[str]:
    """Run ``svc`` while ``body`` runs (both in this event loop), then stop it. Returns what the
    event loop reported as unhandled (e.g. "Task exception was never retrieved")."""
    unhandled: list[str] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, ctx: unhandled.append(str(ctx.get("message")))
        )
        stop = asyncio.Event()
        svc.ready = asyncio.Event()
        task = asyncio.create_task(svc.run(stop))
        try:
            await asyncio.wait_for(svc.ready.wait(), 10)
            await body()
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
            await asyncio.sleep(0.5)  # a receive task left behind would end now, its error unread
            gc.collect()

    asyncio.run(main())
    return unhandled


async def until(pred: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(0.05)
    return pred()


def test_an_oversized_message_is_refused_and_does_not_wedge_the_session(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """One QoS 1 message above the subscriber's packet limit on a board's topic (the broker takes
    up to 256 MB) was a poison pill: the session failed on it, and the broker redelivered it to
    every new session, so no reading was stored again."""
    b = VirtualBoard("g1", "m01", bytes([7]) * 32, lambda ts: 500)
    now = int(time.time())
    with Ledger.open(tmp_path / "ledger.db") as led:
        led.add_member("m", "M", "prosumer", now=START)
        led.add_board("m01", "virtual", b.key.public, now=START, member_id="m", status="active")
        svc = IngestService(led, "g1", mosquitto.address, flush_s=0.05, client_id="ingest-big")

        async def body() -> None:
            async with Connection(mosquitto.address, "m01") as conn:
                await conn.publish("peergrid/g1/b/m01/reading", b"\x00" * (2 * MAX_PACKET))
                for k in range(3):
                    await conn.publish(*b.reading(now - 60 + 10 * k))
            assert await until(lambda: led.count_readings() == 3, 10), f"stored {led.count_readings()}"
            assert await until(lambda: svc.ingest.rejected["oversize"] == 1, 5)

        serve(svc, body)
        assert led.rejections() == {"oversize": 1}


def test_a_flood_of_refused_frames_holds_no_memory_until_a_flush(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Refused messages waited for the next flush with their payloads, and with no reading to
    flush (a quiet grid) and the flood never pausing for ``flush_s``, that was never: QoS 0 frames
    (not bounded by the broker's in-flight window) piled up without limit."""
    with Ledger.open(tmp_path / "ledger.db") as led:
        svc = IngestService(led, "g1", mosquitto.address, flush_s=0.5, client_id="ingest-flood")
        held: list[int] = []

        async def body() -> None:
            async def sample() -> None:
                while True:
                    held.append(sum(len(m.payload) for m in svc._acks))
                    await asyncio.sleep(0.01)

            sampler = asyncio.create_task(sample())
            async with Connection(mosquitto.address, "flooder") as conn:
                for i in range(3000):
                    await conn.publish(f"peergrid/g1/b/x{i % 50}/reading", b"\xff" * 400, qos=0)
                    if i % 100 == 0:
                        await asyncio.sleep(0.01)  # a steady stream, never quiet for flush_s
            assert await until(lambda: svc.ingest.rejected["malformed"] >= 2500, 10)
            sampler.cancel()

        unhandled = serve(svc, body)
        assert max(held) < 400 * 50, f"held {max(held)} bytes of refused payloads"
        # the session's receive task, busy with the flood as the service stopped, was left reading
        # after its cancel was lost, and died unread when the connection closed
        assert unhandled == []


def test_auto_enrol_never_revives_a_retired_or_pending_board(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """With ``auto_enrol``, an Enrol for an id the registry already holds (retired: "never
    enrolled again"; pending: awaiting the operator) enrolled whatever key it carried; readings
    signed with it were stored, and a retired board's are settled for its former member."""
    old = VirtualBoard("g1", "b-old", bytes([1]) * 32, lambda ts: 800)
    thief = VirtualBoard("g1", "b-old", bytes([2]) * 32, lambda ts: 9_000_000)
    waiting = VirtualBoard("g1", "b-wait", bytes([3]) * 32, lambda ts: 800)
    squatter = VirtualBoard("g1", "b-wait", bytes([4]) * 32, lambda ts: 800)
    new = VirtualBoard("g1", "b-new", bytes([5]) * 32, lambda ts: 300)
    now = int(time.time())
    with Ledger.open(tmp_path / "ledger.db") as led:
        led.add_member("alice", "Alice", "prosumer", now=START)
        led.add_board("b-old", "virtual", old.key.public, now=START, member_id="alice", status="active")
        _, fr = old.reading(now - 600)
        raw, sig = frame.split(fr)
        led.add_readings([(messages.decode(bytes(raw)), bytes(sig))])
        enrol.retire(led, "b-old")
        led.add_board("b-wait", "virtual", waiting.key.public, now=START, status="pending")
        svc = IngestService(
            led, "g1", mosquitto.address, flush_s=0.05, auto_enrol=True, client_id="ingest-ae"
        )

        async def body() -> None:
            async with Connection(mosquitto.address, "boards") as conn:
                for b in (thief, old, squatter, waiting, new):
                    b.seq = 1000
                    await conn.publish(*b.enrolment(now))
                    for k in range(3):
                        await conn.publish(*b.reading(now - 60 + 10 * k))
            assert await until(lambda: len(list(led.readings("b-new"))) == 3, 10)  # auto-enrolled
            await asyncio.sleep(0.3)

        serve(svc, body)
        assert [r.seq for r, _ in led.readings("b-old")] == [0]  # only what it stored before retiring
        assert list(led.readings("b-wait")) == []
        status = {b.board_id: b.status for b in led.boards()}
        assert status == {"b-old": "retired", "b-wait": "pending", "b-new": "active"}
        assert led.keys_of("b-wait")[0][0] == waiting.key.public
        assert led.rejections() == {"not_enrollable": 4, "unknown_board": 12}
