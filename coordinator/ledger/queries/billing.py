"""Billing's queries: a member's postings over a period, its membership and its invoices."""

from __future__ import annotations

import sqlite3

from coordinator.ledger.store import Ledger


def membership(ledger: Ledger, member: str) -> tuple[int, int | None] | None:
    """``(joined, left)`` of a member (Unix s; ``left`` None while a member), None for no member."""
    row = ledger.conn.execute("SELECT created, left_at FROM members WHERE id=?", (member,)).fetchone()
    return None if row is None else (int(row[0]), None if row[1] is None else int(row[1]))


def account_totals(ledger: Ledger, member: str, start: int, end: int) -> list[tuple[str, int, int]]:
    """``(account, mWh, nano-cent)`` of the member's postings for intervals in ``[start, end)``,
    summed per account, by account."""
    rows = ledger.conn.execute(
        "SELECT account, sum(energy), sum(amount) FROM postings WHERE party=? AND interval>=? AND interval<? "
        "GROUP BY account ORDER BY account",
        (member, start, end),
    ).fetchall()
    return [(str(a), int(e), int(m)) for a, e, m in rows]


def posted_intervals(ledger: Ledger, member: str, start: int, end: int) -> int:
    """How many intervals in ``[start, end)`` have postings of the member."""
    row = ledger.conn.execute(
        "SELECT count(DISTINCT interval) FROM postings WHERE party=? AND interval>=? AND interval<?",
        (member, start, end),
    ).fetchone()
    return int(row[0])


def invoice_periods(tx: sqlite3.Connection, member: str) -> list[str]:
    """The period keys of the invoices issued for the member."""
    return [str(p) for (p,) in tx.execute("SELECT period FROM invoices WHERE member_id=?", (member,))]


def settled_until(tx: sqlite3.Connection) -> int | None:
    """The end of the last settled interval (Unix s), None before the first."""
    row = tx.execute("SELECT max(start + length) FROM intervals WHERE state='settled'").fetchone()
    return None if row[0] is None else int(row[0])


def add_invoice(tx: sqlite3.Connection, member: str, period: str, total: int, now: int) -> bool:
    """Record an invoice; False (nothing written) when one for the member and period exists."""
    q = "SELECT 1 FROM invoices WHERE member_id=? AND period=?"
    if tx.execute(q, (member, period)).fetchone() is not None:
        return False
    tx.execute("INSERT INTO invoices VALUES (?,?,?,?)", (member, period, total, now))
    return True
