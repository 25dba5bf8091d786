"""Reconciliation's queries: the utility meter's periods and what settlement booked in them.

Everything a reconciliation reads decides what it posts, so these take the transaction
``ledger.transaction()`` yields.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass


@dataclass(frozen=True)
class UtilityPeriod:
    period_start: int
    period_end: int
    e_imp: int  # mWh
    e_exp: int
    reconciled: bool


def overlapping_period(tx: sqlite3.Connection, start: int, end: int) -> int | None:
    """The start of a stored utility period overlapping ``[start, end)``, or None."""
    row = tx.execute(
        "SELECT period_start FROM utility_readings WHERE period_start < ? AND period_end > ?", (end, start)
    ).fetchone()
    return None if row is None else int(row[0])


def add_period(tx: sqlite3.Connection, start: int, end: int, e_imp: int, e_exp: int) -> None:
    tx.execute(
        "INSERT INTO utility_readings (period_start, period_end, e_imp, e_exp) VALUES (?,?,?,?)",
        (start, end, e_imp, e_exp),
    )


def period(tx: sqlite3.Connection, start: int) -> UtilityPeriod | None:
    row = tx.execute(
        "SELECT period_end, e_imp, e_exp, reconciled FROM utility_readings WHERE period_start=?", (start,)
    ).fetchone()
    return None if row is None else UtilityPeriod(start, int(row[0]), int(row[1]), int(row[2]), bool(row[3]))


def mark_reconciled(tx: sqlite3.Connection, start: int) -> None:
    tx.execute("UPDATE utility_readings SET reconciled=1 WHERE period_start=?", (start,))


def straddles(tx: sqlite3.Connection, t: int) -> bool:
    """Whether a stored interval starts before ``t`` and ends after it."""
    q = "SELECT count(*) FROM intervals WHERE start < ? AND start + length > ?"
    return bool(tx.execute(q, (t, t)).fetchone()[0])


def settled_seconds(tx: sqlite3.Connection, start: int, end: int) -> int:
    """Seconds of settled intervals starting in ``[start, end)``."""
    row = tx.execute(
        "SELECT coalesce(sum(length), 0) FROM intervals WHERE state='settled' AND start >= ? AND start < ?",
        (start, end),
    ).fetchone()
    return int(row[0])


def supplier_energy(tx: sqlite3.Connection, supplier: str, start: int, end: int) -> list[tuple[int, int]]:
    """Per interval starting in ``[start, end)`` with trades with the supplier, the mWh it sold to
    and bought from the community (every kind of trade: schedules, imbalance, the clearing's)."""
    q = (
        "SELECT interval, coalesce(sum(CASE WHEN seller=? THEN energy END), 0), "
        "coalesce(sum(CASE WHEN buyer=? THEN energy END), 0) FROM trades "
        "WHERE interval>=? AND interval<? AND ? IN (buyer, seller) GROUP BY interval ORDER BY interval"
    )
    return [(int(s), int(b)) for _, s, b in tx.execute(q, (supplier, supplier, start, end, supplier))]


def last_interval(tx: sqlite3.Connection, start: int, end: int) -> int | None:
    """The start of the last stored interval starting in ``[start, end)``, or None."""
    row = tx.execute("SELECT max(start) FROM intervals WHERE start>=? AND start<?", (start, end)).fetchone()
    return None if row[0] is None else int(row[0])


def member_energy(tx: sqlite3.Connection, start: int, end: int) -> tuple[dict[str, int], dict[str, int]]:
    """Per party, the mWh it drew and fed in (measured) in intervals starting in ``[start, end)``;
    parties with none are left out."""
    rows = tx.execute(
        "SELECT party, sum(e_imp), sum(e_exp) FROM deliveries WHERE interval>=? AND interval<? "
        "GROUP BY party",
        (start, end),
    ).fetchall()
    drew = {str(p): int(i) for p, i, _ in rows if i}
    fed = {str(p): int(x) for p, _, x in rows if x}
    return drew, fed
