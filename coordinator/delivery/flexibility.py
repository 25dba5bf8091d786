"""Local flexibility market for the grid operator (USEF/Shapeshifter, NODES, GOPACS style).

Shapes, in order of the exchange:

- ``FlexRequest``: the operator's need at a congestion point (a feeder or bus) for a period of
  market intervals: direction (``"reduce"`` import, i.e. less load or more generation, or
  ``"increase"``), power per interval (W) and a price cap (mc/kWh delivered);
- ``FlexOffer``: a member's offer against a request: power per interval (W), price (mc/kWh),
  minimum acceptance quantity (W, NODES), the board whose readings prove delivery;
- ``FlexOrder``: the accepted part of an offer;
- ``FlexSettlement``: per order, baseline and measured energy from signed readings, the
  delivered flexibility (capped at the order) and the payment from the operator to the member.

Clearing and settlement are pure; ``settle_orders`` writes the payments as postings.

From order to delivery: :func:`auto_offers` makes offers for a posted request from what the
members' devices can hold over the whole period (``Capability``, built by the dispatcher from
their preferences and state of charge); :func:`record_orders` stores the cleared orders, and the
dispatcher turns every order active in an interval into the delivering board's setpoint
(:func:`injection_change`: a battery discharges or charges more, an EV charges less, a
deferrable load is switched off, PV export is limited), in a signed board order.
Baseline: the mean energy of the ``BASELINE_INTERVALS`` intervals before the request starts
("meter before, meter after", from the board's register differences).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.errors import CoordinatorError
from coordinator.ledger import Ledger, journal
from coordinator.ledger.journal import Posting
from coordinator.ledger.queries import flexibility as q
from coordinator.market import DSO

BASELINE_INTERVALS = 4


class FlexError(CoordinatorError):
    """A flexibility request or offer is malformed or inconsistent."""


@dataclass(frozen=True)
class FlexRequest:
    request_id: str
    congestion_point: str
    start: int  # first interval start
    intervals: int
    direction: str  # "reduce" | "increase"
    power_w: int
    price_cap: int  # mc/kWh

    def __post_init__(self) -> None:
        if self.direction not in ("reduce", "increase"):
            raise FlexError(f"request {self.request_id}: direction must be reduce or increase")
        if self.power_w <= 0 or self.intervals <= 0 or self.price_cap < 0:
            raise FlexError(f"request {self.request_id}: power, intervals and price cap must be positive")


@dataclass(frozen=True)
class FlexOffer:
    offer_id: str
    request_id: str
    party: str
    board_id: str
    power_w: int
    price: int  # mc/kWh
    min_accept_w: int = 0
    asset: str = ""  # the device that delivers: battery | ev | load | pv_limit ("": the member decides)

    def __post_init__(self) -> None:
        if self.power_w <= 0 or not 0 <= self.min_accept_w <= self.power_w or self.price < 0:
            raise FlexError(f"offer {self.offer_id}: need power > 0, 0 <= min_accept <= power, price >= 0")


@dataclass(frozen=True)
class FlexOrder:
    order_id: str
    offer: FlexOffer
    power_w: int


@dataclass(frozen=True)
class FlexSettlement:
    order: FlexOrder
    baseline: int  # mWh per interval (mean, import positive)
    measured: list[int]  # mWh net import per interval of the request
    delivered: int  # mWh of flexibility, capped at the order
    payment: int  # nano-cent from the operator


def clear_flex(request: FlexRequest, offers: Sequence[FlexOffer]) -> list[FlexOrder]:
    """Cheapest offers first until the need is met; nothing above the cap; an offer is taken
    whole or in part, never below its minimum acceptance quantity. Deterministic."""
    ids = [o.offer_id for o in offers]
    if len(set(ids)) != len(ids):
        raise FlexError("duplicate offer ids")
    for o in offers:
        if o.request_id != request.request_id:
            raise FlexError(f"offer {o.offer_id} answers request {o.request_id}, not {request.request_id}")
    need = request.power_w
    out = []
    for o in sorted(offers, key=lambda o: (o.price, -o.power_w, o.offer_id)):
        if need <= 0 or o.price > request.price_cap:
            break
        take = min(o.power_w, need)
        if take < max(o.min_accept_w, 1):
            continue
        out.append(FlexOrder(f"{request.request_id}:{o.offer_id}", o, take))
        need -= take
    return out


def _energy(ledger: Ledger, board: str, a: int, b: int) -> int | None:
    r0 = ledger.register_at(board, a)
    r1 = ledger.register_at(board, b)
    if r0 is None or r1 is None:
        return None
    return (r1.e_imp - r1.e_exp) - (r0.e_imp - r0.e_exp)


def verify(
    ledger: Ledger,
    request: FlexRequest,
    orders: Sequence[FlexOrder],
    length: int,
    baseline_intervals: int = BASELINE_INTERVALS,
) -> list[FlexSettlement]:
    """Delivered flexibility per order from the boards' signed readings, against a baseline (the
    mean of the ``baseline_intervals`` intervals before the request)."""
    out = []
    b0 = request.start - baseline_intervals * length
    for od in orders:
        base_e = _energy(ledger, od.offer.board_id, b0, request.start)
        if base_e is None:
            raise FlexError(
                f"board {od.offer.board_id} has no readings for the baseline before {request.start}"
            )
        baseline = base_e // baseline_intervals
        per = od.power_w * length * 10 // 36  # ordered mWh per interval
        measured = []
        delivered = 0
        for k in range(request.intervals):
            s = request.start + k * length
            e = _energy(ledger, od.offer.board_id, s, s + length)
            if e is None:
                raise FlexError(f"board {od.offer.board_id} has no readings for interval {s}")
            measured.append(e)
            got = baseline - e if request.direction == "reduce" else e - baseline
            delivered += max(0, min(got, per))
        out.append(FlexSettlement(od, baseline, measured, delivered, delivered * od.offer.price))
    return out


def settle_orders(ledger: Ledger, request: FlexRequest, settled: Sequence[FlexSettlement]) -> None:
    """Post each payment: the operator (``DSO``) pays the member; sums to zero. The payments are
    numbered after the request's interval's earlier flexibility postings, in the same transaction."""
    rows: list[Posting] = []
    for s in settled:
        if not s.payment:
            continue
        memo = f"flex {s.order.order_id}"
        rows.append(Posting(s.order.offer.party, journal.FLEXIBILITY, s.payment, 0, memo))
        rows.append(Posting(DSO, journal.FLEXIBILITY, -s.payment, 0, memo))
    with ledger.transaction() as tx:
        journal.post(tx, request.start, journal.FLEX, rows)


@dataclass(frozen=True)
class Capability:
    """What one device of a member can hold for every interval of a request."""

    party: str
    board_id: str
    asset: str  # battery | ev | load | pv_limit
    direction: str  # reduce | increase
    power_w: int
    price: int  # mc/kWh the member asks


def auto_offers(request: FlexRequest, caps: Sequence[Capability]) -> list[FlexOffer]:
    """One offer per device able to move in the request's direction, cheapest first.

    The minimum acceptance quantity is a tenth of the offer (below that, switching is not worth it)."""
    out = []
    for c in sorted(caps, key=lambda c: (c.price, c.board_id, c.asset)):
        if c.direction != request.direction or c.power_w <= 0:
            continue
        out.append(
            FlexOffer(
                f"{c.board_id}:{c.asset}",
                request.request_id,
                c.party,
                c.board_id,
                c.power_w,
                c.price,
                c.power_w // 10,
                c.asset,
            )
        )
    return out


def injection_change(direction: str, power_w: int) -> int:
    """Change of the board's injection (W, + export) an order asks for."""
    return power_w if direction == "reduce" else -power_w


def record_orders(ledger: Ledger, request: FlexRequest, orders: Sequence[FlexOrder]) -> None:
    """Store cleared orders so that the dispatcher sends their setpoints in the request's intervals."""
    r = request
    q.add_orders(
        ledger,
        [
            q.FlexOrderRecord(
                o.order_id,
                r.request_id,
                r.congestion_point,
                o.offer.party,
                o.offer.board_id,
                o.offer.asset,
                r.direction,
                o.power_w,
                o.offer.price,
                r.start,
                r.intervals,
            )
            for o in orders
        ],
    )


@dataclass(frozen=True)
class ActiveOrder:
    order_id: str
    party: str
    board_id: str
    asset: str
    direction: str
    power_w: int
    price: int  # mc/kWh


def orders_at(ledger: Ledger, start: int, length: int) -> list[ActiveOrder]:
    """Flexibility orders whose request covers the interval starting at ``start``."""
    return [ActiveOrder(*r) for r in q.orders_at(ledger, start, length)]
