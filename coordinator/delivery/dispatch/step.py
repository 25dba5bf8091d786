"""The dispatch step of one interval, composed of its parts: the storage market's targets, the
integrator homes' plans, the active flexibility orders, then the delivery check (``check``, in a
worker thread: it runs pandapower) with every board's devices, whose changes are recorded with
their reason in ``redispatches`` (compensated at settlement once the board acknowledged them), and
merged into one signed order per board."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from coordinator.delivery.dispatch import flex, homes, limits, storage, targets, view
from coordinator.delivery.dispatch.orders import Publish, Setpoint, publish_all, sign
from coordinator.delivery.flexibility import FlexOffer, FlexRequest, orders_at
from coordinator.ledger import Ledger
from coordinator.ledger.queries import dispatch as q
from coordinator.site import Site
from protocol import crypto

if TYPE_CHECKING:  # the grid check needs numpy/pandapower (the sim extra); dispatch does not
    from coordinator.delivery.guard import AssetCheck, Change
    from coordinator.delivery.summary import GridSummary

log = logging.getLogger("peergrid.dispatch")


@dataclass
class Dispatch:
    ledger: Ledger
    site: Site
    key: crypto.SigningKey
    publish: Publish
    # the delivery check with every device: (expected W per board, assets per board) -> changes and
    # the grid's state after them; None: no grid check
    check: AssetCheck | None = None

    async def run(self, start: int) -> list[Setpoint]:
        """The interval's whole dispatch: market, integrator homes and flexibility orders; then,
        with ``check``, the delivery check with every device, its changes recorded and paid; one
        signed order per board. An interval is dispatched once: after a restart its orders and
        payments stand."""
        if q.is_dispatched(self.ledger, start):
            log.info("interval %d already dispatched (a restart): orders and payments stand", start)
            return []
        v = view.read(self.ledger, self.site, start)
        active = orders_at(self.ledger, start, self.site.length)
        tg, schedule = storage.clear_storage(self.ledger, self.site, v, start)
        tg.update(homes.homes(self.ledger, self.site, v, start, active))
        flex.apply_orders(tg, active, v)
        limited = limits.apply(self.ledger, self.site, start, tg, v)  # the operator's capacity limits
        changes: list[Change] = []
        summary: GridSummary | None = None
        if self.check is not None:
            sched, assets = targets.grid_input(self.site, start, tg, v)
            if sched:  # pandapower runs off the event loop
                checked = await asyncio.to_thread(self.check, sched, assets)
                changes, summary = checked.changes, checked.summary
                targets.apply_changes(tg, changes, assets, v)
        out = []
        with self.ledger.transaction() as tx:
            q.add_schedule(tx, start, schedule)
            self._record(tx, start, changes, v)
            checked_out = {(c.board, c.kind) for c in changes}  # the grid check's change stands
            q.add_redispatches(tx, start, [r for r in limited if (r.board_id, r.kind) not in checked_out])
            if summary is not None:
                q.add_grid_check(tx, start, q.GridCheckRecord(**asdict(summary), changes=len(changes)))
            for board, t in sorted(tg.items()):
                out.append(sign(self.site, self.key, board, self.ledger.next_oseq(board), start, t))
            q.add_orders(tx, start, [(sp.board_id, sp.oseq, sp.frame) for sp in out])
        await publish_all(self.publish, self.site.grid, out)
        return out

    def _record(self, tx: sqlite3.Connection, start: int, changes: list[Change], v: view.StepView) -> None:
        """Each change with its reason and the compensation it is owed: the grid operator pays it
        when the interval settles, if the board acknowledged applying it (transaction/settlement)."""
        q.add_redispatches(
            tx,
            start,
            [
                q.RedispatchRecord(c.board, c.kind, c.delta_w, c.setpoint, c.reason, c.compensation)
                for c in changes
            ],
        )

    def flex_offers(self, request: FlexRequest) -> list[FlexOffer]:
        """Offers for a posted flexibility request from the devices at its congestion point."""
        return flex.offers(self.site, view.read(self.ledger, self.site, request.start), request)
