"""The storage market: before an interval starts, clear the batteries' and EVs' orders against the
other members' forecast positions; each storage board's target is the power its cleared energy
implies, and the storage's trades are its schedule, which settlement honours at their prices.

The forecast of every other member is its measured net energy in the last settled interval
(persistence forecast). A battery with a flexibility order keeps what the order needs: before the
order's baseline it keeps (and if need be charges, at the latest by the baseline's start) the
energy to deliver it above its reserve; during the baseline it holds still (the reference its
delivery is measured against is not to be moved by trading) and during the order it delivers it
alone (:mod:`.flex` sets its power): the storage market leaves it out of both.

The state of charge comes from the board's latest reading (``bat_soc``, per-mille; for an EV, the
vehicle's, by ISO 15118 or the car's API). An EV charges to its target by its next departure (UTC)
at least cost and never discharges; its board gets a charging current per phase instead of a
battery setpoint.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from coordinator.delivery.devices import next_time
from coordinator.delivery.dispatch.targets import Target
from coordinator.delivery.dispatch.view import StepView
from coordinator.delivery.flexibility import BASELINE_INTERVALS
from coordinator.errors import CoordinatorError
from coordinator.ledger import Ledger
from coordinator.ledger.queries import dispatch as q
from coordinator.ledger.queries import flexibility as fq
from coordinator.market import (
    BUY,
    Order,
    Preferences,
    Storage,
    clear,
    energy_by_order,
    energy_mwh,
    forecast_orders,
    storage_orders,
)
from coordinator.members import PER_MILLE, Member, StoragePrefs
from coordinator.site import Site

log = logging.getLogger("peergrid.dispatch")
EX_ANTE_SCHEME = "pairwise"


@dataclass(frozen=True)
class FlexDuty:
    """A battery's flexibility orders as the storage market sees them: held still from ``hold``
    (the earliest baseline start) while one runs, and the mWh above its reserve it must keep by
    then."""

    hold: int
    keep: int
    busy: bool  # in a baseline or an order now: out of the storage market


def flex_duties(ledger: Ledger, start: int, length: int) -> dict[str, FlexDuty]:
    """Board -> its battery's flexibility duty at interval ``start`` (boards with no order in force
    or ahead left out)."""
    out: dict[str, FlexDuty] = {}
    for board, asset, direction, power_w, o_start, n in fq.orders_ending_after(ledger, start, length):
        if asset != "battery":
            continue
        hold = o_start - BASELINE_INTERVALS * length
        busy = hold <= start
        keep = energy_mwh(power_w, n * length) if direction == "reduce" and not busy else 0
        d = out.get(board)
        if d is None:
            out[board] = FlexDuty(hold, keep, busy)
        else:  # the earliest order decides when to hold still; what to keep adds up
            out[board] = FlexDuty(min(d.hold, hold), d.keep + keep, d.busy or busy)
    return out


@dataclass(frozen=True)
class Dispatched:
    """A member's storage in the clearing and the board that drives it."""

    storage: Storage
    board: str
    ev_phases: int  # 0: a battery


def storages(ledger: Ledger, view: StepView, start: int, length: int) -> dict[str, Dispatched]:
    """Member -> its storage in the clearing of ``start``. Left out: an integrator home's (it
    follows its own plan), a storage whose state of charge is not known yet (its board keeps its
    safe default), one the market refuses (logged and counted)."""
    out = {}
    duties = flex_duties(ledger, start, length)
    for m in view.members:
        st = m.prefs.storage
        board = view.board_of.get(m.id)
        if st is None or board is None or m.prefs.integrator is not None:
            continue
        last = view.latest.get(board)
        if last is None or last.bat_soc is None:
            continue
        duty = duties.get(board)
        if duty is not None and duty.busy and not st.is_ev:
            continue  # its flexibility order's baseline or delivery: held (``held``)
        try:
            s = _storage(m, st, board, last.bat_soc, start, None if st.is_ev else duty)
        except CoordinatorError as e:  # one member's storage must not stop the others
            log.warning("storage of %s left out of dispatch: %s", m.id, e)
            ledger.count_rejections({"bad_storage_prefs": 1})
            continue
        out[m.id] = Dispatched(s, board, st.phases if st.is_ev else 0)
    return out


def held(ledger: Ledger, view: StepView, start: int, length: int) -> dict[str, Target]:
    """Board -> a still battery (0 W) for every battery in its flexibility order's baseline or
    delivery (:mod:`.flex` adds the delivery's power to it)."""
    out = {}
    duties = flex_duties(ledger, start, length)
    for m in view.members:
        st = m.prefs.storage
        board = view.board_of.get(m.id)
        if st is None or st.is_ev or board is None or m.prefs.integrator is not None:
            continue
        duty = duties.get(board)
        if duty is not None and duty.busy:
            out[board] = Target(m.id, bat_w=0)
    return out


def _storage(
    m: Member, st: StoragePrefs, board: str, soc: int, start: int, duty: FlexDuty | None = None
) -> Storage:
    cap = st.capacity_mwh
    deadline = None
    target = 0
    if st.is_ev and st.departure is not None:
        deadline = next_time(start + 1, st.departure)
        target = cap * st.target_soc // PER_MILLE
    elif duty is not None and duty.keep:  # what the flexibility order needs, by its baseline
        deadline = duty.hold
        target = min(cap, cap * st.min_soc // PER_MILLE + duty.keep)
    return Storage(
        m.id,
        board,
        cap,
        cap * soc // PER_MILLE,
        st.max_charge_w,
        0 if st.is_ev else st.max_discharge_w,
        target_soc=target,
        deadline=deadline,
        min_soc=cap * st.min_soc // PER_MILLE,
        feeder=m.feeder,
    )


def clear_storage(
    ledger: Ledger, site: Site, view: StepView, start: int
) -> tuple[dict[str, Target], list[q.ScheduleRow]]:
    """Clear the ex-ante market of interval ``start``: each storage board's target and the
    storage's trades (buyer, seller, mWh, price, fee)."""
    mine = storages(ledger, view, start, site.length)
    still = held(ledger, view, start, site.length)
    if not mine:
        return still, []
    tariff = site.tariff_at(start)
    orders: list[Order] = []
    net = {} if view.forecast is None else q.member_net(ledger, view.forecast)
    for m in view.members:  # a forecast at the tariff's anchors: no member's own price limits
        if m.id not in mine and net.get(m.id):
            orders.extend(forecast_orders(start, Preferences(m.id, feeder=m.feeder), tariff, net[m.id]))
    for d in mine.values():
        orders.extend(storage_orders(start, site.length, d.storage, tariff))
    c = clear(EX_ANTE_SCHEME, start, orders, tariff)
    filled = energy_by_order(c)
    net_of: dict[str, int] = {}  # party -> mWh bought (+) / sold (-) in this clearing
    for o in orders:
        got = filled.get(o.order_id, 0)
        net_of[o.party] = net_of.get(o.party, 0) + (got if o.side == BUY else -got)
    schedule = [
        (r[0], r[1], r[2], r[3], r[4])
        for r in list(c.trades.rows) + list(c.residual.rows)
        if r[0] in mine or r[1] in mine
    ]
    out: dict[str, Target] = dict(still)
    for party, d in sorted(mine.items()):
        w = net_of.get(party, 0) * 36 // (10 * site.length)  # mWh over the interval -> W (1 mWh = 3.6 J)
        if d.ev_phases:
            out[d.board] = Target(party, ev_w=max(0, w), phases=d.ev_phases)
        else:
            out[d.board] = Target(party, bat_w=w)
    return out, schedule
