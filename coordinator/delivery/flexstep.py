"""The flexibility step of the interval loop: what members changed and what grid operators asked,
carried out in a running coordinator.

Before the dispatcher sends an interval's orders (:meth:`FlexStep.before_dispatch`):

1. members' device changes whose interval has come are put in force
   (:func:`coordinator.ledger.member_changes.apply_due`);
2. every posted flexibility request is cleared: offers from the devices at its congestion point at
   the prices their members ask (:meth:`Dispatch.flex_offers`), cheapest first up to the request's
   power and below its price cap (:func:`coordinator.delivery.flexibility.clear_flex`); the orders
   are stored, and the dispatcher turns them into setpoints in the boards' signed orders for every
   interval of the window. A request whose window began before it could be cleared fails.

After settlement (:meth:`FlexStep.after_settle`), once a cleared request's window has settled:

3. delivery is verified per order from the delivering board's signed readings against its baseline
   (the mean of the intervals before the window, :func:`~coordinator.delivery.flexibility.verify`);
4. the payments are posted (operator pays member) with a coordinator-signed record of each
   (:mod:`coordinator.delivery.flexrecord`) in one transaction, and the request is settled.

A request that cannot be verified (its boards' readings missing) is retried each pass and fails
``GIVE_UP`` intervals after its window (logged and counted); nothing already posted changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from coordinator.delivery.dispatch import Dispatch
from coordinator.delivery.flexibility import (
    BASELINE_INTERVALS,
    FlexOffer,
    FlexOrder,
    FlexRequest,
    FlexSettlement,
    clear_flex,
    record_orders,
    settle_orders,
    verify,
)
from coordinator.delivery.flexrecord import sign
from coordinator.errors import CoordinatorError
from coordinator.ledger import Ledger, flex_requests, member_changes
from coordinator.ledger.flex_requests import FlexRecord, StoredRequest
from coordinator.ledger.queries import service as service_q
from coordinator.site import Site
from protocol import crypto

log = logging.getLogger("peergrid.flexibility")
GIVE_UP = 8  # intervals after a window's end before an unverifiable request fails


def flex_request(r: StoredRequest) -> FlexRequest:
    return FlexRequest(
        r.request_id, r.congestion_point, r.start, r.intervals, r.direction, r.power_w, r.price_cap
    )


@dataclass
class FlexStep:
    ledger: Ledger
    site: Site
    key: crypto.SigningKey
    dispatch: Dispatch
    now: Callable[[], float]
    baseline: int = BASELINE_INTERVALS  # intervals before a window its baseline is the mean of

    def before_dispatch(self, start: int) -> None:
        """Put due member changes in force and clear posted requests, before interval ``start``'s
        orders go out."""
        now = int(self.now())
        for c in member_changes.apply_due(self.ledger, start, now=now):
            log.info(
                "member %s: preferences changed by %s in force from %d", c.member_id, c.changed_by, start
            )
        for r in flex_requests.in_state(self.ledger, "posted"):
            try:
                self._clear(r, start)
            except CoordinatorError as e:  # one request must not stop the others, nor dispatch
                self._fail(r, f"not cleared: {e}")

    def _clear(self, r: StoredRequest, start: int) -> None:
        if r.start < start:
            self._fail(r, f"its window began at {r.start}, before it could be cleared (at {start})")
            return
        req = flex_request(r)
        offers = self.dispatch.flex_offers(req)
        orders = clear_flex(req, offers)
        ordered = sum(o.power_w for o in orders)
        note = f"{len(offers)} offers, {len(orders)} orders for {ordered} of {r.power_w} W"
        if not orders:
            note += " (no offer at or below the price cap)" if offers else " (no device can deliver it)"
        with self.ledger.transaction() as tx:
            record_orders(self.ledger, req, orders)
            flex_requests.set_state(tx, r.request_id, "cleared", note=note, ordered_w=ordered)
        log.info("flexibility request %s cleared: %s", r.request_id, note)

    def after_settle(self) -> None:
        """Verify and pay every cleared request whose window has settled."""
        end = service_q.settled_end(self.ledger)
        if end is None:
            return
        for r in flex_requests.in_state(self.ledger, "cleared"):
            if r.end(self.site.length) > end:
                continue
            try:
                self._settle(r)
            except CoordinatorError as e:
                if end >= r.end(self.site.length) + GIVE_UP * self.site.length:
                    self._fail(r, f"delivery not verified: {e}")
                else:
                    log.info("flexibility request %s not verified yet: %s", r.request_id, e)

    def _settle(self, r: StoredRequest) -> list[FlexSettlement]:
        req = flex_request(r)
        orders = [
            FlexOrder(
                o.order_id,
                FlexOffer(o.order_id, r.request_id, o.party, o.board_id, o.power_w, o.price, 0, o.asset),
                o.power_w,
            )
            for o in flex_requests.orders_of(self.ledger, r.request_id)
        ]
        settled = verify(self.ledger, req, orders, self.site.length, self.baseline)
        now = int(self.now())
        records = [self._record(r, s, now) for s in settled]
        delivered = sum(s.delivered for s in settled)
        paid = sum(s.payment for s in settled)
        note = f"{delivered} mWh delivered of {len(settled)} orders, {paid} nano-cent paid"
        with self.ledger.transaction() as tx:
            settle_orders(self.ledger, req, settled)
            flex_requests.add_records(tx, records)
            flex_requests.set_state(tx, r.request_id, "settled", note=note, delivered=delivered, paid=paid)
        log.info("flexibility request %s settled: %s", r.request_id, note)
        return settled

    def _record(self, r: StoredRequest, s: FlexSettlement, now: int) -> FlexRecord:
        o = s.order
        length = self.site.length
        body, sig = sign(
            self.key,
            {
                "grid": self.site.grid,
                "request_id": r.request_id,
                "source": r.source,
                "congestion_point": r.congestion_point,
                "direction": r.direction,
                "start": r.start,
                "intervals": r.intervals,
                "length": length,
                "price_cap": r.price_cap,
                "order_id": o.order_id,
                "party": o.offer.party,
                "board": o.offer.board_id,
                "asset": o.offer.asset,
                "power_w": o.power_w,
                "price": o.offer.price,
                "baseline_from": r.start - self.baseline * length,
                "baseline_mwh": s.baseline,
                "ordered_mwh": o.power_w * length * 10 // 36,
                "measured_mwh": s.measured,
                "delivered_mwh": s.delivered,
                "payment": s.payment,
                "settled": now,
            },
        )
        return FlexRecord(o.order_id, r.request_id, o.offer.party, r.start, s.delivered, s.payment, body, sig)

    def _fail(self, r: StoredRequest, why: str) -> None:
        log.warning("flexibility request %s failed: %s", r.request_id, why)
        self.ledger.count_rejections({"flex_request_failed": 1})
        with self.ledger.transaction() as tx:
            flex_requests.set_state(tx, r.request_id, "failed", note=why)
