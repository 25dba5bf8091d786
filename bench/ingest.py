"""Ingest end to end through Mosquitto: signed readings from many boards, published by a lean
separate process (``bench.mqttpub``: pre-built packets on a plain socket), verified, checked and
committed to the SQLite ledger in batches by 1 and by 2 ingest worker processes on an MQTT shared
subscription; beside the raw single-core Ed25519 verify rate measured in the same run. Also the
bytes the ledger stores per reading, as written and after VACUUM."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bench.reliability.faults import BROKER_CONF
from bench.table import Row, rate
from coordinator.ledger import Ledger
from coordinator.ledger.queries import bench as ledger_bench
from protocol import frame
from sim.board import VirtualBoard
from tests.broker import Mosquitto

ROOT = Path(__file__).resolve().parent.parent
GRID = "bench"


def _py(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )


def _decode_seq(fr: bytes) -> int:
    from protocol import codec, messages

    msg = messages.from_list(codec.unpack(bytes(frame.split(fr)[0])))
    assert isinstance(msg, messages.Reading)
    return msg.seq


def raw_verify_rate(boards: list[VirtualBoard], frames: list[tuple[str, bytes]]) -> float:
    """The library's single-core verify rate on the same frames' signed bytes."""
    keys = {b.board: Ed25519PublicKey.from_public_bytes(b.key.public) for b in boards}
    jobs = []
    for topic, fr in frames[:2000]:
        body, sig = frame.split(fr)
        jobs.append((keys[topic.split("/")[3]], bytes(sig), frame.signed_bytes(1, topic, body)))
    it = iter(jobs * 1000)

    def one() -> None:
        k, s, d = next(it)
        k.verify(s, d)

    return rate(one, len(jobs), repeat=3)


def ingest_run(
    d: Path, boards: list[VirtualBoard], frames: list[tuple[str, bytes]], workers: int, t0: int
) -> tuple[float, int]:
    """Readings/s stored by ``workers`` ingest processes, and how many were stored."""
    broker = Mosquitto(d, BROKER_CONF)
    broker.start()
    procs: list[subprocess.Popen[str]] = []
    try:
        db = d / "l.db"
        with Ledger.open(db) as led:
            led.add_member("m", "M", "prosumer", now=t0)
            for b in boards:
                led.add_board(b.board, "virtual", b.key.public, now=t0, member_id="m", status="active")
        (d / "frames.pkl").write_bytes(pickle.dumps(frames))
        group = ["ingest"] if workers > 1 else []
        for w in range(workers):
            procs.append(
                _py("bench.ingest_worker", str(db), str(broker.port), GRID, f"bench-ingest-{w}", *group)
            )
        for p in procs:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("ingest worker did not start")
        with Ledger.open(db) as led:
            start = time.perf_counter()
            pub = _py("bench.mqttpub", str(d / "frames.pkl"), str(broker.port))
            total = len(frames)
            last = _decode_seq(frames[-1][1])  # every board's last reading has this seq
            # a cheap probe while the workers run (a full count(*) would take CPU from them): one
            # key lookup per board for its last reading, then the full count once they are there
            while time.perf_counter() - start < 300:
                if ledger_bench.boards_with_reading(led, last) == len(boards):
                    if led.count_readings() >= total:
                        break
                time.sleep(0.01)
            elapsed = time.perf_counter() - start
            pub.wait(timeout=60)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.communicate(timeout=30)
        with Ledger.open(db) as led:
            stored = led.count_readings()
        return stored / elapsed, stored
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        broker.stop()


def ledger_bytes(db: Path) -> tuple[float, float]:
    """Bytes per stored reading beyond an empty ledger: as written (WAL checkpointed), after VACUUM."""
    with tempfile.TemporaryDirectory() as tmp:
        with Ledger.open(Path(tmp) / "e.db") as e:
            ledger_bench.vacuum(e)
        empty = (Path(tmp) / "e.db").stat().st_size
    with Ledger.open(db) as led:
        n = max(led.count_readings(), 1)
        ledger_bench.checkpoint(led)
        written = db.stat().st_size
        ledger_bench.vacuum(led)
        ledger_bench.checkpoint(led)
    return (written - empty) / n, (db.stat().st_size - empty) / n


def run(ci: bool) -> list[Row]:
    n_boards, per_board = (20, 50) if ci else (200, 100)
    boards = [VirtualBoard(GRID, f"b{i:03d}", i.to_bytes(32, "big"), lambda t: 700) for i in range(n_boards)]
    t0 = int(time.time()) - 7200
    frames = [b.reading(t0 + 10 * k) for k in range(per_board) for b in boards]
    total = len(frames)
    rows = []
    for workers in (1, 2):
        # measured right before each run, so a change in the machine's load shows in both figures
        raw = raw_verify_rate(boards, frames)
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            per_s, stored = ingest_run(d, boards, frames, workers, t0)
            rows.append(
                Row(
                    f"ingest via Mosquitto, {workers} worker{'s' if workers > 1 else ''} "
                    f"({n_boards} boards, {stored}/{total} stored)",
                    per_s,
                    "/s",
                    raw,
                    "raw verify/s, 1 core",
                    ">= 80% of raw",
                )
            )
            if workers == 1:
                written, vacuumed = ledger_bytes(d / "l.db")
    rows.append(Row("ledger bytes per reading (after VACUUM)", vacuumed, "B", 100, "target", "< 100"))
    rows.append(Row("ledger bytes per reading (as written)", written, "B", 100, "target"))
    return rows
