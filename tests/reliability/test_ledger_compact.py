"""The compact readings table (schema migration "reading_rows"): nothing lost or changed when an
existing ledger migrates, and every readings query answers as a plain scan of the rows would."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.ledger import Ledger
from coordinator.ledger.schema import MIGRATIONS
from protocol import messages

T0 = 1_750_000_000
COMPACT = next(i for i, m in enumerate(MIGRATIONS) if "CREATE TABLE reading_rows" in m)


def reading(board: str, seq: int, ts: int, **kw: int | None) -> messages.Reading:
    fields: dict[str, int | None] = dict(bat_soc=None, bat_p=None, ev_state=None, ev_p=None)
    fields.update(kw)
    return messages.Reading(
        board=board,
        seq=seq,
        ts=ts,
        e_imp=1_000 + seq,
        e_exp=seq * 7,
        p=-300,
        u=230_000,
        flags=seq % 3,
        **fields,
    )


EXTRAS = [
    {},
    {"bat_soc": 0, "bat_p": -10_000_000},
    {"bat_soc": 1000, "bat_p": 10_000_000, "ev_state": 3, "ev_p": 10_000_000},
    {"ev_state": 0, "ev_p": 0},
    {"bat_p": 0},
]


def _columns(r: messages.Reading) -> tuple[object, ...]:
    """A reading's columns in the old readings table (and the view that replaced it)."""
    return (r.board, r.seq, r.ts, r.e_imp, r.e_exp, r.p, r.u, r.bat_soc, r.bat_p, r.ev_state, r.ev_p, r.flags)


def test_existing_ledger_migrates_without_losing_a_reading(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    for i in range(COMPACT):  # a ledger as the release before the compact table left it
        conn.executescript(f"BEGIN;{MIGRATIONS[i]}PRAGMA user_version={i + 1};COMMIT;")
    rows = []
    for k in range(30):
        r = reading(f"m{k % 3}", k, T0 + 10 * k, **EXTRAS[k % len(EXTRAS)])
        rows.append((r, bytes([k]) * 64))
        conn.execute(
            "INSERT INTO readings VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            _columns(r) + (bytes([k]) * 64,),
        )
    conn.close()
    with Ledger.open(db) as led:
        assert led.version == len(MIGRATIONS)
        assert led.count_readings() == 30
        for b in ("m0", "m1", "m2"):
            assert list(led.readings(b)) == [(r, s) for r, s in rows if r.board == b]
        # the view shows the same rows as the old table did, optional fields included
        got = led._conn.execute("SELECT * FROM readings ORDER BY seq").fetchall()
        assert [g[:12] for g in got] == [_columns(r) for r, _ in rows]
        assert led._conn.execute("SELECT min(ts) FROM readings").fetchone()[0] == T0
        # rows written through the view land in the compact table like add_readings' rows
        extra = reading("m9", 3, T0 + 99, bat_soc=7, ev_p=11_000)
        for _ in range(2):
            led._conn.execute(
                "INSERT OR IGNORE INTO readings VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                _columns(extra) + (b"\x09" * 64,),
            )
        assert list(led.readings("m9")) == [(extra, b"\x09" * 64)] and led.register_at("m9", T0 + 99)
        led._conn.execute("DELETE FROM readings WHERE 0")  # the view takes statements that touch no row
        # still append-only, through the view and underneath it
        for sql in ("UPDATE readings SET e_imp = 0", "DELETE FROM readings", "DELETE FROM reading_rows"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                led._conn.execute(sql)
        assert led.count_readings() == 31


def test_optional_fields_and_idempotence(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as led:
        batch = [(reading("b1", k, T0 + k, **EXTRAS[k % len(EXTRAS)]), bytes([k]) * 64) for k in range(10)]
        assert led.add_readings(batch) == 10
        assert led.add_readings(batch[3:] + [(reading("b2", 0, T0), bytes(64))]) == 1
        assert led.count_readings() == 11
        assert list(led.readings("b1")) == batch
        assert [r for r, _ in led.readings_desc("b1", 3)] == [r for r, _ in batch[::-1][:3]]
        assert led.latest_reading("b2") == reading("b2", 0, T0)
        assert led.latest_readings() == {"b1": batch[-1][0], "b2": reading("b2", 0, T0)}
        assert list(led.readings("nobody")) == [] and led.register_at("nobody", T0) is None
        assert list(led.readings_by_seq("b1", 2, 4)) == batch[2:5]
        last = led.last_readings()
        assert (last["b1"].seq, last["b2"].seq) == (9, 0)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.integers(min_value=-4000, max_value=5000), min_size=1, max_size=40),
    gaps=st.lists(st.integers(min_value=1, max_value=3), min_size=40, max_size=40),
    probes=st.lists(st.integers(min_value=T0 - 3600, max_value=T0 + 80_000), min_size=1, max_size=6),
)
def test_time_queries_match_a_scan(tmp_path_factory: pytest.TempPathFactory, steps: list[int],
                                   gaps: list[int], probes: list[int]) -> None:  # fmt: skip
    """Clocks may step back (sequence numbers still rise): the hour spans must not miss a row."""
    db = tmp_path_factory.mktemp("q") / "l.db"
    rows = []
    ts, seq = T0, 0
    for step, gap in zip(steps, gaps, strict=False):
        ts = max(0, ts + step)
        seq += gap
        rows.append(reading("b", seq, ts))
    with Ledger.open(db) as led:
        led.add_readings([(r, bytes(64)) for r in rows])
        for t in probes:
            before = [r for r in rows if r.ts <= t]
            want = max(before, key=lambda r: (r.ts, r.seq)) if before else None
            got = led.register_at("b", t)
            assert (got.seq if got else None) == (want.seq if want else None)
            for span in (1, 900, 7200):
                inside = [r for r in rows if t <= r.ts < t + span]
                assert [r for r, _ in led.readings("b", t, t + span)] == inside
