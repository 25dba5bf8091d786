"""Dispatch's queries: what one dispatch step reads (the last settled interval's flows, the last
price, the orders already sent) and the records it leaves (schedules, redispatches, grid checks,
board orders).

The step writes in one transaction: the functions taking ``tx`` (what ``ledger.transaction()``
yields) belong inside it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import astuple, dataclass

from coordinator.ledger.store import Ledger

# buyer, seller, mWh, price, fee
ScheduleRow = tuple[str, str, int, int, int]


@dataclass(frozen=True)
class BoardFlow:
    """A board's registers at the start and end of a settled interval (mWh)."""

    board_id: str
    e_imp0: int
    e_imp1: int
    e_exp0: int
    e_exp1: int


@dataclass(frozen=True)
class RedispatchRecord:
    """A change of the delivery check, with its reason and the member's compensation (nano-cent)."""

    board_id: str
    kind: str  # pv_limit | battery | ev | load
    delta_w: int
    setpoint: int
    reason: str
    compensation: int


@dataclass(frozen=True)
class GridCheckRecord:
    """How close an interval runs to the grid's limits after the delivery check's changes."""

    v_min_pu: float | None
    v_min_bus: str | None
    v_max_pu: float | None
    v_max_bus: str | None
    line_max_pct: float | None
    line_max: str | None
    trafo_max_pct: float | None
    trafo_max: str | None
    violations: int
    source: str  # screen | ac
    changes: int


def is_dispatched(ledger: Ledger, start: int) -> bool:
    """Whether any board was sent an order for the interval ``start``."""
    q = "SELECT 1 FROM board_orders WHERE interval=? LIMIT 1"
    return ledger._conn.execute(q, (start,)).fetchone() is not None


def forecast_interval(ledger: Ledger, start: int, length: int) -> int | None:
    """The settled interval a dispatch for ``start`` takes as its forecast: the newest one that
    ends by ``start`` and begins at most two intervals before it (the previous interval, or, when
    the orders go out ahead and the previous one is still running, the one before); None without."""
    q = "SELECT max(start) FROM intervals WHERE start + length <= ? AND start >= ?"
    row = ledger._conn.execute(q, (start, start - 2 * length)).fetchone()
    return None if row[0] is None else int(row[0])


def board_flows(ledger: Ledger, interval: int) -> list[BoardFlow]:
    """Every board's registers over the settled interval ``interval``."""
    q = "SELECT board_id, e_imp0, e_imp1, e_exp0, e_exp1 FROM board_deliveries WHERE interval=?"
    return [BoardFlow(*row) for row in ledger._conn.execute(q, (interval,))]


def curtailed_w(ledger: Ledger, interval: int) -> dict[str, int]:
    """Per board, the W the delivery check took off its export in ``interval`` by a PV limit or a
    shed load (the sum of their ``delta_w``)."""
    q = (
        "SELECT board_id, sum(delta_w) FROM redispatches"
        " WHERE interval=? AND kind IN ('pv_limit', 'load') GROUP BY board_id"
    )
    return {b: int(d) for b, d in ledger._conn.execute(q, (interval,))}


def member_net(ledger: Ledger, interval: int) -> dict[str, int]:
    """Per member, its net import (mWh, export < 0) in the settled interval ``interval``."""
    q = "SELECT party, e_imp - e_exp FROM deliveries WHERE interval=?"
    return {p: int(n) for p, n in ledger._conn.execute(q, (interval,))}


def last_price(ledger: Ledger) -> int | None:
    """The newest settled clearing price (mc/kWh), or None."""
    q = "SELECT price FROM intervals WHERE price IS NOT NULL ORDER BY start DESC LIMIT 1"
    row = ledger._conn.execute(q).fetchone()
    return None if row is None else int(row[0])


def order_frames(ledger: Ledger, board_id: str, since: int, until: int) -> list[bytes]:
    """The signed orders sent to a board for the intervals ``since`` <= start < ``until``."""
    q = "SELECT frame FROM board_orders WHERE board_id=? AND interval>=? AND interval<? ORDER BY oseq"
    return [bytes(fr) for (fr,) in ledger._conn.execute(q, (board_id, since, until))]


def add_schedule(tx: sqlite3.Connection, start: int, rows: Iterable[ScheduleRow]) -> None:
    """The storage's ex-ante trades of ``start``, numbered 0.. in this order."""
    tx.executemany(
        "INSERT INTO schedules (interval, n, buyer, seller, energy, price, fee) VALUES (?,?,?,?,?,?,?)",
        [(start, n, *row) for n, row in enumerate(rows)],
    )


def add_redispatches(tx: sqlite3.Connection, start: int, rows: Iterable[RedispatchRecord]) -> None:
    tx.executemany(
        "INSERT INTO redispatches (interval, board_id, kind, delta_w, setpoint, reason, compensation)"
        " VALUES (?,?,?,?,?,?,?)",
        [(start, *astuple(r)) for r in rows],
    )


def add_grid_check(tx: sqlite3.Connection, start: int, record: GridCheckRecord) -> None:
    tx.execute(
        "INSERT INTO grid_checks (interval, v_min_pu, v_min_bus, v_max_pu, v_max_bus, line_max_pct,"
        " line_max, trafo_max_pct, trafo_max, violations, source, changes) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (start, *astuple(record)),
    )


def add_orders(tx: sqlite3.Connection, start: int, orders: Iterable[tuple[str, int, bytes]]) -> None:
    """The signed orders of ``start``: (board, oseq, frame)."""
    tx.executemany(
        "INSERT INTO board_orders (board_id, oseq, interval, frame) VALUES (?,?,?,?)",
        [(b, oseq, start, fr) for b, oseq, fr in orders],
    )
