"""Money flows of a clearing, nano-cent (``energy mWh * price mc/kWh``): exact integers.

Per trade the buyer pays ``energy * price``, the seller receives ``energy * (price - fee)`` and
the dso ``energy * fee``; the three add up to zero, so the flows of every interval (members,
``SUPPLIER`` and ``DSO``) sum to exactly zero. Fixed charges (subscriptions) move money from payer
to payee and keep the sum at zero.
"""

from __future__ import annotations

from collections.abc import Iterable

from coordinator.market.bilateral import Charge
from coordinator.market.types import DSO, Clearing, TradeRow


def amounts(row: TradeRow) -> tuple[int, int, int]:
    """``(buyer pays, seller receives, dso receives)`` for one trade, nano-cent."""
    _, _, energy, price, fee, _, _ = row
    return energy * price, energy * (price - fee), energy * fee


def money_flows(clearing: Clearing, charges: Iterable[Charge] = ()) -> dict[str, int]:
    """Net money per party (receipts positive, payments negative), nano-cent; sums to zero."""
    flows: dict[str, int] = {}
    for rows in (clearing.trades.rows, clearing.residual.rows):
        for buyer, seller, energy, price, fee, _, _ in rows:
            flows[buyer] = flows.get(buyer, 0) - energy * price
            flows[seller] = flows.get(seller, 0) + energy * (price - fee)
            if fee:
                flows[DSO] = flows.get(DSO, 0) + energy * fee
    for c in charges:
        flows[c.payer] = flows.get(c.payer, 0) - c.amount
        flows[c.payee] = flows.get(c.payee, 0) + c.amount
    return flows


def energy_by_order(clearing: Clearing) -> dict[str, int]:
    """mWh each member order traded, locally and with the supplier (``""`` ids left out)."""
    out: dict[str, int] = {}
    for rows in (clearing.trades.rows, clearing.residual.rows):
        for _, _, energy, _, _, bid, sid in rows:
            if bid:
                out[bid] = out.get(bid, 0) + energy
            if sid:
                out[sid] = out.get(sid, 0) + energy
    return out
