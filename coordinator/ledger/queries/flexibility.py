"""The flexibility market's queries: the cleared orders the dispatcher delivers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.ledger.store import Ledger


@dataclass(frozen=True)
class FlexOrderRecord:
    """A cleared flexibility order as stored: the request it answers and the delivering device."""

    order_id: str
    request_id: str
    congestion_point: str
    party: str
    board_id: str
    asset: str
    direction: str  # reduce | increase
    power_w: int
    price: int  # mc/kWh
    start: int  # the request's first interval start
    intervals: int


def add_orders(ledger: Ledger, orders: Sequence[FlexOrderRecord]) -> None:
    with ledger.transaction() as tx:
        tx.executemany(
            "INSERT INTO flex_orders VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    o.order_id,
                    o.request_id,
                    o.congestion_point,
                    o.party,
                    o.board_id,
                    o.asset,
                    o.direction,
                    o.power_w,
                    o.price,
                    o.start,
                    o.intervals,
                )
                for o in orders
            ],
        )


def orders_at(ledger: Ledger, start: int, length: int) -> list[tuple[str, str, str, str, str, int, int]]:
    """``(order_id, party, board_id, asset, direction, power_w, price)`` of the orders whose request
    covers the interval starting at ``start`` (intervals of ``length`` s), by order id."""
    rows = ledger._conn.execute(
        "SELECT order_id, party, board_id, asset, direction, power_w, price FROM flex_orders "
        "WHERE start <= ? AND ? < start + intervals * ? ORDER BY order_id",
        (start, start, length),
    ).fetchall()
    return [(str(o), str(p), str(b), str(a), str(d), int(w), int(c)) for o, p, b, a, d, w, c in rows]


def orders_ending_after(ledger: Ledger, t: int, length: int) -> list[tuple[str, str, str, int, int, int]]:
    """``(board_id, asset, direction, power_w, start, intervals)`` of the orders whose request ends
    after ``t`` (intervals of ``length`` s): those in force or still ahead, by start."""
    rows = ledger._conn.execute(
        "SELECT board_id, asset, direction, power_w, start, intervals FROM flex_orders "
        "WHERE start + intervals * ? > ? ORDER BY start, order_id",
        (length, t),
    ).fetchall()
    return [(str(b), str(a), str(d), int(w), int(s), int(n)) for b, a, d, w, s, n in rows]
