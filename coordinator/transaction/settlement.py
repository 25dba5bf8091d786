"""Settlement of one interval on measured energy, and the records it leaves in the ledger.

Measured energy is a register difference per board: the last reading at or before the
interval's end minus the reading the board's previous settlement ended on (recorded in
``board_deliveries``; for a board's first settlement the last reading at or before the start, or
the board's first reading if it was taken inside the interval, e.g. a new member or a replacement
board). A reading that arrives late, after its interval was settled, therefore counts in the next
interval instead: across any span the settled energy adds up to the registers' advance exactly,
and no mWh is lost or counted twice. A retired (replaced) board keeps being measured until its
last stored reading is settled, for the member it belonged to.

Each member's measured net position becomes an ex-post order (limits from its preferences), the
market clears them, and every money flow is posted double-entry (nano-cent): the postings of an
interval sum to zero, which ``settle`` checks before it commits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from coordinator.ledger import Ledger, LedgerError
from coordinator.ledger.store import LastReading
from coordinator.market import (
    DSO,
    SUPPLIER,
    Clearing,
    Contract,
    Order,
    Preferences,
    Sharing,
    Tariff,
    clear,
    ex_post_orders,
    money_flows,
)
from protocol import codec


@dataclass(frozen=True)
class Measured:
    party: str
    e_imp: int  # mWh imported in the interval
    e_exp: int  # mWh exported
    boards: int  # boards that contributed
    missing: tuple[str, ...]  # boards without a reading at a boundary (not settled)


@dataclass(frozen=True)
class Span:
    """The readings one board's settled energy in an interval runs between."""

    board_id: str
    r0: LastReading
    r1: LastReading


def _previous(ledger: Ledger, board_id: str, start: int, end: int) -> LastReading | None:
    row = ledger.conn.execute(
        "SELECT seq1, e_imp1, e_exp1 FROM board_deliveries WHERE board_id=? AND interval<? "
        "ORDER BY interval DESC LIMIT 1",
        (board_id, start),
    ).fetchone()
    if row is not None:
        return LastReading(row[0], 0, row[1], row[2])
    r = ledger.register_at(board_id, start)
    if r is None:  # the board's first settlement, and it started reading inside the interval
        first = ledger.first_reading(board_id)
        if first is not None and start <= first.ts < end:
            return first
    return r


def measure(ledger: Ledger, start: int, end: int) -> tuple[dict[str, Measured], list[Span]]:
    """Energy per member in the interval ``[start, end)`` from its boards' registers (active ones,
    and retired ones with readings not settled yet), and the reading each board's settlement ends on."""
    acc: dict[str, list[int]] = {}
    missing: dict[str, list[str]] = {}
    ends: list[Span] = []
    for b in ledger.boards():
        if b.member_id is None or b.status not in ("active", "retired"):
            continue
        r0 = _previous(ledger, b.board_id, start, end)
        r1 = ledger.register_at(b.board_id, end)
        if b.status == "retired":  # only its readings not settled yet, once
            if r0 is None or r1 is None or r1.seq <= r0.seq:
                continue
        a = acc.setdefault(b.member_id, [0, 0, 0])
        if r0 is None or r1 is None:  # no reading yet at a boundary: nothing to settle for it
            missing.setdefault(b.member_id, []).append(b.board_id)
            continue
        if r1.seq < r0.seq:  # nothing newer than where the last settlement ended
            r1 = r0
        a[0] += r1.e_imp - r0.e_imp
        a[1] += r1.e_exp - r0.e_exp
        a[2] += 1
        ends.append(Span(b.board_id, r0, r1))
    out = {m: Measured(m, v[0], v[1], v[2], tuple(missing.get(m, ()))) for m, v in sorted(acc.items())}
    return out, ends


def digest(c: Clearing) -> bytes:
    """SHA-256 of the canonical msgpack of the clearing: what the signed Result carries."""
    interval, scheme, price, trades, residual, unfilled = c.canonical()
    body = [
        interval,
        scheme,
        price,
        [list(t) for t in trades],
        [list(t) for t in residual],
        [list(u) for u in unfilled],
    ]
    return hashlib.sha256(_pack(body)).digest()


def _pack(v: object) -> bytes:
    # the protocol codec limits nesting and lengths for wire messages; a clearing record can be
    # large, so it is hashed as a stream of small canonical chunks instead
    if isinstance(v, list) and (len(v) > 16 or any(isinstance(x, list) for x in v)):
        return b"L" + len(v).to_bytes(4, "big") + b"".join(_pack(x) for x in v)
    return codec.pack(v)


def settle(
    ledger: Ledger,
    start: int,
    length: int,
    scheme: str,
    tariff: Tariff,
    prefs: Mapping[str, Preferences],
    *,
    now: int,
    sharing: Sharing | None = None,
    contracts: Sequence[Contract] | None = None,
    wholesale: Mapping[int, int] | None = None,
    seal: Callable[[Clearing], bytes] | None = None,
) -> Clearing:
    """Clear and settle interval ``start`` on measured energy, once: a settled interval raises
    LedgerError (nothing is settled twice), as does money that would not sum to zero. ``seal``
    makes the signed Result frame of the clearing, stored in the same transaction."""
    end = start + length
    done = ledger.conn.execute("SELECT 1 FROM intervals WHERE start=? AND state='settled'", (start,))
    if done.fetchone():
        raise LedgerError(f"interval {start} is already settled")
    measured, ends = measure(ledger, start, end)
    # ex-ante schedules (dispatched storage): binding at their cleared prices; every party's
    # ex-post position is what it measured beyond its schedule
    sched: list[Row] = [
        (b, s_, e, p, f, "schedule", "schedule")
        for b, s_, e, p, f in ledger.conn.execute(
            "SELECT buyer, seller, energy, price, fee FROM schedules WHERE interval=? ORDER BY n", (start,)
        )
    ]
    scheduled: dict[str, int] = {}
    for b, s_, e, *_ in sched:
        scheduled[b] = scheduled.get(b, 0) + e
        scheduled[s_] = scheduled.get(s_, 0) - e
    dispatched = {
        row[0]
        for row in ledger.conn.execute(
            "SELECT DISTINCT b.member_id FROM board_orders o JOIN boards b ON b.id = o.board_id "
            "WHERE o.interval=? AND b.member_id IS NOT NULL",
            (start,),
        )
    }
    orders: list[Order] = []
    imbalance: list[Row] = []
    for m in measured.values():
        net = m.e_imp - m.e_exp - scheduled.get(m.party, 0)
        if m.party in dispatched:  # committed ex ante: deviations go to the supplier of last resort
            if net > 0:
                imbalance.append((m.party, SUPPLIER, net, tariff.retail, tariff.grid_fee, "imbalance", ""))
            elif net < 0:
                imbalance.append((SUPPLIER, m.party, -net, tariff.feed_in, 0, "", "imbalance"))
            continue
        p = prefs.get(m.party) or Preferences(m.party)
        orders.extend(ex_post_orders(start, p, tariff, max(net, 0), max(-net, 0)))
    c = clear(scheme, start, orders, tariff, sharing=sharing, contracts=contracts, wholesale=wholesale)
    flows = money_flows(c)
    if sum(flows.values()) != 0:
        raise LedgerError(f"interval {start}: money flows sum to {sum(flows.values())}, not 0")
    market_rows: list[Row] = list(c.trades.rows) + list(c.residual.rows)
    postings = _postings(start, sched, 0) + _postings(start, imbalance, 10_000_000, "imbalance")
    postings += _postings(start, market_rows, 20_000_000)
    if sum(int(x[4]) for x in postings) != 0:  # type: ignore[call-overload]
        raise LedgerError(f"interval {start}: postings do not sum to zero")
    result = seal(c) if seal is not None else None
    with ledger.transaction() as tx:
        tx.execute(
            "INSERT INTO intervals (start, length, scheme, state, price, digest, result_frame) "
            "VALUES (?,?,?,?,?,?,?)",
            (start, length, scheme, "settled", c.price, digest(c), result),
        )
        tx.executemany(
            "INSERT INTO market_orders VALUES (?,?,?,?,?,?)",
            [(start, o.order_id, o.party, o.side, o.energy, o.limit) for o in orders],
        )
        rows = sched + imbalance + market_rows
        tx.executemany(
            "INSERT INTO trades VALUES (?,?,?,?,?,?,?)",
            [(start, n, r[0], r[1], r[2], r[3], r[4]) for n, r in enumerate(rows)],
        )
        tx.executemany(
            "INSERT INTO deliveries VALUES (?,?,?,?)",
            [(start, m.party, m.e_imp, m.e_exp) for m in measured.values()],
        )
        tx.executemany(
            "INSERT INTO board_deliveries VALUES (?,?,?,?,?,?,?,?)",
            [
                (start, e.board_id, e.r0.seq, e.r1.seq, e.r0.e_imp, e.r0.e_exp, e.r1.e_imp, e.r1.e_exp)
                for e in ends
            ],
        )
        tx.executemany(
            "INSERT INTO postings (interval, n, party, account, amount, energy, memo) VALUES (?,?,?,?,?,?,?)",
            postings,
        )
    return c


Row = tuple[str, str, int, int, int, str, str]  # buyer, seller, mWh, price, fee, buy id, sell id


def _postings(start: int, rows: list[Row], n0: int, kind: str | None = None) -> list[tuple[object, ...]]:
    """Double entry per trade: buyer pays, seller receives net of the fee, the dso the fee."""
    out: list[tuple[object, ...]] = []
    n = n0
    for buyer, seller, energy, price, fee, _, _ in rows:
        k = kind or ("local" if SUPPLIER not in (buyer, seller) else "supplier")
        out.append((start, n, buyer, f"energy_bought_{k}", -energy * price, energy, f"from {seller}"))
        out.append((start, n + 1, seller, f"energy_sold_{k}", energy * (price - fee), -energy, f"to {buyer}"))
        n += 2
        if fee:
            out.append((start, n, DSO, "grid_fee", energy * fee, 0, f"{buyer} <- {seller}"))
            n += 1
    return out
