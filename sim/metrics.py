"""Figures of a run: self-sufficiency, self-consumption, local trade, prices, per interval and in all.

Definitions (energy per market interval, as the pilots count it):

- self-sufficiency: the share of the community's consumption not bought from the grid,
  ``1 - grid import / consumption`` (PV used behind the meter and bought from neighbours both count);
- community self-consumption: the share of the PV generation used in the community,
  ``1 - grid export / generation``;
- individual self-consumption: the same if every home netted alone (no community), i.e.
  ``1 - sum of each home's export / generation``; the ratio of the two is how much the community
  raises local PV use;
- local trade share: energy bought from neighbours over the members' total metered import;
- average local price: value of local trades (fee included) over their energy, beside retail.

Consumption and generation come from the physics (a meter sees only the net); grid import and
export are what crossed the community's connection per interval: the members' metered net power
summed (batteries included), its import or its export. (The ex-post clearing's trades with the
supplier are not that: a dispatched battery's schedule and imbalance settle outside it.)
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.market import SUPPLIER
from sim.profiles import STEP_S
from sim.run import RunResult

J_PER_MWH = 3.6


@dataclass(frozen=True)
class Interval:
    start: int
    price: int | None  # mc/kWh
    traded: int  # mWh
    grid_imp: int  # mWh the community imported through its connection (metered net, summed)
    grid_exp: int
    load: int  # mWh consumed (physics)
    pv: int  # mWh generated (physics)
    battery: int  # mWh into (+) or out of (-) batteries


@dataclass(frozen=True)
class Summary:
    intervals: tuple[Interval, ...]
    load: int
    pv: int
    grid_imp: int
    grid_exp: int
    traded: int
    member_imp: int  # sum over members of their per-interval metered net import (batteries included)
    member_exp: int  # sum over homes of their per-interval net export of PV (no community, no battery)
    local_value: int  # nano-cent paid for local trades
    retail: int
    feed_in: int

    @property
    def self_sufficiency(self) -> float:
        return max(0.0, 1 - self.grid_imp / self.load) if self.load else 0.0  # (whole-mWh rounding)

    @property
    def community_self_consumption(self) -> float:
        return max(0.0, 1 - self.grid_exp / self.pv) if self.pv else 0.0

    @property
    def individual_self_consumption(self) -> float:
        return max(0.0, 1 - self.member_exp / self.pv) if self.pv else 0.0

    @property
    def local_pv_factor(self) -> float:
        ind = self.individual_self_consumption
        return self.community_self_consumption / ind if ind > 0 else 0.0

    @property
    def local_trade_share(self) -> float:
        return self.traded / self.member_imp if self.member_imp else 0.0

    @property
    def local_price(self) -> float | None:
        """Average price of local trades, mc/kWh."""
        return self.local_value / self.traded if self.traded else None


def _energy(ws: list[int] | tuple[int, ...], a: int, b: int) -> int:
    """mWh of W-per-step values in steps [a, b) (each value held for one step before its index)."""
    return sum(ws[a:b]) * STEP_S * 1000 // 3600


def summarize(r: RunResult) -> Summary:
    sc = r.scenario
    length = sc.market.interval_s
    per = length // STEP_S
    clearings = [c for c in r.clearings if sc.start <= c.interval < sc.end]  # the run's own intervals
    by_start = {c.interval: c for c in clearings}
    rows = []
    member_imp = member_exp = 0
    local_value = traded = 0
    for cl in clearings:
        for buyer, seller, e, price, _fee, _, _ in cl.trades.rows:
            if SUPPLIER not in (buyer, seller):
                local_value += e * price
                traded += e
    n_int = sc.duration_s // length
    for i in range(n_int):
        start = sc.start + i * length
        a, b = i * per + 1, (i + 1) * per + 1  # physics index k is the power at start + k steps
        load = sum(_energy(ph.load_w, a, b) for ph in r.physics.values())
        pv = sum(_energy(ph.pv_w, a, b) for ph in r.physics.values())
        bat = sum(_energy(w, a - 1, b - 1) for w in r.battery_w.values())
        net = 0
        for p in r.power.values():
            e = _energy(p, a - 1, b - 1)
            member_imp += max(e, 0)
            net += e
        for ph in r.physics.values():
            member_exp += max(_energy(ph.pv_w, a, b) - _energy(ph.load_w, a, b), 0)
        c = by_start.get(start)
        rows.append(
            Interval(
                start,
                c.price if c else None,
                c.traded if c else 0,
                max(net, 0),
                max(-net, 0),
                load,
                pv,
                bat,
            )
        )
    return Summary(
        intervals=tuple(rows),
        load=sum(x.load for x in rows),
        pv=sum(x.pv for x in rows),
        grid_imp=sum(x.grid_imp for x in rows),
        grid_exp=sum(x.grid_exp for x in rows),
        traded=traded,
        member_imp=member_imp,
        member_exp=member_exp,
        local_value=local_value,
        retail=sc.market.retail,
        feed_in=sc.market.feed_in,
    )
