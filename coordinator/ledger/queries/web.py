"""The dashboard's queries: recent intervals, orders, trades, the delivery check's records, a
member's running bill and the access tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coordinator.ledger.queries.export import Trade, member_exists
from coordinator.ledger.store import Ledger

__all__ = [
    "CHECK_COLUMNS",
    "IntervalSummary",
    "Trade",
    "add_token",
    "checks",
    "curtailments",
    "intervals",
    "member_exists",
    "orders",
    "recent_trades",
    "redispatches",
    "revoke_token",
    "running_totals",
    "token_member",
]


@dataclass(frozen=True)
class IntervalSummary:
    start: int
    length: int
    scheme: str
    state: str
    price: int | None
    traded: int  # mWh between members
    grid_imp: int  # mWh the supplier sold
    grid_exp: int  # mWh the supplier bought
    n_trades: int  # trades between members


def intervals(ledger: Ledger, limit: int, supplier: str) -> list[IntervalSummary]:
    """The latest ``limit`` intervals, newest last, with their volumes."""
    rows = ledger._conn.execute(
        "SELECT start, length, scheme, state, price FROM intervals ORDER BY start DESC LIMIT ?", (limit,)
    ).fetchall()
    out = []
    for start, length, scheme, state, price in reversed(rows):
        vol = ledger._conn.execute(
            "SELECT coalesce(sum(CASE WHEN buyer != ?1 AND seller != ?1 THEN energy END), 0), "
            "coalesce(sum(CASE WHEN seller = ?1 THEN energy END), 0), "
            "coalesce(sum(CASE WHEN buyer = ?1 THEN energy END), 0), "
            "count(CASE WHEN buyer != ?1 AND seller != ?1 THEN 1 END) FROM trades WHERE interval = ?2",
            (supplier, start),
        ).fetchone()
        out.append(IntervalSummary(start, length, scheme, state, price, *(int(v) for v in vol)))
    return out


def orders(ledger: Ledger, interval: int, member: str | None) -> list[tuple[str, str, str, int, int]]:
    """``(order_id, party, side, mWh, limit)`` of the interval's market orders (the member's, for a
    member), by side and limit, highest first."""
    q = "SELECT order_id, party, side, energy, limit_price FROM market_orders WHERE interval=?"
    args: tuple[Any, ...] = (interval,)
    if member is not None:
        q += " AND party=?"
        args += (member,)
    rows = ledger._conn.execute(q + " ORDER BY side, limit_price DESC", args)
    return [(str(o), str(p), str(s), int(e), int(lim)) for o, p, s, e, lim in rows]


def recent_trades(ledger: Ledger, limit: int, member: str | None) -> list[Trade]:
    """The latest ``limit`` trades (the member's, for a member), newest first."""
    q = "SELECT interval, n, buyer, seller, energy, price, fee FROM trades"
    args: tuple[Any, ...] = ()
    if member is not None:
        q += " WHERE buyer=? OR seller=?"
        args = (member, member)
    rows = ledger._conn.execute(q + " ORDER BY interval DESC, n DESC LIMIT ?", (*args, limit))
    return [(int(i), int(n), str(b), str(s), int(e), int(p), int(f)) for i, n, b, s, e, p, f in rows]


def curtailments(ledger: Ledger, member: str | None, limit: int) -> list[tuple[Any, ...]]:
    """``(interval, board, member, pv_limit_w, delta_w, reason, compensation)`` of the latest PV
    export limits (the member's boards', for a member), newest first."""
    q = (
        "SELECT c.interval, c.board_id, b.member_id, c.pv_limit_w, c.delta_w, c.reason, c.compensation "
        "FROM curtailments c LEFT JOIN boards b ON b.id = c.board_id"
    )
    args: tuple[Any, ...] = ()
    if member is not None:
        q += " WHERE b.member_id = ?"
        args = (member,)
    return [tuple(r) for r in ledger._conn.execute(q + " ORDER BY c.interval DESC LIMIT ?", (*args, limit))]


def redispatches(ledger: Ledger, member: str | None, limit: int) -> list[tuple[Any, ...]]:
    """``(interval, board, member, kind, delta_w, setpoint, reason, compensation)`` of the latest
    device redispatches (the member's boards', for a member), newest first."""
    q = (
        "SELECT r.interval, r.board_id, b.member_id, r.kind, r.delta_w, r.setpoint, r.reason, r.compensation "
        "FROM redispatches r LEFT JOIN boards b ON b.id = r.board_id"
    )
    args: tuple[Any, ...] = ()
    if member is not None:
        q += " WHERE b.member_id = ?"
        args = (member,)
    rows = ledger._conn.execute(q + " ORDER BY r.interval DESC, r.board_id LIMIT ?", (*args, limit))
    return [tuple(r) for r in rows]


CHECK_COLUMNS = (
    "interval",
    "v_min_pu",
    "v_min_bus",
    "v_max_pu",
    "v_max_bus",
    "line_max_pct",
    "line_max",
    "trafo_max_pct",
    "trafo_max",
    "violations",
    "source",
    "changes",
)


def checks(ledger: Ledger, limit: int) -> list[tuple[Any, ...]]:
    """The latest grid checks (columns ``CHECK_COLUMNS``), newest first."""
    q = f"SELECT {', '.join(CHECK_COLUMNS)} FROM grid_checks ORDER BY interval DESC LIMIT ?"
    return [tuple(r) for r in ledger._conn.execute(q, (limit,))]


def running_totals(ledger: Ledger, member: str, start: int, end: int) -> list[tuple[int, int]]:
    """``(interval, nano-cent)``: the member's postings summed per interval in ``[start, end)``."""
    rows = ledger._conn.execute(
        "SELECT interval, sum(amount) FROM postings WHERE party=? AND interval>=? AND interval<? "
        "GROUP BY interval ORDER BY interval",
        (member, start, end),
    ).fetchall()
    return [(int(t), int(a)) for t, a in rows]


def add_token(ledger: Ledger, token_hash: str, member: str | None, label: str, now: int) -> None:
    with ledger.transaction() as tx:
        tx.execute(
            "INSERT INTO access_tokens (token_hash, member_id, label, created) VALUES (?,?,?,?)",
            (token_hash, member, label, now),
        )


def token_member(ledger: Ledger, token_hash: str) -> tuple[str | None] | None:
    """``(member,)`` of a token not revoked (member None: an operator's), None for no such token."""
    row = ledger._conn.execute(
        "SELECT member_id FROM access_tokens WHERE token_hash=? AND revoked IS NULL", (token_hash,)
    ).fetchone()
    return None if row is None else (None if row[0] is None else str(row[0]),)


def revoke_token(ledger: Ledger, token_hash: str, now: int) -> bool:
    """Revoke a token; False when there is no such token or it was already revoked."""
    with ledger.transaction() as tx:
        cur = tx.execute(
            "UPDATE access_tokens SET revoked=? WHERE token_hash=? AND revoked IS NULL", (now, token_hash)
        )
        return cur.rowcount == 1
