"""The audit's queries: what an audit bundle and a dispute's evidence take from the ledger."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from coordinator.ledger.queries.settlement import BoardDelivery, TradeRow
from coordinator.ledger.store import Ledger


@dataclass(frozen=True)
class SettledInterval:
    start: int
    length: int
    scheme: str
    price: int | None
    digest: bytes | None
    result_frame: bytes | None


@dataclass(frozen=True)
class MemberPosting:
    account: str
    energy: int
    amount: int
    memo: str


@dataclass(frozen=True)
class DisputeRecord:
    id: int
    member: str
    interval: int
    reason: str
    status: str
    created: int
    evidence: str  # JSON


def settled_interval(ledger: Ledger, start: int) -> SettledInterval | None:
    row = ledger._conn.execute(
        "SELECT length, scheme, price, digest, result_frame FROM intervals WHERE start=?", (start,)
    ).fetchone()
    return None if row is None else SettledInterval(start, *row)


def schedule_count(ledger: Ledger, start: int) -> int:
    """How many ex-ante schedules interval ``start`` has (they are its first trades)."""
    return int(
        ledger._conn.execute("SELECT count(*) FROM schedules WHERE interval=?", (start,)).fetchone()[0]
    )


def imbalance_count(ledger: Ledger, start: int, supplier: str) -> int:
    """How many imbalance trades interval ``start`` has (they follow its schedules): one member-side
    imbalance posting each."""
    q = (
        "SELECT count(*) FROM postings WHERE interval=? AND party!=? "
        "AND account IN ('energy_bought_imbalance', 'energy_sold_imbalance')"
    )
    return int(ledger._conn.execute(q, (start, supplier)).fetchone()[0])


def order_ids(ledger: Ledger, start: int) -> dict[tuple[str, str], str]:
    """``(party, side) -> order id`` of the market orders of interval ``start``."""
    q = "SELECT order_id, party, side FROM market_orders WHERE interval=?"
    return {(str(p), str(s)): str(o) for o, p, s in ledger._conn.execute(q, (start,))}


def trades(ledger: Ledger, start: int, member: str | None = None) -> list[TradeRow]:
    """The trades of interval ``start`` in their order (only the member's, for a member)."""
    q = "SELECT buyer, seller, energy, price, fee FROM trades WHERE interval=?"
    args: tuple[object, ...] = (start,)
    if member is not None:
        q += " AND (buyer=? OR seller=?)"
        args += (member, member)
    return [
        (str(b), str(s), int(e), int(p), int(f))
        for b, s, e, p, f in ledger._conn.execute(q + " ORDER BY n", args)
    ]


def member_intervals(ledger: Ledger, member: str, boards: list[str], start: int, end: int) -> list[int]:
    """Starts of the intervals in ``[start, end)`` that settled one of ``boards`` or hold a
    posting of ``member``, in order."""
    marks = ",".join("?" * len(boards))
    rows = ledger._conn.execute(
        f"SELECT DISTINCT interval FROM board_deliveries WHERE board_id IN ({marks}) "
        "AND interval >= ? AND interval < ? "
        "UNION SELECT DISTINCT interval FROM postings WHERE party=? AND interval >= ? AND interval < ? "
        "ORDER BY 1",
        (*boards, start, end, member, start, end),
    )
    return [int(r[0]) for r in rows]


def board_deliveries(ledger: Ledger, interval: int, boards: list[str]) -> list[BoardDelivery]:
    """The settled spans of ``boards`` in ``interval``, by board."""
    marks = ",".join("?" * len(boards))
    rows = ledger._conn.execute(
        "SELECT board_id, seq0, seq1, e_imp0, e_exp0, e_imp1, e_exp1 FROM board_deliveries "
        f"WHERE interval=? AND board_id IN ({marks}) ORDER BY board_id",
        (interval, *boards),
    )
    return [BoardDelivery(*r) for r in rows]


def member_board_deliveries(ledger: Ledger, interval: int, member: str) -> list[BoardDelivery]:
    """The settled spans in ``interval`` of the boards the member has now, by board."""
    rows = ledger._conn.execute(
        "SELECT d.board_id, seq0, seq1, e_imp0, e_exp0, e_imp1, e_exp1 FROM board_deliveries d "
        "JOIN boards b ON b.id = d.board_id WHERE d.interval=? AND b.member_id=? ORDER BY d.board_id",
        (interval, member),
    )
    return [BoardDelivery(*r) for r in rows]


def board_types(ledger: Ledger, boards: list[str]) -> dict[str, str]:
    marks = ",".join("?" * len(boards))
    q = f"SELECT id, board_type FROM boards WHERE id IN ({marks})"
    return {str(b): str(t) for b, t in ledger._conn.execute(q, boards)}


def delivery(ledger: Ledger, interval: int, party: str) -> tuple[int, int] | None:
    """``(mWh imported, mWh exported)`` settled for the party in ``interval``, or None."""
    row = ledger._conn.execute(
        "SELECT e_imp, e_exp FROM deliveries WHERE interval=? AND party=?", (interval, party)
    ).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


def postings(ledger: Ledger, interval: int, party: str) -> list[MemberPosting]:
    """The party's postings of ``interval``, in posting order."""
    q = "SELECT account, energy, amount, memo FROM postings WHERE interval=? AND party=? ORDER BY n"
    return [
        MemberPosting(str(a), int(e), int(m), str(x))
        for a, e, m, x in ledger._conn.execute(q, (interval, party))
    ]


def add_dispute(
    tx: sqlite3.Connection, member: str, interval: int, reason: str, evidence: str, now: int
) -> int:
    """Record a dispute (status open); returns its id."""
    cur = tx.execute(
        "INSERT INTO disputes (member_id, interval, reason, evidence, created) VALUES (?,?,?,?,?)",
        (member, interval, reason, evidence, now),
    )
    return int(cur.lastrowid or 0)


def disputes(ledger: Ledger, member: str | None = None) -> list[DisputeRecord]:
    """Every dispute (the member's, for a member), by id."""
    q = "SELECT id, member_id, interval, reason, status, created, evidence FROM disputes"
    args: tuple[object, ...] = ()
    if member is not None:
        q += " WHERE member_id=?"
        args = (member,)
    return [DisputeRecord(*r) for r in ledger._conn.execute(q + " ORDER BY id", args)]
