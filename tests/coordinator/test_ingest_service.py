"""The ingest service against a real Mosquitto: signed readings from several boards land in the
ledger exactly once, through a kill -9 of the coordinator in the middle of the stream."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coordinator.ledger import Ledger
from coordinator.market import Tariff
from coordinator.service.mqtt import Connection
from coordinator.transaction.settlement import settle
from sim.board import VirtualBoard
from tests.broker import Mosquitto

ROOT = Path(__file__).resolve().parents[2]
START = 1_750_000_000
N_BOARDS = 5
N_READINGS = 400  # per board


def start_coordinator(cfg: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "coordinator", "run", "--config", str(cfg)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def wait_for(pred, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_kill_9_mid_stream_loses_and_duplicates_nothing_and_settles(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    db = tmp_path / "ledger.db"
    boards = [
        VirtualBoard("g1", f"m{i:02d}", bytes([i + 1]) * 32, lambda ts, i=i: 500 + 100 * i)
        for i in range(N_BOARDS)
    ]
    with Ledger.open(db) as led:
        led.add_member("alice", "Alice", "prosumer", now=START)
        for b in boards:
            led.add_board(b.board, "virtual", b.key.public, now=START, member_id="alice", status="active")
    cfg = tmp_path / "coordinator.toml"
    cfg.write_text(
        f'[coordinator]\ngrid = "g1"\nledger = "{db}"\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {mosquitto.port}\n'
        "[ingest]\nbatch = 100\nflush_ms = 50\n"
        '[market]\nscheme = "pairwise"\ninterval_s = 900\nsettle_delay_s = 0\n'
    )
    proc = start_coordinator(cfg)
    assert proc.stdout is not None
    assert "peergrid coordinator" in proc.stdout.readline()
    time.sleep(0.5)  # subscribed (its persistent session then queues what arrives while it is down)

    frames = []
    for k in range(N_READINGS):
        for b in boards:
            frames.append(b.reading(int(time.time()) - 3600 + 5 * k))

    async def publish() -> None:
        async with Connection(mosquitto.address, "boards") as conn:
            for i, (topic, fr) in enumerate(frames):
                await conn.publish(topic, fr)
                if i == len(frames) // 3:
                    os.kill(proc.pid, signal.SIGKILL)  # mid-stream, batches half written
            # a replay of an old frame and a duplicate are refused, not stored twice
            await conn.publish(*frames[10])

    asyncio.run(publish())
    proc.wait()
    proc2 = start_coordinator(cfg)
    try:
        total = N_BOARDS * N_READINGS

        def stored() -> int:
            with Ledger.open(db) as led:
                return led.count_readings()

        assert wait_for(lambda: stored() >= total, 30), f"stored {stored()} of {total}"
        time.sleep(0.5)
    finally:
        proc2.send_signal(signal.SIGTERM)
        proc2.wait(timeout=10)
    with Ledger.open(db) as led:
        assert led.count_readings() == total  # none lost, none twice
        for b in boards:
            rs = [r for r, _ in led.readings(b.board)]
            assert [r.seq for r in rs] == list(range(N_READINGS))
            assert rs[-1].e_imp == b.e_imp  # what the board measured, to the mWh
        assert led.rejections().get("replay", 0) + led.rejections().get("duplicate", 0) >= 1
        # the interval loop settled the intervals that were over while readings still arrived;
        # readings that came late count in the next interval: settle up to the last reading here
        assert led._conn.execute("SELECT count(*) FROM intervals").fetchone()[0] >= 2
        last = led._conn.execute("SELECT max(start) FROM intervals").fetchone()[0]
        s = last + 900
        while s <= int(time.time()):  # up to the running interval, which holds the late readings
            settle(led, s, 900, "pairwise", Tariff(4000, 20750, 6000, 3000), {}, now=int(time.time()))
            s += 900
        # each board's settled spans chain reading to reading, from its first settled reading to
        # its last one: the member is settled exactly what its boards measured over that span
        settled = led._conn.execute("SELECT sum(e_imp) FROM deliveries WHERE party='alice'").fetchone()[0]
        advance = 0
        for b in boards:
            spans = led._conn.execute(
                "SELECT seq0, seq1, e_imp0, e_imp1 FROM board_deliveries WHERE board_id=? ORDER BY interval",
                (b.board,),
            ).fetchall()
            assert spans and all(x[1] == y[0] for x, y in zip(spans, spans[1:], strict=False))
            assert spans[-1][1] == N_READINGS - 1 and spans[-1][3] == b.e_imp  # up to the last reading
            advance += spans[-1][3] - spans[0][2]
        assert settled == advance > 0
        for (start,) in led._conn.execute("SELECT start FROM intervals"):
            assert led._conn.execute(
                "SELECT sum(amount) FROM postings WHERE interval=?", (start,)
            ).fetchone()[0] in (0, None)
    verify = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", "ledger", "verify", "--config", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert verify.returncode == 0 and "0 problems" in verify.stdout, verify.stdout + verify.stderr


def test_two_workers_share_the_load(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Two ingest processes on one MQTT shared subscription: each reading stored once."""
    db = tmp_path / "ledger.db"
    boards = [VirtualBoard("g1", f"w{i:02d}", bytes([i + 50]) * 32, lambda ts: 800) for i in range(4)]
    with Ledger.open(db) as led:
        led.add_member("m", "M", "prosumer", now=START)
        for b in boards:
            led.add_board(b.board, "virtual", b.key.public, now=START, member_id="m", status="active")
    cfg = tmp_path / "coordinator.toml"
    cfg.write_text(
        f'[coordinator]\ngrid = "g1"\nledger = "{db}"\n'
        f'[broker]\nhost = "127.0.0.1"\nport = {mosquitto.port}\n'
        '[ingest]\nbatch = 50\nflush_ms = 20\ngroup = "ingest"\n'
    )
    workers = []
    for i in range(2):
        p = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "coordinator.cli",
                "coordinator",
                "run",
                "--config",
                str(cfg),
                "--ingest-only",
                "--client-id",
                f"worker-{i}",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert p.stdout is not None and "peergrid coordinator" in p.stdout.readline()
        workers.append(p)
    time.sleep(0.5)
    frames = [b.reading(int(time.time()) - 3600 + 5 * k) for k in range(150) for b in boards]

    async def publish() -> None:
        async with Connection(mosquitto.address, "boards") as conn:
            for topic, fr in frames:
                await conn.publish(topic, fr)

    asyncio.run(publish())
    try:

        def stored() -> int:
            with Ledger.open(db) as led:
                return led.count_readings()

        assert wait_for(lambda: stored() >= len(frames), 30), f"stored {stored()} of {len(frames)}"
    finally:
        for p in workers:
            p.send_signal(signal.SIGTERM)
        outs = [p.communicate(timeout=10)[0] for p in workers]
    with Ledger.open(db) as led:
        assert led.count_readings() == len(frames)
        for b in boards:
            assert [r.seq for r, _ in led.readings(b.board)] == list(range(150))
    assert all(p.returncode == 0 for p in workers), outs


def test_a_failed_commit_is_retried_not_lost(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A commit that fails (disk full, I/O error) leaves its messages unacknowledged: the service
    starts a new session and the broker delivers them again."""
    import sqlite3

    from coordinator.transaction.ingest_service import IngestService

    db = tmp_path / "ledger.db"
    b = VirtualBoard("g1", "m01", bytes([9]) * 32, lambda ts: 900)
    frames = [b.reading(int(time.time()) - 3600 + 10 * k) for k in range(200)]
    with Ledger.open(db) as led:
        led.add_member("m", "M", "prosumer", now=START)
        led.add_board("m01", "virtual", b.key.public, now=START, member_id="m", status="active")
        real = led.add_readings
        failures = [1]

        def flaky(batch):  # type: ignore[no-untyped-def]
            if failures:
                failures.pop()
                raise sqlite3.OperationalError("disk I/O error")
            return real(batch)

        led.add_readings = flaky  # type: ignore[method-assign]
        svc = IngestService(led, "g1", mosquitto.address, batch=50, flush_s=0.02, client_id="flaky")

        async def main() -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(svc.run(stop))
            await asyncio.sleep(0.3)
            async with Connection(mosquitto.address, "boards") as conn:
                for topic, fr in frames:
                    await conn.publish(topic, fr)
            for _ in range(200):
                if led.count_readings() >= len(frames):
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await task

        asyncio.run(main())
        assert not failures  # the failure happened
        assert [r.seq for r, _ in led.readings("m01")] == list(range(200))


def test_a_broker_that_closes_the_session_ends_it_cleanly_and_ingest_reconnects(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The broker goes away under the ingest (restart, crash): the session ends without a task
    whose exception nobody retrieves, the service reconnects, and readings sent after the broker
    is back are stored."""
    import gc

    from coordinator.transaction.ingest_service import IngestService

    db = tmp_path / "ledger.db"
    b = VirtualBoard("g1", "m01", bytes([9]) * 32, lambda ts: 900)
    frames = [b.reading(int(time.time()) - 3600 + 10 * k) for k in range(40)]
    unhandled: list[str] = []
    with Ledger.open(db) as led:
        led.add_member("m", "M", "prosumer", now=START)
        led.add_board("m01", "virtual", b.key.public, now=START, member_id="m", status="active")
        svc = IngestService(led, "g1", mosquitto.address, batch=50, flush_s=0.02, client_id="bounce")

        async def main() -> None:
            asyncio.get_running_loop().set_exception_handler(
                lambda loop, ctx: unhandled.append(str(ctx.get("message")))
            )
            stop = asyncio.Event()
            task = asyncio.create_task(svc.run(stop))
            await asyncio.sleep(0.3)
            async with Connection(mosquitto.address, "boards") as conn:
                for topic, fr in frames[:20]:
                    await conn.publish(topic, fr)
            for _ in range(100):
                if led.count_readings() >= 20:
                    break
                await asyncio.sleep(0.05)
            for _ in range(2):  # the broker closes the ingest's connection, twice
                await asyncio.to_thread(mosquitto.restart, 0.2)
                await asyncio.sleep(0.8)
            gc.collect()  # a task destroyed with its exception unread reports it here
            async with Connection(mosquitto.address, "boards") as conn:
                for topic, fr in frames[20:]:
                    await conn.publish(topic, fr)
            for _ in range(200):
                if led.count_readings() >= len(frames):
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await task
            gc.collect()

        asyncio.run(main())
        assert [r.seq for r, _ in led.readings("m01")] == list(range(40))
    assert unhandled == []


def test_the_session_ends_as_soon_as_the_broker_closes_it_and_its_error_is_read(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker closes the ingest's connection while the service waits for its next flush
    (a long ``flush_s``): the receive task's end wakes the service at once, the session ends with
    the broker's reason logged (read from the task, not left for the garbage collector to print
    as "Task exception was never retrieved"), and the service tries to reconnect."""
    import logging

    from coordinator.transaction.ingest_service import IngestService

    with Ledger.open(tmp_path / "ledger.db") as led:
        svc = IngestService(led, "g1", mosquitto.address, flush_s=60.0, client_id="shutdown")

        async def main() -> bool:
            stop = asyncio.Event()
            ready = svc.ready = asyncio.Event()
            task = asyncio.create_task(svc.run(stop))
            await ready.wait()
            await asyncio.to_thread(mosquitto.stop)
            ended = False
            for _ in range(200):  # a 60 s flush timer would hold the session far longer than this
                if "ingest session ended" in caplog.text:
                    ended = True
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await task
            return ended

        with caplog.at_level(logging.INFO, logger="peergrid"):
            ended = asyncio.run(main())
        mosquitto.start()
    assert ended, "the session did not end when the broker closed it"
    assert "ingest stream ended: the broker closed the connection" in caplog.text
