"""Ingest end to end through Mosquitto: signed readings from many boards, published by a
separate process, verified, checked and committed to the SQLite ledger in batches; beside the
raw single-core Ed25519 verify rate measured in the same run. Also bytes stored per reading."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bench.table import Row, rate
from coordinator.ingest_service import IngestService
from coordinator.ledger import Ledger
from sim.board import VirtualBoard
from tests.broker import Mosquitto

ROOT = Path(__file__).resolve().parent.parent

# Many boards publish at once: keep a window of QoS 1 publishes in flight rather than waiting
# for each PUBACK, so the publisher is not what the benchmark measures.
PUBLISHER = """
import asyncio, logging, pickle, sys
from coordinator.mqtt import BrokerAddress, Connection
logging.disable(logging.WARNING)  # aiomqtt warns about the many publishes in flight: intended here
frames = pickle.load(open(sys.argv[1], "rb"))
async def main():
    async with Connection(BrokerAddress("127.0.0.1", int(sys.argv[2])), "bench-boards") as conn:
        for i in range(0, len(frames), 200):
            await asyncio.gather(*(conn.publish(t, f) for t, f in frames[i:i + 200]))
asyncio.run(main())
"""


def run(ci: bool) -> list[Row]:
    import pickle

    n_boards, per_board = (20, 50) if ci else (200, 100)
    boards = [
        VirtualBoard("bench", f"b{i:03d}", i.to_bytes(32, "big"), lambda t: 700) for i in range(n_boards)
    ]
    t0 = int(time.time()) - 7200
    frames = [b.reading(t0 + 10 * k) for k in range(per_board) for b in boards]
    total = len(frames)
    # the raw figure: verify the same frames' signatures with the library, one core
    from protocol import frame

    keys = {b.board: Ed25519PublicKey.from_public_bytes(b.key.public) for b in boards}
    jobs = []
    for topic, fr in frames[:2000]:
        body, sig = frame.split(fr)
        jobs.append((keys[topic.split("/")[3]], bytes(sig), frame.signed_bytes(1, topic, body)))
    it = iter(jobs * 1000)

    def one() -> None:
        k, s, d = next(it)
        k.verify(s, d)

    raw = rate(one, min(len(jobs), 2000), repeat=3)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        broker = Mosquitto(d)
        broker.start()
        try:
            with Ledger.open(d / "l.db") as led:
                led.add_member("m", "M", "prosumer", now=t0)
                for b in boards:
                    led.add_board(b.board, "virtual", b.key.public, now=t0, member_id="m", status="active")
                svc = IngestService(led, "bench", broker.address, batch=500, flush_s=0.05)
                (d / "frames.pkl").write_bytes(pickle.dumps(frames))

                async def main() -> float:
                    stop = asyncio.Event()
                    task = asyncio.create_task(svc.run(stop))
                    await asyncio.sleep(0.3)
                    pub = subprocess.Popen(
                        [sys.executable, "-c", PUBLISHER, str(d / "frames.pkl"), str(broker.port)],
                        cwd=ROOT,
                        env={**os.environ, "PYTHONPATH": str(ROOT)},
                    )
                    start = time.perf_counter()
                    while led.count_readings() < total and time.perf_counter() - start < 300:
                        await asyncio.sleep(0.02)
                    elapsed = time.perf_counter() - start
                    stop.set()
                    await task
                    pub.wait()
                    return elapsed

                elapsed = asyncio.run(main())
                stored = led.count_readings()
                led.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                led.conn.execute("VACUUM")
            size = (d / "l.db").stat().st_size
        finally:
            broker.stop()
    empty = 0
    with tempfile.TemporaryDirectory() as tmp:
        with Ledger.open(Path(tmp) / "e.db") as e:
            e.conn.execute("VACUUM")
        empty = (Path(tmp) / "e.db").stat().st_size
    return [
        Row(
            f"ingest through Mosquitto ({n_boards} boards, {total} readings)",
            stored / elapsed,
            "/s",
            raw,
            "raw verify/s",
            ">= 80% of raw",
        ),
        Row("ledger bytes per stored reading", (size - empty) / max(stored, 1), "B", 100, "target", "< 100"),
    ]
