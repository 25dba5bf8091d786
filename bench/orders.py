"""Interval close to every order acknowledged, for many storage boards, over Mosquitto.

When an interval begins (the previous one closes) the coordinator's dispatch step runs as its
interval loop runs it (``Dispatch.run``: the ex-ante market of the batteries, one signed Order per
board, stored, published at QoS 1); a separate process
(``bench.order_boards``) runs the firmware's order handler for every board, which verifies the
order and answers with a signed Ack; the coordinator's ingest service verifies each Ack and
records it in the ledger. The latency of a board is from the close to its Ack being recorded;
p50 and p99 over the boards, beside the target of 1 s on loopback.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from bench.order_boards import board_id, board_key
from bench.reliability.faults import BROKER_CONF
from bench.table import Row
from coordinator.config import Config
from coordinator.ledger import Ledger
from coordinator.ledger.store import ACK_RECORDED
from coordinator.members import MemberPrefs, StoragePrefs
from coordinator.service.app import Runtime, build
from coordinator.service.mqtt import Connection
from protocol import crypto, messages
from tests.broker import Mosquitto

ROOT = Path(__file__).resolve().parent.parent
GRID = "orders"
LENGTH = 900
TARIFF_ROW = (4_000, 20_750, 6_000, 3_000)  # feed-in, retail, grid fee, local grid fee
STORAGE = MemberPrefs(storage=StoragePrefs(10_000_000, 3_300, 3_300, min_soc=100))


def _setup(led: Ledger, n: int, now: int) -> None:
    readings = []
    for i in range(n):
        b = board_id(i)
        led.add_member(b, b, "storage", now=now, feeder=f"f{i % 8}", prefs=STORAGE)
        led.add_board(b, "virtual", board_key(i).public, now=now, member_id=b, status="active")
        soc = 200 + (i * 37) % 700
        r = messages.Reading(board=b, seq=1, ts=now - 30, e_imp=1_000, e_exp=0, p=0, u=230_000,
                             bat_soc=soc, bat_p=0, ev_state=None, ev_p=None, flags=0)  # fmt: skip
        readings.append((r, bytes(64)))
    led.add_readings(readings)


def measure(n: int) -> tuple[list[float], float, int]:
    """Per-board latencies (s, close to Ack recorded), the dispatch step's own time, orders sent."""
    key = crypto.SigningKey(b"\x42" * 32)
    now = int(time.time())
    start = now - now % LENGTH  # the interval that just began: the loop dispatches it at once
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        broker = Mosquitto(d, BROKER_CONF)
        broker.start()
        boards = None
        try:
            with Ledger.open(d / "l.db") as led:
                _setup(led, n, now)
            boards = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.order_boards",
                    str(broker.port),
                    GRID,
                    str(n),
                    key.public.hex(),
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=subprocess.PIPE,
                text=True,
            )
            assert boards.stdout is not None
            if boards.stdout.readline().strip() != "ready":
                raise RuntimeError("the boards did not start")
            acked: dict[str, float] = {}
            cfg = Config(GRID, d / "l.db", broker.address, batch=500, flush_ms=50, interval_s=LENGTH,
                         tariff=TARIFF_ROW)  # fmt: skip

            async def main() -> tuple[float, float, int]:
                stop = asyncio.Event()
                async with Connection(broker.address, "bench-orders-market") as conn:
                    # the coordinator as ``coordinator run`` builds it; its interval loop is not
                    # started: the bench runs the dispatch step itself, at the interval's close
                    svc = build(cfg, Runtime(client_id="bench-orders", key=key, publish=conn.publish))
                    record = svc.ledger.record_acks

                    def timed(acks: Iterable[tuple[str, int, int, bytes]]) -> list[str]:
                        batch = list(acks)
                        done = record(batch)
                        t = time.perf_counter()  # committed
                        for (board_id, *_), status in zip(batch, done, strict=True):
                            if status == ACK_RECORDED:
                                acked.setdefault(board_id, t)
                        return done

                    svc.ledger.record_acks = timed  # type: ignore[method-assign]
                    ready = svc.ingest.ready = asyncio.Event()
                    tasks = svc.start(stop, intervals=False)
                    try:
                        await ready.wait()
                        assert svc.dispatch is not None
                        close = time.perf_counter()
                        sent = await svc.dispatch.run(start)
                        step = time.perf_counter() - close
                        deadline = time.perf_counter() + 60
                        while len(acked) < len(sent) and time.perf_counter() < deadline:
                            await asyncio.sleep(0.01)
                    finally:
                        stop.set()
                        await asyncio.gather(*tasks)
                        await svc.close()
                return close, step, len(sent)

            close, step, sent = asyncio.run(main())
            return sorted(t - close for t in acked.values()), step, sent
        finally:
            if boards is not None:
                boards.send_signal(signal.SIGTERM)
                boards.communicate(timeout=20)
            broker.stop()


def _pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def run(ci: bool) -> list[Row]:
    n = 100 if ci else 1_000
    lat, step, sent = measure(n)
    got = f"{len(lat)}/{sent} acked"
    p50, p99 = _pct(lat, 0.5) * 1000, _pct(lat, 0.99) * 1000
    return [
        Row(f"orders: close to ack recorded, p50 ({n:,} boards, {got})", p50, "ms", 1000, "target"),
        Row(f"orders: close to ack recorded, p99 ({n:,} boards)", p99, "ms", 1000, "target", "p99 < 1 s"),
        Row(f"orders: dispatch step (market, sign, store, publish {sent:,})", step * 1000, "ms", p99, "p99"),
    ]
