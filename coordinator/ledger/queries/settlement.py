"""Settlement's queries: what an interval's settlement reads and the records it leaves.

Settlement reads and writes in one transaction (``settle`` runs everything inside
``ledger.transaction()``): the functions taking ``tx`` belong inside it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.ledger.store import LastReading, Ledger

# buyer, seller, mWh, price, fee
TradeRow = tuple[str, str, int, int, int]


@dataclass(frozen=True)
class OrderRecord:
    order_id: str
    party: str
    side: str
    energy: int
    limit: int


@dataclass(frozen=True)
class BoardDelivery:
    """One board's settled span in an interval: the readings it runs between and their registers."""

    board_id: str
    seq0: int
    seq1: int
    e_imp0: int
    e_exp0: int
    e_imp1: int
    e_exp1: int


@dataclass(frozen=True)
class IntervalRecord:
    """Everything a settled interval leaves in the ledger, but its postings (``journal.post``)."""

    start: int
    length: int
    scheme: str
    price: int | None
    digest: bytes
    result_frame: bytes | None
    orders: Sequence[OrderRecord]
    trades: Sequence[TradeRow]  # numbered 0.. in this order
    deliveries: Sequence[tuple[str, int, int]]  # party, mWh imported, mWh exported
    boards: Sequence[BoardDelivery]


def is_settled(tx: sqlite3.Connection, start: int) -> bool:
    row = tx.execute("SELECT 1 FROM intervals WHERE start=? AND state='settled'", (start,)).fetchone()
    return row is not None


def previous_end(ledger: Ledger, board_id: str, start: int) -> LastReading | None:
    """The reading the board's last settlement before ``start`` ended on (``ts`` is not kept: 0)."""
    row = ledger.conn.execute(
        "SELECT seq1, e_imp1, e_exp1 FROM board_deliveries WHERE board_id=? AND interval<? "
        "ORDER BY interval DESC LIMIT 1",
        (board_id, start),
    ).fetchone()
    return None if row is None else LastReading(int(row[0]), 0, int(row[1]), int(row[2]))


def schedules(ledger: Ledger, start: int) -> list[TradeRow]:
    """The ex-ante schedules of interval ``start``, in their order."""
    q = "SELECT buyer, seller, energy, price, fee FROM schedules WHERE interval=? ORDER BY n"
    return [(b, s, int(e), int(p), int(f)) for b, s, e, p, f in ledger.conn.execute(q, (start,))]


def dispatched_members(ledger: Ledger, start: int) -> set[str]:
    """Members with a board that was sent an order for interval ``start``."""
    q = (
        "SELECT DISTINCT b.member_id FROM board_orders o JOIN boards b ON b.id = o.board_id "
        "WHERE o.interval=? AND b.member_id IS NOT NULL"
    )
    return {str(row[0]) for row in ledger.conn.execute(q, (start,))}


def record(tx: sqlite3.Connection, r: IntervalRecord) -> None:
    """Store a settled interval (inside the settlement's transaction)."""
    tx.execute(
        "INSERT INTO intervals (start, length, scheme, state, price, digest, result_frame) "
        "VALUES (?,?,?,'settled',?,?,?)",
        (r.start, r.length, r.scheme, r.price, r.digest, r.result_frame),
    )
    tx.executemany(
        "INSERT INTO market_orders VALUES (?,?,?,?,?,?)",
        [(r.start, o.order_id, o.party, o.side, o.energy, o.limit) for o in r.orders],
    )
    tx.executemany(
        "INSERT INTO trades VALUES (?,?,?,?,?,?,?)", [(r.start, n, *t) for n, t in enumerate(r.trades)]
    )
    tx.executemany("INSERT INTO deliveries VALUES (?,?,?,?)", [(r.start, *d) for d in r.deliveries])
    tx.executemany(
        "INSERT INTO board_deliveries VALUES (?,?,?,?,?,?,?,?)",
        [(r.start, b.board_id, b.seq0, b.seq1, b.e_imp0, b.e_exp0, b.e_imp1, b.e_exp1) for b in r.boards],
    )
