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
    row = ledger._conn.execute(
        "SELECT seq1, e_imp1, e_exp1 FROM board_deliveries WHERE board_id=? AND interval<? "
        "ORDER BY interval DESC LIMIT 1",
        (board_id, start),
    ).fetchone()
    return None if row is None else LastReading(int(row[0]), 0, int(row[1]), int(row[2]))


def schedules(ledger: Ledger, start: int) -> list[TradeRow]:
    """The ex-ante schedules of interval ``start``, in their order."""
    q = "SELECT buyer, seller, energy, price, fee FROM schedules WHERE interval=? ORDER BY n"
    return [(b, s, int(e), int(p), int(f)) for b, s, e, p, f in ledger._conn.execute(q, (start,))]


def battery_power(
    ledger: Ledger, board_id: str, seq0: int, seq1: int
) -> list[tuple[int, int | None, int | None]]:
    """``(ts, bat_p, bat_soc)`` of the board's readings with ``seq0 <= seq <= seq1`` (the span a
    settlement ran between), in sequence order; None where a reading carries no battery value."""
    q = "SELECT ts, bat_p, bat_soc FROM readings WHERE board_id=? AND seq>=? AND seq<=? ORDER BY seq"
    return [
        (int(t), None if p is None else int(p), None if c is None else int(c))
        for t, p, c in ledger._conn.execute(q, (board_id, seq0, seq1))
    ]


@dataclass(frozen=True)
class SentOrder:
    """An order sent to a board, as signed, with the board's acknowledgement (None: none yet)."""

    frame: bytes
    ack_status: int | None
    ack_frame: bytes | None


def orders_for(ledger: Ledger, board_id: str, since: int, until: int) -> list[SentOrder]:
    """The orders sent to a board for the intervals ``since <= interval <= until``, by sequence."""
    q = (
        "SELECT frame, ack_status, ack_frame FROM board_orders WHERE board_id=? AND interval>=? "
        "AND interval<=? ORDER BY oseq"
    )
    return [
        SentOrder(bytes(f), None if s is None else int(s), None if a is None else bytes(a))
        for f, s, a in ledger._conn.execute(q, (board_id, since, until))
    ]


def boards_with_orders(ledger: Ledger, since: int, until: int) -> set[str]:
    """Boards sent an order for an interval ``since <= interval <= until``."""
    q = "SELECT DISTINCT board_id FROM board_orders WHERE interval>=? AND interval<=?"
    return {str(b) for (b,) in ledger._conn.execute(q, (since, until))}


@dataclass(frozen=True)
class Redispatch:
    """A change of the delivery check in an interval, the member it concerns and the order it went
    out in (with the board's acknowledgement)."""

    board_id: str
    member: str | None
    kind: str  # pv_limit | battery | ev | load
    setpoint: int
    reason: str
    compensation: int  # nano-cent
    order: SentOrder | None


def redispatches(ledger: Ledger, start: int) -> list[Redispatch]:
    """The delivery check's changes of interval ``start`` with their orders, by board and kind."""
    q = (
        "SELECT r.board_id, b.member_id, r.kind, r.setpoint, r.reason, r.compensation, o.frame, "
        "o.ack_status, o.ack_frame FROM redispatches r LEFT JOIN boards b ON b.id = r.board_id "
        "LEFT JOIN board_orders o ON o.board_id = r.board_id AND o.interval = r.interval "
        "WHERE r.interval=? ORDER BY r.board_id, r.kind, o.oseq"
    )
    out: dict[tuple[str, str], Redispatch] = {}
    for board, member, kind, setpoint, reason, comp, fr, st, ack in ledger._conn.execute(q, (start,)):
        status = None if st is None else int(st)
        order = None if fr is None else SentOrder(bytes(fr), status, None if ack is None else bytes(ack))
        # an interval's last order to the board is the one that carried the change
        out[(str(board), str(kind))] = Redispatch(
            str(board), None if member is None else str(member), str(kind), int(setpoint), str(reason),
            int(comp), order,
        )  # fmt: skip
    return list(out.values())


def redispatch_posted(ledger: Ledger, start: int) -> bool:
    """Whether interval ``start`` has redispatch compensation posted already (a ledger whose
    dispatch paid it when the order went out, before settlement paid only what was applied)."""
    q = "SELECT 1 FROM postings WHERE interval=? AND account='redispatch_compensation' LIMIT 1"
    return ledger._conn.execute(q, (start,)).fetchone() is not None


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
