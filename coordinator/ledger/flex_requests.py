"""Grid operators' flexibility requests and capacity limits as a running coordinator keeps them,
and the coordinator-signed record of each flexibility payment.

A request is ``posted`` (accepted, not yet cleared), ``cleared`` (its orders are in
``flex_orders``; the dispatcher sends their setpoints), ``settled`` (delivery verified from the
signed readings and paid) or ``failed`` (it could not be cleared or verified; ``note`` says why).
Two requests for one congestion point whose windows overlap are refused (:class:`Overlap`): the
second would be measured against a baseline the first one moves. A capacity limit caps the import
or export of a congestion point (or of the whole connection) in a window.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.ledger.store import Ledger, LedgerError

STATES = ("posted", "cleared", "settled", "failed")


class Overlap(LedgerError):
    """A request overlaps one already accepted for the same congestion point."""


class Duplicate(LedgerError):
    """A request or limit with that id is already stored."""


@dataclass(frozen=True)
class StoredRequest:
    request_id: str
    congestion_point: str
    direction: str  # reduce | increase
    power_w: int
    start: int  # first interval start
    intervals: int
    price_cap: int  # mc/kWh
    source: str  # who posted it: api:<who>, cli:<who>, openadr:<vtn>
    created: int
    state: str = "posted"
    ordered_w: int = 0
    delivered_mwh: int | None = None
    paid: int | None = None  # nano-cent
    note: str = ""
    reported: int = 0  # 1: reported back to its source (OpenADR)

    def end(self, length: int) -> int:
        return self.start + self.intervals * length

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class FlexRecord:
    """A flexibility payment's coordinator-signed record (``body`` canonical JSON, ``sig`` over
    ``flexrecord.DOMAIN || body``)."""

    order_id: str
    request_id: str
    party: str
    interval: int  # the posting's interval (the request's start)
    delivered: int  # mWh
    payment: int  # nano-cent
    body: bytes
    sig: bytes


@dataclass(frozen=True)
class CapacityLimit:
    limit_id: str
    resource: str  # a feeder or bus, or the grid id (the whole connection)
    direction: str  # import | export
    limit_w: int
    start: int
    until: int
    source: str
    created: int


_REQ = (
    "request_id, congestion_point, direction, power_w, start, intervals, price_cap, source, created, "
    "state, ordered_w, delivered_mwh, paid, note, reported"
)


def add_request(ledger: Ledger, r: StoredRequest, length: int) -> None:
    """Store a posted request; refused if its id is taken (:class:`Duplicate`) or it overlaps a
    request for the same congestion point that has not failed (:class:`Overlap`)."""
    with ledger.transaction() as tx:
        if tx.execute("SELECT 1 FROM flex_requests WHERE request_id=?", (r.request_id,)).fetchone():
            raise Duplicate(f"request {r.request_id!r} exists already")
        other = tx.execute(
            "SELECT request_id, start, start + intervals * ? FROM flex_requests WHERE congestion_point=? "
            "AND state != 'failed' AND start < ? AND ? < start + intervals * ? ORDER BY start",
            (length, r.congestion_point, r.end(length), r.start, length),
        ).fetchone()
        if other is not None:
            raise Overlap(
                f"request {r.request_id!r} for {r.congestion_point!r} overlaps request {other[0]!r} "
                f"({other[1]}..{other[2]})"
            )
        tx.execute(
            f"INSERT INTO flex_requests ({_REQ}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            tuple(r.__dict__.values()),
        )


def requests(ledger: Ledger, state: str | None = None, limit: int = 200) -> list[StoredRequest]:
    """Requests by start, newest first (one state only, for a state)."""
    q = f"SELECT {_REQ} FROM flex_requests"
    args: list[object] = []
    if state is not None:
        q += " WHERE state=?"
        args.append(state)
    args.append(limit)
    return [
        StoredRequest(*r) for r in ledger._conn.execute(q + " ORDER BY start DESC, request_id LIMIT ?", args)
    ]


def request(ledger: Ledger, request_id: str) -> StoredRequest | None:
    row = ledger._conn.execute(
        f"SELECT {_REQ} FROM flex_requests WHERE request_id=?", (request_id,)
    ).fetchone()
    return None if row is None else StoredRequest(*row)


def in_state(ledger: Ledger, state: str) -> list[StoredRequest]:
    """Requests in ``state``, oldest start first."""
    q = f"SELECT {_REQ} FROM flex_requests WHERE state=? ORDER BY start, request_id"
    return [StoredRequest(*r) for r in ledger._conn.execute(q, (state,))]


def set_state(
    tx: sqlite3.Connection,
    request_id: str,
    state: str,
    *,
    note: str = "",
    ordered_w: int | None = None,
    delivered: int | None = None,
    paid: int | None = None,
) -> None:
    """Move a request to ``state`` inside the caller's transaction (with what it then knows)."""
    if state not in STATES:
        raise LedgerError(f"no request state {state!r}")
    tx.execute(
        "UPDATE flex_requests SET state=?, note=?, ordered_w=coalesce(?, ordered_w), "
        "delivered_mwh=coalesce(?, delivered_mwh), paid=coalesce(?, paid) WHERE request_id=?",
        (state, note[:300], ordered_w, delivered, paid, request_id),
    )


def unreported(ledger: Ledger, prefix: str) -> list[StoredRequest]:
    """Settled requests whose source starts with ``prefix`` not yet reported back."""
    q = f"SELECT {_REQ} FROM flex_requests WHERE state='settled' AND reported=0 AND source LIKE ?"
    q += " ORDER BY start"
    return [StoredRequest(*r) for r in ledger._conn.execute(q, (prefix + "%",))]


def mark_reported(ledger: Ledger, request_id: str) -> None:
    with ledger.transaction() as tx:
        tx.execute("UPDATE flex_requests SET reported=1 WHERE request_id=?", (request_id,))


def add_records(tx: sqlite3.Connection, records: Sequence[FlexRecord]) -> None:
    """Store signed payment records inside the caller's transaction (with their postings)."""
    tx.executemany(
        "INSERT INTO flex_records (order_id, request_id, party, interval, delivered, payment, body, sig) "
        "VALUES (?,?,?,?,?,?,?,?)",
        [tuple(r.__dict__.values()) for r in records],
    )


def records(ledger: Ledger, party: str | None = None, start: int = 0, end: int = 2**62) -> list[FlexRecord]:
    """Signed payment records whose interval is in ``[start, end)`` (a party's, for a party)."""
    q = "SELECT order_id, request_id, party, interval, delivered, payment, body, sig FROM flex_records "
    q += "WHERE interval >= ? AND interval < ?"
    args: list[object] = [start, end]
    if party is not None:
        q += " AND party=?"
        args.append(party)
    return [
        FlexRecord(o, r, p, i, d, m, bytes(b), bytes(s))
        for o, r, p, i, d, m, b, s in ledger._conn.execute(q + " ORDER BY interval, order_id", args)
    ]


_LIM = "limit_id, resource, direction, limit_w, start, until, source, created"


def add_limit(ledger: Ledger, lim: CapacityLimit) -> bool:
    """Store a capacity limit; False if one with that id is stored already (left as it is)."""
    with ledger.transaction() as tx:
        cur = tx.execute(
            f"INSERT OR IGNORE INTO delivery_limits ({_LIM}) VALUES (?,?,?,?,?,?,?,?)",
            tuple(lim.__dict__.values()),
        )
        return bool(cur.rowcount)


def limits_at(ledger: Ledger, start: int) -> list[CapacityLimit]:
    """Capacity limits in force at ``start``, by resource."""
    q = f"SELECT {_LIM} FROM delivery_limits WHERE start <= ? AND ? < until ORDER BY resource, limit_id"
    return [CapacityLimit(*r) for r in ledger._conn.execute(q, (start, start))]


def limits(ledger: Ledger, since: int = 0) -> list[CapacityLimit]:
    """Capacity limits ending after ``since``, by start."""
    q = f"SELECT {_LIM} FROM delivery_limits WHERE until > ? ORDER BY start, limit_id"
    return [CapacityLimit(*r) for r in ledger._conn.execute(q, (since,))]


@dataclass(frozen=True)
class StoredOrder:
    order_id: str
    party: str
    board_id: str
    asset: str
    power_w: int
    price: int  # mc/kWh


def orders_of(ledger: Ledger, request_id: str) -> list[StoredOrder]:
    """The cleared orders of a request, by order id."""
    q = "SELECT order_id, party, board_id, asset, power_w, price FROM flex_orders WHERE request_id=? "
    return [StoredOrder(*r) for r in ledger._conn.execute(q + "ORDER BY order_id", (request_id,))]
