"""``peergrid demo``: one end-to-end round on the embedded broker (or a given Mosquitto).

A virtual board enrols and publishes signed cumulative readings; the coordinator verifies each
frame against the board's key and topic and prints it; then three bad frames (forged, replayed,
on another board's topic) show the refusals. Later issues grow this into a simulated day.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TextIO

from coordinator.broker import EmbeddedBroker
from coordinator.ingest import Ingest
from coordinator.mqtt import BrokerAddress, Connection
from protocol import messages, topics
from sim.board import VirtualBoard

GRID = "demo"


@dataclass
class DemoResult:
    accepted: int
    rejected: dict[str, int]
    expected_rejections: dict[str, int]

    @property
    def ok(self) -> bool:
        return self.rejected == self.expected_rejections


def household(ts: int) -> int:
    """Net power of a home with 5 kWp of PV, in W: a load with a daily shape minus a clear sky."""
    hour = (ts % 86_400) / 3600
    load = 350 + 250 * math.sin(math.pi * ((hour - 6) % 24) / 24) ** 2 + (ts * 7919 % 97)
    pv = max(0.0, 5000 * math.sin(math.pi * (hour - 6) / 12)) if 6 <= hour <= 18 else 0.0
    return int(load - pv)


@contextlib.asynccontextmanager
async def _broker(addr: BrokerAddress | None) -> AsyncIterator[BrokerAddress]:
    if addr is not None:
        yield addr
        return
    async with EmbeddedBroker() as embedded:
        yield embedded


async def run(
    *,
    broker: BrokerAddress | None = None,
    readings: int = 12,
    step_s: int = 600,
    out: TextIO = sys.stdout,
) -> DemoResult:
    now = int(time.time())
    start = now - now % 86_400 - 86_400 + 9 * 3600  # yesterday 09:00 UTC: sun on the roof
    board = VirtualBoard(GRID, "m01", bytes(range(32)), household, board_type="virtual")
    ingest = Ingest(GRID, now=time.time, auto_enrol=True)
    expected = 1 + readings + 3  # enrolment, readings, three bad frames
    seen = 0
    done = asyncio.Event()
    subscribed = asyncio.Event()

    async def coordinator(addr: BrokerAddress) -> None:
        nonlocal seen
        async with Connection(addr, "peergrid-coordinator") as conn:
            await conn.subscribe(topics.board_filter(GRID, "enrol"))
            await conn.subscribe(topics.board_filter(GRID, "reading"))
            subscribed.set()
            async for m in conn.messages():
                msg = ingest.handle(m.topic, m.payload)
                seen += 1
                if isinstance(msg, messages.Enrol):
                    print(f"enrolled  {msg.board}  key {msg.pubkey.hex()[:16]}...", file=out)
                elif isinstance(msg, messages.Reading):
                    t = time.strftime("%Y-%m-%d %H:%M", time.gmtime(msg.ts))
                    print(
                        f"verified  {msg.board} seq {msg.seq:3d}  {t}  import {msg.e_imp / 1e6:8.3f} kWh"
                        f"  export {msg.e_exp / 1e6:8.3f} kWh  power {msg.p:+6d} W",
                        file=out,
                    )
                if seen >= expected:
                    done.set()
                    return

    async def meter(addr: BrokerAddress) -> None:
        await subscribed.wait()
        async with Connection(addr, "board-m01") as conn:
            await conn.publish(*board.enrolment(now))
            frames = []
            for i in range(readings):
                topic, fr = board.reading(start + i * step_s)
                frames.append((topic, fr))
                await conn.publish(topic, fr)
            # Three frames a coordinator must refuse:
            forger = VirtualBoard(GRID, "m01", bytes(32), household)
            forger.seq = board.seq
            await conn.publish(*forger.reading(start + readings * step_s))  # wrong key
            await conn.publish(*frames[1])  # replay of an accepted reading
            other = topics.board_topic(GRID, "m02", "reading")
            await conn.publish(other, frames[-1][1])  # moved to another board's topic

    async with _broker(broker) as addr:
        where = "embedded broker" if broker is None else "broker"
        print(f"peergrid demo: {where} at {addr.host}:{addr.port}, grid {GRID!r}", file=out)
        tasks = [asyncio.create_task(coordinator(addr)), asyncio.create_task(meter(addr))]
        try:
            await asyncio.wait_for(done.wait(), timeout=60)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    for code, n in sorted(ingest.rejected.items()):
        print(f"rejected  {n} x {code}", file=out)
    result = DemoResult(
        accepted=ingest.accepted["Reading"],
        rejected=dict(ingest.rejected),
        expected_rejections={"bad_signature": 1, "replay": 1, "wrong_topic": 1},
    )
    print(
        f"summary   {result.accepted}/{readings} readings verified and accepted; "
        f"{sum(result.rejected.values())} bad frames refused; "
        f"{'OK' if result.ok else 'UNEXPECTED'}",
        file=out,
    )
    return result
