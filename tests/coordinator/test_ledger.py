"""The SQLite ledger: migrations, idempotent append-only readings, key history, kill -9."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coordinator.ledger import Ledger, LedgerError
from coordinator.ledger.schema import MIGRATIONS
from coordinator.members import MemberPrefs
from protocol import messages


def reading(seq: int, board: str = "m01") -> messages.Reading:
    return messages.Reading(
        board=board,
        seq=seq,
        ts=1_750_000_000 + 10 * seq,
        e_imp=100 * seq,
        e_exp=7 * seq,
        p=360,
        u=230_000,
        bat_soc=500 if seq % 2 else None,
        flags=0,
    )


def test_migrations_and_reopen(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    with Ledger.open(db) as led:
        assert led.version == len(MIGRATIONS)
        assert led._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Ledger.open(db) as led:  # idempotent
        assert led.version == len(MIGRATIONS)
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    con.close()
    with pytest.raises(LedgerError, match="newer than this peergrid"):
        Ledger.open(db)


def test_readings_idempotent_and_append_only(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as led:
        batch = [(reading(i), bytes([i]) * 64) for i in range(10)]
        assert led.add_readings(batch) == 10
        assert led.add_readings(batch[5:] + [(reading(10), bytes(64))]) == 1  # duplicates ignored
        assert led.count_readings() == 11
        got = list(led.readings("m01"))
        assert [r for r, _ in got] == [reading(i) for i in range(11)]
        assert got[3][1] == bytes([3]) * 64
        assert led.last_readings()["m01"].seq == 10
        assert led.register_at("m01", 1_750_000_000 + 55).seq == 5  # type: ignore[union-attr]
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            led._conn.execute("UPDATE readings SET e_imp = 0")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            led._conn.execute("DELETE FROM readings")


def test_registry_and_key_rotation(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as led:
        led.add_member("alice", "Alice", "prosumer", now=1, feeder="f1", prefs=MemberPrefs(max_buy=25_000))
        with pytest.raises(LedgerError, match="cannot add member"):
            led.add_member("alice", "Again", "consumer", now=2)
        with pytest.raises(LedgerError, match="not an identifier"):
            led.add_member("Bob Smith", "Bob", "consumer", now=2)
        assert not led.has_board("m01")
        led.add_board("m01", "esp32-pzem004t", b"\x01" * 32, now=10)
        assert led.boards("pending")[0].board_id == "m01" and led.has_board("m01")
        led.activate_board("m01", "alice")
        led.rotate_key("m01", b"\x02" * 32, now=20)
        (b,) = led.boards("active")
        assert (b.member_id, b.pubkey) == ("alice", b"\x02" * 32)
        assert led.keys_of("m01") == [(b"\x01" * 32, 10, 20), (b"\x02" * 32, 20, None)]
        assert led.members()[0].prefs == MemberPrefs(max_buy=25_000)


WRITER = """
import sys
from coordinator.ledger import Ledger
from protocol import messages
led = Ledger.open(sys.argv[1])
seq = 0
while True:
    batch = []
    for _ in range(200):
        r = messages.Reading(board="m01", seq=seq, ts=1_750_000_000 + seq, e_imp=seq, e_exp=0, p=0,
                             u=230_000, flags=0)
        batch.append((r, bytes(64)))
        seq += 1
    led.add_readings(batch)
    print(seq, flush=True)  # committed: everything below seq is durable
"""


@pytest.mark.parametrize("delay", [0.3, 0.55, 0.8])
def test_kill_9_loses_no_committed_reading(tmp_path: Path, delay: float) -> None:
    db = tmp_path / "l.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    committed = int(out.split()[-1]) if out.split() else 0
    assert committed > 0
    with Ledger.open(db) as led:
        n = led.count_readings()
        assert n >= committed
        assert n % 200 == 0  # whole batches only: a batch is one transaction
        seqs = [r.seq for r, _ in led.readings("m01")]
        assert seqs == list(range(n))
