"""Billing's queries: a member's postings over a period, its membership and its invoices."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from coordinator.ledger.store import Ledger


def membership(ledger: Ledger, member: str) -> tuple[int, int | None] | None:
    """``(joined, left)`` of a member (Unix s; ``left`` None while a member), None for no member."""
    row = ledger._conn.execute("SELECT created, left_at FROM members WHERE id=?", (member,)).fetchone()
    return None if row is None else (int(row[0]), None if row[1] is None else int(row[1]))


def account_totals(ledger: Ledger, member: str, start: int, end: int) -> list[tuple[str, int, int]]:
    """``(account, mWh, nano-cent)`` of the member's postings for intervals in ``[start, end)``,
    summed per account, by account."""
    rows = ledger._conn.execute(
        "SELECT account, sum(energy), sum(amount) FROM postings WHERE party=? AND interval>=? AND interval<? "
        "GROUP BY account ORDER BY account",
        (member, start, end),
    ).fetchall()
    return [(str(a), int(e), int(m)) for a, e, m in rows]


def posted_intervals(ledger: Ledger, member: str, start: int, end: int) -> int:
    """How many intervals in ``[start, end)`` have postings of the member."""
    row = ledger._conn.execute(
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


def add_invoice(
    tx: sqlite3.Connection, member: str, period: str, total: int, now: int, start: int, end: int
) -> bool:
    """Record an invoice over ``[start, end)`` whose charges are posted with it; False (nothing
    written) when one for the member and period exists."""
    q = "SELECT 1 FROM invoices WHERE member_id=? AND period=?"
    if tx.execute(q, (member, period)).fetchone() is not None:
        return False
    tx.execute(
        "INSERT INTO invoices (member_id, period, total, created, period_start, period_end, charges_posted) "
        "VALUES (?,?,?,?,?,?,1)",
        (member, period, total, now, start, end),
    )
    return True


def charges_posted(ledger: Ledger, member: str, start: int, end: int) -> bool:
    """Whether an invoice of the member that posted its charges covers part of ``[start, end)``."""
    q = (
        "SELECT 1 FROM invoices WHERE member_id=? AND charges_posted=1 AND period_start<? AND period_end>? "
        "LIMIT 1"
    )
    return ledger._conn.execute(q, (member, end, start)).fetchone() is not None


def subscription(ledger: Ledger, member: str) -> int | None:
    """A member's own subscription (nano-cent per day) from its preferences; None for no member
    or preferences that cannot be read."""
    import json

    row = ledger._conn.execute("SELECT prefs FROM members WHERE id=?", (member,)).fetchone()
    if row is None:
        return None
    try:
        v = json.loads(row[0]).get("subscription_per_day", 0)
    except (ValueError, AttributeError):
        return None
    return v if type(v) is int and v >= 0 else None


def supplier_energy(ledger: Ledger, member: str, start: int, end: int) -> tuple[int, int]:
    """``(bought, sold)``: mWh the member bought from and sold to the supplier in intervals starting
    in ``[start, end)`` (its supplier trades, imbalance included)."""
    q = (
        "SELECT coalesce(sum(CASE WHEN account IN ('energy_bought_supplier', 'energy_bought_imbalance') "
        "THEN energy END), 0), coalesce(-sum(CASE WHEN account IN ('energy_sold_supplier', "
        "'energy_sold_imbalance') THEN energy END), 0) FROM postings "
        "WHERE party=? AND interval>=? AND interval<?"
    )
    b, s = ledger._conn.execute(q, (member, start, end)).fetchone()
    return int(b), int(s)


@dataclass(frozen=True)
class Document:
    """An issued invoice as stored: its number, what it bills and the document itself."""

    number: str
    seq: int
    member: str
    period: str
    start: int
    end: int
    timezone: str
    total: int  # nano-cent
    currency: str
    bundle_sha256: str
    html: bytes
    sha256: str
    created: int


def next_invoice_seq(tx: sqlite3.Connection) -> int:
    """The next invoice number's sequence (1 for the first): gapless, in the issuing transaction."""
    return int(tx.execute("SELECT coalesce(max(seq), 0) + 1 FROM invoice_documents").fetchone()[0])


def add_document(tx: sqlite3.Connection, d: Document) -> None:
    tx.execute(
        "INSERT INTO invoice_documents (number, seq, member_id, period, period_start, period_end, timezone, "
        "total, currency, bundle_sha256, html, sha256, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            d.number, d.seq, d.member, d.period, d.start, d.end, d.timezone, d.total, d.currency,
            d.bundle_sha256, d.html, d.sha256, d.created,
        ),
    )  # fmt: skip


_DOC = (
    "SELECT number, seq, member_id, period, period_start, period_end, timezone, total, currency, "
    "bundle_sha256, html, sha256, created FROM invoice_documents"
)


def _doc(row: tuple[Any, ...]) -> Document:
    n, seq, m, period, a, b, tz, total, cur, bundle, html, sha, created = row
    return Document(
        str(n), int(seq), str(m), str(period), int(a), int(b), str(tz), int(total), str(cur), str(bundle),
        bytes(html), str(sha), int(created),
    )  # fmt: skip


def documents(ledger: Ledger, member: str | None = None) -> list[Document]:
    """The issued invoices (of one member), by number."""
    if member is None:
        return [_doc(r) for r in ledger._conn.execute(_DOC + " ORDER BY seq")]
    return [_doc(r) for r in ledger._conn.execute(_DOC + " WHERE member_id=? ORDER BY seq", (member,))]


def document(ledger: Ledger, number: str) -> Document | None:
    row = ledger._conn.execute(_DOC + " WHERE number=?", (number,)).fetchone()
    return None if row is None else _doc(row)
