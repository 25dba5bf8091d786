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

Dispatched storage. The ex-ante schedule of a battery (its trades in the storage market) is
binding at its cleared prices. What the member measured beyond its schedule goes into the ex-post
market like any member's position (its household's load and PV were never scheduled), except the
battery's own deviation from its orders, which is *imbalance*, settled with the supplier of last
resort (retail for energy taken beyond the orders, feed-in for energy short of them). The
deviation is read from the board's signed readings: at each reading, the battery power it reports
(``bat_p``) against the setpoint of the order in force then (from ``valid_from``, or from when the
board acknowledged applying it, to ``valid_until``), held over the span since the reading before. A
reading within ``FOLLOW_BAND_W`` (or ``FOLLOW_BAND_PERMILLE`` of the setpoint) of its setpoint, a
full battery told to charge and an empty one told to discharge, and any time no order set the
battery (before a late order arrived, say) follow their orders: a battery whose board did what its
orders said pays no imbalance. A board whose readings carry no battery power cannot be told from
its household: its whole deviation settles ex post.

Redispatch. The delivery check's changes (``redispatches``) are paid by the grid operator when the
interval settles, and only those the board acknowledged applying as ordered (its signed Ack
carries the applied setpoint): a board that answered "pv_limit_w limited to 0" (it could not
curtail) or that never acknowledged is not paid for it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from coordinator.ledger import Ledger, LedgerError, journal
from coordinator.ledger.journal import Posting
from coordinator.ledger.queries import settlement as q
from coordinator.ledger.queries.settlement import SentOrder
from coordinator.ledger.store import LastReading
from coordinator.market import (
    DSO,
    PLATFORM,
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
from coordinator.market.allocation import largest_remainder
from coordinator.site import Asset
from protocol import codec, frame, messages
from protocol.errors import ProtocolError

log = logging.getLogger("peergrid.settlement")
FOLLOW_BAND_W = 50  # a battery within this many W of its setpoint follows it ...
FOLLOW_BAND_PERMILLE = 20  # ... or within this share of it (per-mille)
FULL = 1000  # per-mille state of charge of a full battery


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
    member: str = ""


def _previous(ledger: Ledger, board_id: str, start: int, end: int) -> LastReading | None:
    prev = q.previous_end(ledger, board_id, start)
    if prev is not None:
        return prev
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
        ends.append(Span(b.board_id, r0, r1, b.member_id))
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
    platform_fee: int = 0,
    assets: Sequence[Asset] = (),
) -> Clearing:
    """Clear and settle interval ``start`` on measured energy, once: a settled interval raises
    LedgerError (nothing is settled twice), as does money that would not sum to zero. ``seal``
    makes the signed Result frame of the clearing, stored in the same transaction. Measuring,
    clearing and recording run in one transaction: the check that the interval is not settled yet
    and the readings it is settled on hold until its records are committed."""
    # one transaction from the "already settled?" check to the last record: nothing another
    # writer does in between can be settled twice or missed
    with ledger.transaction() as tx:
        if q.is_settled(tx, start):
            raise LedgerError(f"interval {start} is already settled")
        c, rec, postings = _settle(
            ledger, start, length, scheme, tariff, prefs, sharing, contracts, wholesale
        )
        if platform_fee:
            postings.append((journal.MARKET, platform_fees(rec.trades, platform_fee)))
        shared = pass_on([p for _, rows in postings for p in rows], assets)
        if shared:
            postings.append((journal.SHARES, shared))
        if sum(p.amount for _, rows in postings for p in rows) != 0:
            raise LedgerError(f"interval {start}: postings do not sum to zero")
        result = seal(c) if seal is not None else None
        q.record(tx, replace(rec, result_frame=result))
        for source, rows in postings:
            journal.post(tx, start, source, rows)
    return c


def _settle(
    ledger: Ledger,
    start: int,
    length: int,
    scheme: str,
    tariff: Tariff,
    prefs: Mapping[str, Preferences],
    sharing: Sharing | None,
    contracts: Sequence[Contract] | None,
    wholesale: Mapping[int, int] | None,
) -> tuple[Clearing, q.IntervalRecord, list[tuple[str, list[Posting]]]]:
    """Measure, clear and book interval ``start`` (inside the settlement's transaction): the
    clearing, the interval's records (no Result frame yet) and its postings per source."""
    end = start + length
    measured, ends = measure(ledger, start, end)
    # ex-ante schedules (dispatched storage): binding at their cleared prices; every party's
    # ex-post position is what it measured beyond its schedule
    sched: list[Row] = [
        (b, s_, e, p, f, "schedule", "schedule") for b, s_, e, p, f in q.schedules(ledger, start)
    ]
    scheduled: dict[str, int] = {}
    for b, s_, e, *_ in sched:
        scheduled[b] = scheduled.get(b, 0) + e
        scheduled[s_] = scheduled.get(s_, 0) - e
    deviation: dict[str, int] = {}  # member -> mWh its batteries took beyond their orders
    ordered = q.boards_with_orders(ledger, start - length, end)
    for span in ends:
        if span.board_id in ordered:
            d = battery_deviation(ledger, span, length)
            if d:
                deviation[span.member] = deviation.get(span.member, 0) + d
    orders: list[Order] = []
    imbalance: list[Row] = []
    for m in measured.values():
        dev = deviation.get(m.party, 0)  # the battery's: the supplier of last resort's
        if dev > 0:
            imbalance.append((m.party, SUPPLIER, dev, tariff.retail, tariff.grid_fee, "imbalance", ""))
        elif dev < 0:
            imbalance.append((SUPPLIER, m.party, -dev, tariff.feed_in, 0, "", "imbalance"))
        net = m.e_imp - m.e_exp - scheduled.get(m.party, 0) - dev  # the rest: ex post, like anyone's
        p = prefs.get(m.party) or Preferences(m.party)
        orders.extend(ex_post_orders(start, p, tariff, max(net, 0), max(-net, 0)))
    c = clear(scheme, start, orders, tariff, sharing=sharing, contracts=contracts, wholesale=wholesale)
    flows = money_flows(c)
    if sum(flows.values()) != 0:
        raise LedgerError(f"interval {start}: money flows sum to {sum(flows.values())}, not 0")
    market_rows: list[Row] = list(c.trades.rows) + list(c.residual.rows)
    postings = [
        (journal.SCHEDULE, _postings(sched)),
        (journal.IMBALANCE, _postings(imbalance, journal.IMBALANCE_KIND)),
        (journal.MARKET, _postings(market_rows)),
        (journal.REDISPATCH, redispatch_postings(ledger, start)),
    ]
    rec = q.IntervalRecord(
        start,
        length,
        scheme,
        c.price,
        digest(c),
        None,
        [q.OrderRecord(o.order_id, o.party, o.side, o.energy, o.limit) for o in orders],
        [(r[0], r[1], r[2], r[3], r[4]) for r in sched + imbalance + market_rows],
        [(m.party, m.e_imp, m.e_exp) for m in measured.values()],
        [
            q.BoardDelivery(e.board_id, e.r0.seq, e.r1.seq, e.r0.e_imp, e.r0.e_exp, e.r1.e_imp, e.r1.e_exp)
            for e in ends
        ],
    )
    return c, rec, postings


Row = tuple[str, str, int, int, int, str, str]  # buyer, seller, mWh, price, fee, buy id, sell id


def _postings(rows: list[Row], kind: str | None = None) -> list[Posting]:
    """Double entry per trade: buyer pays, seller receives net of the fee, the dso the fee."""
    out: list[Posting] = []
    for buyer, seller, energy, price, fee, _, _ in rows:
        k = kind or (journal.LOCAL if SUPPLIER not in (buyer, seller) else journal.SUPPLIER_KIND)
        out.append(Posting(buyer, journal.bought(k), -energy * price, energy, f"from {seller}"))
        out.append(Posting(seller, journal.sold(k), energy * (price - fee), -energy, f"to {buyer}"))
        if fee:
            out.append(Posting(DSO, journal.GRID_FEE, energy * fee, 0, f"{buyer} <- {seller}"))
    return out


def _mwh(ws: int) -> int:
    """W*s as mWh (1 mWh = 3.6 J), rounded toward zero."""
    return ws * 10 // 36 if ws >= 0 else -(-ws * 10 // 36)


def _decode(fr: bytes | None) -> messages.Message | None:
    if fr is None:
        return None
    try:
        return messages.decode(bytes(frame.split(fr)[0]))
    except ProtocolError:  # stored after verification: never, but a ledger is not to be trusted blindly
        return None


def _took_effect(o: messages.Order, sent: SentOrder) -> int:
    """When an order took effect: its ``valid_from``, or when the board acknowledged applying it
    if that was later (the order arrived late)."""
    ack = _decode(sent.ack_frame)
    if isinstance(ack, messages.Ack) and sent.ack_status in (messages.ST_APPLIED, messages.ST_CLAMPED):
        return max(o.valid_from, ack.ts)
    return o.valid_from


def battery_deviation(ledger: Ledger, span: Span, length: int) -> int:
    """mWh the board's battery took beyond its orders (+ charged more or discharged less, - the
    opposite) over the readings ``span`` settles: at each reading, its reported power against the
    setpoint of the newest order in force then, held since the reading before (see the module's
    doc: what counts as following)."""
    rows = q.battery_power(ledger, span.board_id, span.r0.seq, span.r1.seq)
    if len(rows) < 2:
        return 0
    windows: list[tuple[int, int, int]] = []  # (took effect, valid until, setpoint), oldest order first
    for sent in q.orders_for(ledger, span.board_id, rows[0][0] - length, rows[-1][0]):
        o = _decode(sent.frame)
        if isinstance(o, messages.Order) and o.bat_w is not None:
            windows.append((_took_effect(o, sent), o.valid_until, o.bat_w))
    ws = 0
    for (t0, _, _), (t, p, soc) in zip(rows, rows[1:], strict=False):
        sp = next((w for a, b, w in reversed(windows) if a < t <= b), None)
        if p is None or sp is None:
            continue
        diff = p - sp
        if abs(diff) <= max(FOLLOW_BAND_W, abs(sp) * FOLLOW_BAND_PERMILLE // 1000):
            continue
        if soc is not None and ((sp > 0 and soc >= FULL and diff < 0) or (sp < 0 and soc <= 0 and diff > 0)):
            continue  # full and told to charge, empty and told to discharge: it did what it could
        ws += diff * (t - t0)
    return _mwh(ws)


def _applied(r: q.Redispatch) -> bool:
    """Whether the board acknowledged applying the redispatch's setpoint as ordered."""
    if r.order is None or r.order.ack_status not in (messages.ST_APPLIED, messages.ST_CLAMPED):
        return False
    order, ack = _decode(r.order.frame), _decode(r.order.ack_frame)
    if not isinstance(order, messages.Order) or not isinstance(ack, messages.Ack):
        return False
    if r.kind == "pv_limit":
        return ack.pv_limit_w == order.pv_limit_w == r.setpoint
    if r.kind == "battery":
        return ack.bat_w == order.bat_w == r.setpoint
    if r.kind == "ev":
        return ack.ev_ma == order.ev_ma == r.setpoint
    # a shed load: the relays the order set are in the state it asked for
    mask = order.relay_mask
    return mask != 0 and ack.relay_state & mask == order.relay_state & mask


def redispatch_postings(ledger: Ledger, start: int) -> list[Posting]:
    """The grid operator's compensation for the redispatches of interval ``start`` that the boards
    acknowledged applying as ordered; the others are logged and not paid. Nothing for an interval
    whose compensation was paid when its orders went out (a ledger from before)."""
    if q.redispatch_posted(ledger, start):
        return []
    rows: list[Posting] = []
    for r in q.redispatches(ledger, start):
        if not r.member or not r.compensation:
            continue
        if not _applied(r):
            ack = _decode(r.order.ack_frame) if r.order is not None else None
            why = f"the board answered {ack.reason!r}" if isinstance(ack, messages.Ack) else "no ack"
            log.warning(
                "interval %d: %s redispatch of %s to %d not paid (%s)",
                *(start, r.kind, r.board_id, r.setpoint, why),
            )
            continue
        memo = f"{r.kind} set to {r.setpoint}: {r.reason}"[:200]
        rows.append(Posting(r.member, journal.REDISPATCH_COMPENSATION, r.compensation, 0, memo))
        rows.append(Posting(DSO, journal.REDISPATCH_COMPENSATION, -r.compensation, 0, memo))
    return rows


def platform_fees(trades: Sequence[q.TradeRow], fee: int) -> list[Posting]:
    """The platform operator's fee on the interval's local trades (schedules and the market's),
    ``fee`` mc/kWh paid by the seller."""
    out: list[Posting] = []
    for buyer, seller, energy, _, _ in trades:
        if SUPPLIER not in (buyer, seller) and energy:
            out.append(Posting(seller, journal.PLATFORM_FEE, -energy * fee, 0, f"to {buyer}"))
            out.append(Posting(PLATFORM, journal.PLATFORM_FEE, energy * fee, 0, seller))
    return out


def pass_on(rows: Sequence[Posting], assets: Sequence[Asset]) -> list[Posting]:
    """A community-owned asset's net amount in ``rows`` passed on to its shareholders, pro rata to
    their shares (largest remainder: exact to the nano-cent); a loss is passed on the same way."""
    out: list[Posting] = []
    for a in assets:
        net = sum(p.amount for p in rows if p.party == a.member)
        if not net:
            continue
        parts = largest_remainder(abs(net), [n for _, n in a.shares])
        sign = 1 if net > 0 else -1
        out.append(Posting(a.member, journal.ASSET_SHARE, -net, 0, "passed on to its shareholders"))
        out.extend(
            Posting(m, journal.ASSET_SHARE, sign * x, 0, a.member)
            for (m, _), x in zip(a.shares, parts, strict=True)
            if x
        )
    return out
