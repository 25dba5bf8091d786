"""The exports' queries (CSV and the dashboard): boards by member, members, trades of a period."""

from __future__ import annotations

from coordinator.ledger.store import Ledger

# interval, n, buyer, seller, mWh, price (mc/kWh), fee (mc/kWh)
Trade = tuple[int, int, str, str, int, int, int]


def boards_of(ledger: Ledger, member: str | None = None) -> list[tuple[str, str | None]]:
    """``(board, member)`` of the member's boards (every board's for None), by board id."""
    q = "SELECT id, member_id FROM boards"
    if member is not None:
        rows = ledger._conn.execute(q + " WHERE member_id=? ORDER BY id", (member,))
    else:
        rows = ledger._conn.execute(q + " ORDER BY id")
    return [(str(b), None if m is None else str(m)) for b, m in rows]


def member_exists(ledger: Ledger, member: str) -> bool:
    return ledger._conn.execute("SELECT 1 FROM members WHERE id=?", (member,)).fetchone() is not None


def trades(ledger: Ledger, start: int, end: int, member: str | None = None) -> list[Trade]:
    """The trades of intervals in ``[start, end)`` (those the member bought or sold in, for a
    member), in interval and trade order."""
    q = "SELECT interval, n, buyer, seller, energy, price, fee FROM trades WHERE interval>=? AND interval<?"
    args: tuple[object, ...] = (start, end)
    if member is not None:
        q += " AND (buyer = ? OR seller = ?)"
        args += (member, member)
    return [
        (int(i), int(n), str(b), str(s), int(e), int(p), int(f))
        for i, n, b, s, e, p, f in ledger._conn.execute(q + " ORDER BY interval, n", args)
    ]
