"""Queries of the service's interval loop: where settlement stands, and the newest stored Result."""

from __future__ import annotations

from coordinator.ledger.store import Ledger


def settled_end(ledger: Ledger) -> int | None:
    """The end (Unix s) of the last settled interval; None before the first settlement. Intervals
    never overlap, so it is the newest interval's end (read by the primary key: ingest asks at
    every commit, and a year holds 35,040 intervals)."""
    row = ledger._conn.execute("SELECT start + length FROM intervals ORDER BY start DESC LIMIT 1").fetchone()
    return None if row is None else int(row[0])


def first_reading_ts(ledger: Ledger) -> int | None:
    """The timestamp of the oldest stored reading; None with none stored."""
    row = ledger._conn.execute("SELECT min(ts) FROM readings").fetchone()
    return None if row[0] is None else int(row[0])


def newest_result(ledger: Ledger) -> tuple[int, bytes] | None:
    """(start, signed Result frame) of the newest settled interval that has one."""
    row = ledger._conn.execute(
        "SELECT start, result_frame FROM intervals WHERE state='settled' AND result_frame IS NOT NULL "
        "ORDER BY start DESC LIMIT 1"
    ).fetchone()
    return None if row is None else (int(row[0]), bytes(row[1]))
