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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

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
    from coordinator.delivery.guard import Curtailment

EX_ANTE_SCHEME = "pairwise"
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
class Dispatch:
    ledger: Ledger
    grid: str
    length: int
    tariff: Tariff
    key: crypto.SigningKey
    publish: Callable[[str, bytes], Awaitable[None]]
    _ev: dict[str, int] = field(default_factory=dict)  # EV members -> phases, from the last plan
    # the delivery guard: (expected W per board, + export) -> curtailments; None: no grid check
    guard: Callable[[dict[str, int]], list[Curtailment]] | None = None

    def expected(self, start: int) -> dict[str, int]:
        """Expected injection per board (W, + export) for ``start``: the last settled interval's."""
        prev = start - self.length
        out = {}
        for b, i0, i1, e0, e1 in self.ledger.conn.execute(
            "SELECT board_id, e_imp0, e_imp1, e_exp0, e_exp1 FROM board_deliveries WHERE interval=?", (prev,)
        ):
            out[b] = ((e1 - e0) - (i1 - i0)) * 36 // (10 * self.length)
        return out

    async def protect(self, start: int) -> list[Curtailment]:
        """Run the guard on the expected schedule; send the PV limits; record and compensate."""
        if self.guard is None:
            return []
        curt = self.guard(self.expected(start))
        members = {b.board_id: b.member_id for b in self.ledger.boards("active")}
        with self.ledger.transaction() as tx:
            last = tx.execute(
                "SELECT max(n) FROM postings WHERE interval=? AND n>=?", (start, N0)
            ).fetchone()[0]
            n = N0 if last is None else last + 1
            for c in curt:
                tx.execute(
                    "INSERT INTO curtailments VALUES (?,?,?,?,?,?)",
                    (start, c.board, c.pv_limit_w, c.delta_w, c.reason, c.compensation),
                )
                member = members.get(c.board)
                if member and c.compensation:
                    memo = f"export limited to {c.pv_limit_w} W: {c.reason}"[:200]
                    tx.execute(
                        "INSERT INTO postings VALUES (?,?,?,?,?,?,?)",
                        (start, n, member, "redispatch_compensation", c.compensation, 0, memo),
                    )
                    tx.execute(
                        "INSERT INTO postings VALUES (?,?,?,?,?,?,?)",
                        (start, n + 1, DSO, "redispatch_compensation", -c.compensation, 0, memo),
                    )
                    n += 2
        for c in curt:
            oseq, fr = self._order(c.board, start, pv_limit_w=c.pv_limit_w)
            self.ledger.add_board_order(c.board, oseq, start, fr)
            await self.publish(topics.board_topic(self.grid, c.board, "order"), fr)
        return curt

    def _order(self, board: str, start: int, **setpoints: int | None) -> tuple[int, bytes]:
        """The board's next signed order for the interval ``start``: (oseq, frame)."""
        oseq = self.ledger.next_oseq(board)
        msg = messages.Order(
            board=board,
            oseq=oseq,
            interval=start,
            valid_from=start,
            valid_until=start + self.length,
            relay_mask=0,
            relay_state=0,
            **setpoints,
        )
        return oseq, frame.seal(msg, topics.board_topic(self.grid, board, "order"), self.key)

    def _storages(self, start: int) -> dict[str, tuple[Storage, str]]:
        """Member -> (its storage, the board that drives it); EVs noted in ``_ev`` (phases)."""
        self._ev.clear()
        boards = {b.member_id: b.board_id for b in self.ledger.boards("active") if b.member_id}
        out = {}
        for m in self.ledger.members():
            st = m["prefs"].get("storage")
            if not st or m["id"] not in boards:
                continue
            board = boards[m["id"]]
            last = self.ledger.latest_reading(board)
            if last is None or last.bat_soc is None:
                continue  # no state of charge known yet: the board keeps its safe default
            cap = int(st["capacity_mwh"])
            ev = st.get("kind") == "ev"
            deadline = None
            target = 0
            if ev and "departure" in st:
                hh, mm = (int(x) for x in str(st["departure"]).split(":"))
                day = start - start % 86_400 + hh * 3600 + mm * 60
                deadline = day if day > start else day + 86_400
                target = cap * int(st.get("target_soc", 1000)) // 1000
            out[m["id"]] = (
                Storage(
                    m["id"],
                    board,
                    cap,
                    cap * last.bat_soc // 1000,
                    int(st["max_charge_w"]),
                    0 if ev else int(st.get("max_discharge_w", 0)),
                    target_soc=target,
                    deadline=deadline,
                    min_soc=cap * int(st.get("min_soc", 0)) // 1000,
                    feeder=m["feeder"],
                ),
                board,
            )
            if ev:
                self._ev[m["id"]] = int(st.get("phases", 1))
        return out

    def plan(self, start: int) -> Plan:
        """Clear the ex-ante market of interval ``start``; the storage boards' orders and the
        storage's trades, which settlement honours at their cleared prices."""
        storages = self._storages(start)
        if not storages:
            return Plan([], [])
        orders: list[Order] = []
        prev = start - self.length
        for m in self.ledger.members():
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
        schedule = [
            (r[0], r[1], r[2], r[3], r[4])
            for r in list(c.trades.rows) + list(c.residual.rows)
            if r[0] in storages or r[1] in storages
        ]
        out = []
        for party, (_, board) in sorted(storages.items()):
            net = 0
            for o in orders:
                if o.party == party:
                    got = filled.get(o.order_id, 0)
                    net += got if o.side == BUY else -got
            bat_w = net * 36 // (10 * self.length)  # mWh over the interval -> W (1 mWh = 3.6 J)
            phases = self._ev.get(party, 0)
            oseq, fr = self._order(
                board,
                start,
                bat_w=None if phases else bat_w,
                ev_ma=max(0, bat_w) * 1000 // (230 * phases) if phases else None,
            )
            out.append(Setpoint(board, oseq, bat_w, fr))
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
        for sp in plan.setpoints:
            await self.publish(topics.board_topic(self.grid, sp.board_id, "order"), sp.frame)
        return plan.setpoints
