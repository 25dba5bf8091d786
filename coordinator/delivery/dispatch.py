"""Ex-ante dispatch: before an interval starts, clear the batteries' and EVs' orders against the
other members' forecast positions, and send each storage board a signed Order with the setpoint
that its cleared energy implies. Acknowledgements come back through ingest (``record_ack``).

A member's storage is described in its preferences (``prefs["storage"]``):
``{"capacity_mwh": 10000000, "max_charge_w": 3300, "max_discharge_w": 3300, "min_soc": 100}``
(``min_soc`` in per-mille); the state of charge comes from the board's latest reading
(``bat_soc``, per-mille). An EV is ``{"kind": "ev", "capacity_mwh": 60000000, "max_charge_w":
11000, "phases": 3, "target_soc": 800, "departure": "07:00"}``: it charges to the target by the
next departure (UTC) at least cost, never discharges, and its board gets a charging current
(``ev_ma``, per phase at 230 V) instead of a battery setpoint; its board reports the vehicle's
state of charge in ``bat_soc`` (ISO 15118 or the car's API). The forecast of every other member
is its measured net energy in the last settled interval (persistence forecast).

:meth:`Dispatch.run` is the whole step for one interval: the market's storage setpoints, the
integrator homes' plans (:func:`coordinator.delivery.integrator.first_step`), the setpoints of
active flexibility orders, then the delivery check (``check``, in a worker thread: it runs pandapower)
with every board's devices (:mod:`coordinator.delivery.devices`), whose changes are recorded with their
reason in ``redispatches``, compensated, and merged into one signed order per board.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import astuple, dataclass, field
from typing import TYPE_CHECKING, Any

from coordinator.delivery.assets import Assets, Costs, ev_ma, ev_w
from coordinator.delivery.devices import Devices, hhmm, next_time
from coordinator.delivery.errors import AssetError
from coordinator.delivery.flexibility import (
    Capability,
    FlexOffer,
    FlexRequest,
    auto_offers,
    injection_change,
    orders_at,
)
from coordinator.delivery.integrator import PlanError, first_step
from coordinator.errors import CoordinatorError
from coordinator.ledger import Ledger
from coordinator.market import (
    BUY,
    DSO,
    Order,
    Preferences,
    Storage,
    Tariff,
    clear,
    energy_by_order,
    forecast_orders,
    storage_orders,
)
from protocol import crypto, frame, messages, topics

if TYPE_CHECKING:  # the grid check needs numpy/pandapower (the sim extra); dispatch does not
    from coordinator.delivery.guard import AssetCheck, Change
    from coordinator.delivery.summary import GridSummary

log = logging.getLogger("peergrid.dispatch")
EX_ANTE_SCHEME = "pairwise"
PUBLISH_WINDOW = 200  # orders in flight at once; the broker config allows 1,000 (max_inflight_messages)
N0 = 50_000_000  # postings numbers of redispatch compensation


@dataclass(frozen=True)
class Setpoint:
    board_id: str
    oseq: int
    bat_w: int
    frame: bytes


@dataclass(frozen=True)
class Plan:
    setpoints: list[Setpoint]
    schedule: list[tuple[str, str, int, int, int]]  # (buyer, seller, mWh, price, fee) of storage


@dataclass
class Target:
    """What a board is to do in an interval, while the step assembles it."""

    party: str
    bat_w: int | None = None  # + charge
    ev_w: int | None = None
    phases: int = 1
    pv_limit_w: int | None = None
    relay_mask: int = 0
    relay_state: int = 0
    ev_need: int = 0  # integrator EV: mWh still to charge by ``ev_deadline``
    ev_deadline: int | None = None
    integrated: bool = False  # set by an integrator plan, which weighs flexibility orders itself

    def power_w(self) -> int:
        """The storage power of the setpoint (W, + charge), as ``Setpoint.bat_w`` reports it."""
        return self.bat_w if self.bat_w is not None else self.ev_w or 0

    def setpoints(self) -> dict[str, int | None]:
        return {
            "bat_w": self.bat_w,
            "ev_ma": None if self.ev_w is None else ev_ma(self.ev_w, self.phases),
            "pv_limit_w": self.pv_limit_w,
            "relay_mask": self.relay_mask,
            "relay_state": self.relay_state,
        }


@dataclass(frozen=True)
class StepView:
    """What one dispatch step reads from the ledger, read once and shared by its parts."""

    members: list[dict[str, Any]]
    board_of: dict[str, str]  # member -> its active board
    latest: dict[str, messages.Reading]  # board -> its newest stored reading
    expected: dict[str, int]  # board -> expected injection (W, + export)


@dataclass
class Dispatch:
    ledger: Ledger
    grid: str
    length: int
    tariff: Tariff
    key: crypto.SigningKey
    publish: Callable[[str, bytes], Awaitable[None]]
    _ev: dict[str, int] = field(default_factory=dict)  # EV members -> phases, from the last plan
    # the delivery check with every device: (expected W per board, assets per board) -> changes and
    # the grid's state after them; None: no grid check
    check: AssetCheck | None = None

    def view(self, start: int) -> StepView:
        """The ledger as the step for interval ``start`` sees it."""
        return StepView(
            self.ledger.members(),
            {b.member_id: b.board_id for b in self.ledger.boards("active") if b.member_id},
            self.ledger.latest_readings(),
            self.expected(start),
        )

    def expected(self, start: int) -> dict[str, int]:
        """Expected injection per board (W, + export) for ``start``: the last settled interval's,
        without what the delivery check changed in it. A PV export limit or a shed load of that
        interval is added back (its ``delta_w`` taken out), or a curtailed interval would make the
        next one look safe and its orders go out unlimited; batteries and EVs leave the forecast
        by their reported power instead (``_grid_view``)."""
        prev = start - self.length
        out = {}
        for b, i0, i1, e0, e1 in self.ledger.conn.execute(
            "SELECT board_id, e_imp0, e_imp1, e_exp0, e_exp1 FROM board_deliveries WHERE interval=?", (prev,)
        ):
            out[b] = ((e1 - e0) - (i1 - i0)) * 36 // (10 * self.length)
        for b, d in self.ledger.conn.execute(
            "SELECT board_id, sum(delta_w) FROM redispatches"
            " WHERE interval=? AND kind IN ('pv_limit', 'load') GROUP BY board_id",
            (prev,),
        ):
            if b in out:
                out[b] -= d
        return out

    def _order(self, board: str, start: int, **setpoints: int | None) -> tuple[int, bytes]:
        """The board's next signed order for the interval ``start``: (oseq, frame)."""
        oseq = self.ledger.next_oseq(board)
        fields: dict[str, Any] = {"relay_mask": 0, "relay_state": 0, **setpoints}
        msg = messages.Order(
            board=board,
            oseq=oseq,
            interval=start,
            valid_from=start,
            valid_until=start + self.length,
            **fields,
        )
        return oseq, frame.seal(msg, topics.board_topic(self.grid, board, "order"), self.key)

    def _storages(self, start: int, view: StepView) -> dict[str, tuple[Storage, str]]:
        """Member -> (its storage, the board that drives it); EVs noted in ``_ev`` (phases)."""
        self._ev.clear()
        boards = view.board_of
        latest = view.latest
        out = {}
        for m in view.members:
            st = m["prefs"].get("storage")
            if not st or m["id"] not in boards or "integrator" in m["prefs"]:
                continue  # an integrator home's storage follows its own plan
            board = boards[m["id"]]
            last = latest.get(board)
            if last is None or last.bat_soc is None:
                continue  # no state of charge known yet: the board keeps its safe default
            try:
                out[m["id"]] = (self._storage(m, st, board, last.bat_soc, start), board)
            except (CoordinatorError, KeyError, TypeError, ValueError) as e:  # one member's bad prefs
                log.warning("storage of %s left out of dispatch: %s", m["id"], e)
                self.ledger.count_rejections({"bad_storage_prefs": 1})
                continue
            if st.get("kind") == "ev":
                self._ev[m["id"]] = int(st.get("phases", 1))
        return out

    def _storage(self, m: dict[str, Any], st: dict[str, Any], board: str, soc: int, start: int) -> Storage:
        cap = int(st["capacity_mwh"])
        ev = st.get("kind") == "ev"
        deadline = None
        target = 0
        if ev and "departure" in st:
            deadline = next_time(start + 1, hhmm(st["departure"], f"member {m['id']!r} storage.departure"))
            target = cap * int(st.get("target_soc", 1000)) // 1000
        return Storage(
            m["id"],
            board,
            cap,
            cap * soc // 1000,
            int(st["max_charge_w"]),
            0 if ev else int(st.get("max_discharge_w", 0)),
            target_soc=target,
            deadline=deadline,
            min_soc=cap * int(st.get("min_soc", 0)) // 1000,
            feeder=m["feeder"],
        )

    def market(
        self, start: int, view: StepView | None = None
    ) -> tuple[dict[str, Target], list[tuple[str, str, int, int, int]]]:
        """Clear the ex-ante market of interval ``start``: each storage board's target and the
        storage's trades, which settlement honours at their cleared prices."""
        view = view or self.view(start)
        storages = self._storages(start, view)
        if not storages:
            return {}, []
        orders: list[Order] = []
        prev = start - self.length
        for m in view.members:
            if m["id"] in storages:
                continue
            row = self.ledger.conn.execute(
                "SELECT e_imp - e_exp FROM deliveries WHERE interval=? AND party=?", (prev, m["id"])
            ).fetchone()
            if row is not None and row[0]:
                orders.extend(
                    forecast_orders(start, Preferences(m["id"], feeder=m["feeder"]), self.tariff, row[0])
                )
        for st, _ in storages.values():
            orders.extend(storage_orders(start, self.length, st, self.tariff))
        c = clear(EX_ANTE_SCHEME, start, orders, self.tariff)
        filled = energy_by_order(c)
        net_of: dict[str, int] = {}  # party -> mWh bought (+) / sold (-) in this clearing
        for o in orders:
            got = filled.get(o.order_id, 0)
            net_of[o.party] = net_of.get(o.party, 0) + (got if o.side == BUY else -got)
        schedule = [
            (r[0], r[1], r[2], r[3], r[4])
            for r in list(c.trades.rows) + list(c.residual.rows)
            if r[0] in storages or r[1] in storages
        ]
        out: dict[str, Target] = {}
        for party, (_, board) in sorted(storages.items()):
            net = net_of.get(party, 0)
            bat_w = net * 36 // (10 * self.length)  # mWh over the interval -> W (1 mWh = 3.6 J)
            phases = self._ev.get(party, 0)
            if phases:
                out[board] = Target(party, ev_w=max(0, bat_w), phases=phases)
            else:
                out[board] = Target(party, bat_w=bat_w)
        return out, schedule

    def plan(self, start: int) -> Plan:
        """Clear the ex-ante market of interval ``start``; the storage boards' orders and the
        storage's trades, which settlement honours at their cleared prices."""
        targets, schedule = self.market(start)
        out = []
        for board, t in sorted(targets.items()):
            oseq, fr = self._order(board, start, **t.setpoints())
            out.append(Setpoint(board, oseq, t.power_w(), fr))
        return Plan(out, schedule)

    async def send(self, start: int) -> list[Setpoint]:
        """Plan, store (orders and schedule, one transaction) and publish the orders of ``start``."""
        plan = self.plan(start)
        with self.ledger.transaction() as tx:
            tx.executemany(
                "INSERT INTO schedules VALUES (?,?,?,?,?,?,?)",
                [(start, n, *row) for n, row in enumerate(plan.schedule)],
            )
            for sp in plan.setpoints:
                self.ledger.add_board_order(sp.board_id, sp.oseq, start, sp.frame)
        await self._publish_orders(plan.setpoints)
        return plan.setpoints

    # --- the whole step: market, integrator homes, flexibility orders, delivery check -----------

    def _devices(self, view: StepView) -> dict[str, tuple[str, Devices, dict[str, Any]]]:
        """Board -> (member, its devices, its prefs) for every active board of a member."""

        boards = view.board_of
        out = {}
        for m in view.members:
            if m["id"] in boards:
                try:
                    dev = Devices.from_prefs(m["id"], m["prefs"], feed_in=self.tariff.feed_in)
                except AssetError as e:  # one member's bad preferences must not stop the others
                    log.warning("devices of %s left out of dispatch: %s", m["id"], e)
                    self.ledger.count_rejections({"bad_device_prefs": 1})
                    continue
                out[boards[m["id"]]] = (m["id"], dev, m["prefs"])
        return out

    def _homes(
        self, start: int, devices: dict[str, tuple[str, Devices, dict[str, Any]]], view: StepView
    ) -> dict[str, Target]:
        """Integrator homes: the first step of each home's plan over its horizon. A home whose
        preferences cannot make a plan is left out (logged and counted), never the others."""

        price = self.ledger.conn.execute(
            "SELECT price FROM intervals WHERE price IS NOT NULL ORDER BY start DESC LIMIT 1"
        ).fetchone()
        local = None if price is None else int(price[0])
        fee = self.tariff.grid_fee_local
        buy = self.tariff.retail if local is None else min(self.tariff.retail, local + fee)
        sell = self.tariff.feed_in if local is None else max(self.tariff.feed_in, local)
        expected = view.expected
        flex = {
            o.board_id: (o.power_w, o.price)
            for o in orders_at(self.ledger, start, self.length)
            if o.direction == "reduce"
        }
        out = {}
        for board, (member, dev, prefs) in sorted(devices.items()):
            if "integrator" not in prefs:
                continue
            try:
                out[board] = self._home(
                    start,
                    board,
                    member,
                    dev,
                    prefs,
                    view.latest.get(board),
                    expected.get(board, 0),
                    buy,
                    sell,
                    flex.get(board, (0, 0)),
                )
            except (AssetError, PlanError, TypeError, ValueError) as e:
                log.warning("integrator home %s left out of dispatch: %s", member, e)
                self.ledger.count_rejections({"bad_integrator_plan": 1})
        return out

    def _home(
        self,
        start: int,
        board: str,
        member: str,
        dev: Devices,
        prefs: dict[str, Any],
        last: messages.Reading | None,
        export_w: int,
        buy: int,
        sell: int,
        flex: tuple[int, int],
    ) -> Target:

        horizon = int((prefs["integrator"] or {}).get("horizon", 16))
        soc = dev.battery_mwh(None if last is None else last.bat_soc)
        ev = prefs.get("ev") or {}
        need = until = 0
        deadline = None
        if ev and dev.ev is not None:
            arrive = next_time(start, hhmm(ev.get("arrive", "00:00"), f"member {member!r} ev.arrive"))
            leave = next_time(start, hhmm(ev.get("departure", "07:00"), f"member {member!r} ev.departure"))
            if leave < arrive:  # plugged in now: charge what is still missing by departure
                sent = self._ev_sent(board, arrive - 86_400, start, dev.ev[1])
                need = max(0, int(ev.get("need_mwh", 0)) - sent)
                until = (leave - start) // self.length
                deadline = leave
        bat_w, ev_w = first_step(
            export_w,
            dev,
            soc,
            need,
            until,
            horizon=horizon,
            length=self.length,
            buy=buy,
            sell=sell,
            flex=flex,
        )
        return Target(
            member,
            bat_w=bat_w if dev.battery is not None else None,
            ev_w=ev_w if need else None,
            phases=dev.ev[1] if dev.ev else 1,
            ev_need=need,
            ev_deadline=deadline,
            integrated=True,
        )

    def _ev_sent(self, board: str, since: int, until: int, phases: int) -> int:
        """mWh of EV charging the board was ordered in intervals ``since`` <= start < ``until``."""
        total = 0
        for (fr,) in self.ledger.conn.execute(
            "SELECT frame FROM board_orders WHERE board_id=? AND interval>=? AND interval<?",
            (board, since, until),
        ):
            o = messages.decode(bytes(frame.split(fr)[0]))
            if isinstance(o, messages.Order) and o.ev_ma:
                total += ev_w(o.ev_ma, phases) * self.length * 10 // 36
        return total

    def _flex(
        self,
        start: int,
        targets: dict[str, Target],
        devices: dict[str, tuple[str, Devices, dict[str, Any]]],
        expected: dict[str, int],
    ) -> None:
        """Apply every flexibility order active in ``start`` to its board's target."""
        for o in orders_at(self.ledger, start, self.length):
            member = devices.get(o.board_id, (o.party, None, {}))[0]
            t = targets.setdefault(o.board_id, Target(member))
            if t.integrated and o.asset in ("battery", "ev") and o.direction == "reduce":
                continue  # the home's plan already delivers it (first_step's flex)
            d = injection_change(o.direction, o.power_w)  # + : less import / more export
            dev = devices.get(o.board_id, (o.party, None, {}))[1]
            if o.asset == "battery":
                t.bat_w = (t.bat_w or 0) - d
            elif o.asset == "ev":
                t.ev_w = max(0, (t.ev_w or 0) - d)
                t.phases = dev.ev[1] if dev is not None and dev.ev else t.phases
            elif o.asset == "load" and dev is not None and dev.deferrable is not None:
                bit = 1 << dev.deferrable[1]
                t.relay_mask |= bit
                t.relay_state &= ~bit
            elif o.asset == "pv_limit":
                t.pv_limit_w = max(0, expected.get(o.board_id, 0) + d)

    def _grid_view(
        self,
        start: int,
        targets: dict[str, Target],
        devices: dict[str, tuple[str, Devices, dict[str, Any]]],
        view: StepView,
    ) -> tuple[dict[str, int], dict[str, Assets]]:
        """The expected schedule (W per board, + export) with the targets in it (clipped to what each
        device allows), and each board's assets."""
        base = view.expected
        sched: dict[str, int] = {}
        assets: dict[str, Assets] = {}
        for board, measured in base.items():
            last = view.latest.get(board)
            t = targets.get(board)
            # the devices' last power leaves the forecast; their new setpoints enter it
            e = measured + ((last.bat_p or 0) + (last.ev_p or 0) if last is not None else 0)
            if t is not None:
                e -= (t.bat_w or 0) + (t.ev_w or 0)
            entry = devices.get(board)
            if entry is None:
                sched[board] = e
                if e > 0:
                    assets[board] = Assets(board, pv_w=e, costs=Costs(pv=self.tariff.feed_in))
                continue
            _, dev, _ = entry
            soc = dev.battery_mwh(None if last is None else last.bat_soc)
            ev_need = 0
            deadline = None
            st = entry[2].get("storage") or {}
            if (
                dev.ev is not None
                and st.get("kind") == "ev"
                and last is not None
                and last.bat_soc is not None
            ):
                ev_need = dev.ev_need(last.bat_soc)
                try:
                    deadline = next_time(start + 1, hhmm(st["departure"], f"member {entry[0]!r} departure"))
                except (AssetError, KeyError):  # no (valid) departure: no deadline to keep
                    deadline = None
            elif dev.ev is not None and t is not None and t.ev_need:
                ev_need, deadline = t.ev_need, t.ev_deadline
            off = t is not None and dev.deferrable is not None and t.relay_mask >> dev.deferrable[1] & 1
            a = dev.assets(
                board,
                start,
                self.length,
                export_w=e,
                soc=soc,
                bat_w=t.bat_w or 0 if t is not None else 0,
                ev_w=t.ev_w or 0 if t is not None else 0,
                ev_need=ev_need,
                ev_deadline=deadline,
                load_w=0 if off else None,
            )
            if t is not None:  # what the state of charge and the EV's need allow
                planned = (t.bat_w or 0) + (t.ev_w or 0)
                t.bat_w = None if t.bat_w is None else a.bat_w
                t.ev_w = None if t.ev_w is None else a.ev_w
                e += planned - (t.bat_w or 0) - (t.ev_w or 0)
            sched[board] = e
            assets[board] = a
        return sched, assets

    async def run(self, start: int) -> list[Setpoint]:
        """The interval's whole dispatch: market, integrator homes and flexibility orders; then,
        with ``check``, the delivery check with every device, its changes recorded and paid; one
        signed order per board. An interval is dispatched once: after a restart its orders and
        payments stand."""
        if self.ledger.conn.execute(
            "SELECT 1 FROM board_orders WHERE interval=? LIMIT 1", (start,)
        ).fetchone():
            log.info("interval %d already dispatched (a restart): orders and payments stand", start)
            return []
        view = self.view(start)
        devices = self._devices(view)
        targets, schedule = self.market(start, view)
        targets.update(self._homes(start, devices, view))
        self._flex(start, targets, devices, view.expected)
        changes: list[Change] = []
        assets: dict[str, Assets] = {}
        summary: GridSummary | None = None
        if self.check is not None:
            sched, assets = self._grid_view(start, targets, devices, view)
            if sched:  # pandapower runs off the event loop
                checked = await asyncio.to_thread(self.check, sched, assets)
                changes, summary = checked.changes, checked.summary
        for c in changes:
            t = targets.setdefault(c.board, Target(devices.get(c.board, ("", None, {}))[0]))
            a = assets[c.board]
            if c.kind == "pv_limit":
                t.pv_limit_w = max(0, c.setpoint)
            elif c.kind == "battery":
                t.bat_w = c.setpoint
            elif c.kind == "ev":
                t.ev_w = a.ev_w - c.delta_w
                t.phases = a.ev_phases
            elif c.kind == "load":
                bit = 1 << a.load_relay
                t.relay_mask |= bit
                t.relay_state &= ~bit
        members = {b.board_id: b.member_id for b in self.ledger.boards("active")}
        out = []
        with self.ledger.transaction() as tx:
            tx.executemany(
                "INSERT INTO schedules VALUES (?,?,?,?,?,?,?)",
                [(start, n, *row) for n, row in enumerate(schedule)],
            )
            self._record(tx, start, changes, members)
            if summary is not None:
                tx.execute(
                    "INSERT INTO grid_checks VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (start, *astuple(summary), len(changes)),
                )
            for board, t in sorted(targets.items()):
                oseq, fr = self._order(board, start, **t.setpoints())
                self.ledger.add_board_order(board, oseq, start, fr)
                out.append(Setpoint(board, oseq, t.power_w(), fr))
        await self._publish_orders(out)
        return out

    async def _publish_orders(self, setpoints: list[Setpoint]) -> None:
        """Publish the orders concurrently (QoS 1 waits for each PUBACK: one at a time, 1,000
        boards cost 1,000 round trips), at most ``PUBLISH_WINDOW`` in flight."""
        window = asyncio.Semaphore(PUBLISH_WINDOW)

        async def one(sp: Setpoint) -> None:
            async with window:
                await self.publish(topics.board_topic(self.grid, sp.board_id, "order"), sp.frame)

        await asyncio.gather(*(one(sp) for sp in setpoints))

    def _record(self, tx: Any, start: int, changes: list[Change], members: dict[str, str | None]) -> None:
        """Each change with its reason; its compensation from the grid operator to the member."""
        last = tx.execute("SELECT max(n) FROM postings WHERE interval=? AND n>=?", (start, N0)).fetchone()[0]
        n = N0 if last is None else last + 1
        for c in changes:
            tx.execute(
                "INSERT INTO redispatches VALUES (?,?,?,?,?,?,?)",
                (start, c.board, c.kind, c.delta_w, c.setpoint, c.reason, c.compensation),
            )
            member = members.get(c.board)
            if member and c.compensation:
                memo = f"{c.kind} set to {c.setpoint}: {c.reason}"[:200]
                for k, (party, amount) in enumerate(((member, c.compensation), (DSO, -c.compensation))):
                    tx.execute(
                        "INSERT INTO postings VALUES (?,?,?,?,?,?,?)",
                        (start, n + k, party, "redispatch_compensation", amount, 0, memo),
                    )
                n += 2

    def flex_offers(self, request: FlexRequest) -> list[FlexOffer]:
        """Offers for a posted request from the devices of the members at its congestion point
        (their feeder or bus): what each can hold over the whole request, at the price it asks. A
        member whose preferences cannot be read offers nothing (see :meth:`_devices`)."""
        view = self.view(request.start)
        devices = self._devices(view)
        members = {m["id"]: m for m in view.members}
        expected = view.expected
        end = request.start + request.intervals * self.length
        per = request.intervals * self.length * 10 // 36  # mWh per W held over the request
        caps = []
        for board, (member, dev, prefs) in sorted(devices.items()):
            m = members[member]
            if request.congestion_point not in (m["feeder"], m["bus"]):
                continue
            last = view.latest.get(board)
            soc = None if last is None else last.bat_soc
            if dev.battery is not None and soc is not None:
                cap, cw, dw, lo = dev.battery
                e = cap * soc // 1000
                price = dev.ask("battery")
                caps.append(
                    Capability(member, board, "battery", "reduce", min(dw, max(0, e - lo) // per), price)
                )
                caps.append(
                    Capability(member, board, "battery", "increase", min(cw, max(0, cap - e) // per), price)
                )
            st = prefs.get("storage") or {}
            if dev.ev is not None and st.get("kind") == "ev" and soc is not None and "departure" in st:
                cw = dev.ev[0]
                need = dev.ev_need(soc)
                try:
                    leave = next_time(
                        request.start + 1, hhmm(st["departure"], f"member {member!r} departure")
                    )
                except AssetError as e:
                    log.warning("EV of %s offers no flexibility: %s", member, e)
                    continue
                # charging later: only if what it needs still fits between the request's end and departure
                if need and cw * (leave - end) * 10 // 36 >= need:
                    caps.append(Capability(member, board, "ev", "reduce", cw, dev.ask("ev")))
                if need and leave >= end:  # charging more: as far as it still needs energy
                    caps.append(
                        Capability(member, board, "ev", "increase", min(cw, need // per), dev.ask("ev"))
                    )
            if dev.deferrable is not None:
                on = min(dev.load_on(request.start + k * self.length) for k in range(request.intervals))
                caps.append(Capability(member, board, "load", "reduce", on, dev.ask("load")))
            export = expected.get(board, 0) if prefs.get("pv") else 0
            if export > 0:
                caps.append(Capability(member, board, "pv_limit", "increase", export, dev.ask("pv")))
        return auto_offers(request, caps)
