"""A community of virtual meter boards under CPython, on one MQTT connection.

Each home's board (``sim.board.VirtualBoard``: the protocol code a real board runs to build, encode
and sign a reading) meters its home's net power every physics step and signs a cumulative reading
every ``reading_s``. Frames go into the board's store-and-forward spool and are published through
the faulty ``Link``; what the link does not acknowledge stays queued, in order, as on a board.
Boards take the coordinator's signed orders (verified against its key) from each order's
``valid_from`` until its ``valid_until`` (an order that arrives early, as the coordinator sends
them ahead of their interval, is held and the running one stays in force, as firmware/orders.py
does) and acknowledge each when it takes effect with a signed Ack of what they applied (clamped to the home's
devices as a board's local limits clamp them: a home without PV answers a PV limit with
"pv_limit_w limited to 0"): a battery follows ``bat_w`` (and reports its state of charge and power in each
reading), an EV's charger caps its current at ``ev_ma`` (``sim.profiles.Ev``: what it holds back is
charged later), and ``pv_limit_w`` caps the home's export at the meter by curtailing its PV. The
homes have no relay-switched loads in the physics: an order's relay bits find no relay fitted.
``physics_as_run`` is the physics with those changes in it (PV curtailed, EV charging moved).

``sent`` records every reading each board signed (sequence -> ts, registers): what the invariant
report compares with the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from dataclasses import dataclass, field

from coordinator.errors import MqttError
from coordinator.service.mqtt import BrokerAddress, Connection
from protocol import crypto, frame, messages, topics
from protocol.errors import ProtocolError
from sim import attacks
from sim.board import VirtualBoard
from sim.faults import Link
from sim.profiles import EV_MIN_MA, STEP_S, Battery, Ev, HomePhysics
from sim.scenario import Home, Scenario

log = logging.getLogger("peergrid.sim")
WINDOW = 200  # publishes in flight at once
EV_MAX_MA = 16_000  # the homes' chargers: 16 A per phase (11 kW on three)


@dataclass
class SentReading:
    ts: int
    e_imp: int
    e_exp: int


@dataclass
class FlexDuty:
    """An accepted flexibility order a home's battery delivers (discharge) in a window."""

    start: int
    end: int
    power_w: int


@dataclass
class VirtualFleet:
    sc: Scenario
    grid: str
    physics: dict[str, HomePhysics]
    coordinator_key: bytes
    link: Link
    boards: dict[str, VirtualBoard] = field(default_factory=dict)  # member -> board
    batteries: dict[str, Battery] = field(default_factory=dict)
    evs: dict[str, Ev] = field(default_factory=dict)
    pv_limits: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # member -> W, from, until
    spool: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)
    sent: dict[str, dict[int, SentReading]] = field(default_factory=dict)  # board -> seq -> reading
    offline_until: dict[str, int] = field(default_factory=dict)
    delivered: int = 0  # reading frames handed to the broker (copies and attacks included)
    attacks: int = 0
    orders_applied: int = 0
    orders_refused: int = 0
    orders_in: Counter[int] = field(default_factory=Counter)  # interval -> orders taken for it
    acks: list[tuple[str, bytes]] = field(default_factory=list)  # signed Acks not yet published
    last_oseq: dict[str, int] = field(default_factory=dict)  # member -> newest order taken
    pending: dict[str, list[messages.Order]] = field(default_factory=dict)  # member -> held until valid_from
    queued: dict[str, set[int]] = field(default_factory=dict)  # none after ``drain``
    power: dict[str, list[int]] = field(default_factory=dict)  # metered net W per step, per member
    battery_w: dict[str, list[int]] = field(default_factory=dict)
    curtailed: dict[str, dict[int, int]] = field(default_factory=dict)  # member -> step -> PV W cut
    ev_held: dict[str, dict[int, int]] = field(default_factory=dict)  # member -> step -> EV W held back
    _conn: Connection | None = None
    _addr: BrokerAddress | None = None
    _orders_task: asyncio.Task[None] | None = None
    _k: int = 0
    _history: list[tuple[str, bytes]] = field(default_factory=list)
    _seq_of: dict[bytes, int] = field(default_factory=dict)  # queued frame -> its sequence number
    newest: dict[str, int] = field(default_factory=dict)  # board -> newest sequence delivered

    def __post_init__(self) -> None:
        for h in self.sc.homes:
            b = VirtualBoard(self.grid, h.board, _seed(self.sc.seed, h), lambda ts: 0, board_type="virtual")
            self.boards[h.member] = b
            self.spool[h.member] = []
            self.sent[b.board] = {}
            self.power[h.member] = []
            if h.battery_mwh:
                self.batteries[h.member] = Battery(h.battery_mwh, h.battery_w)
                b.bat_soc = self.batteries[h.member].soc_permille
                self.battery_w[h.member] = []
            if h.ev:
                self.evs[h.member] = Ev()
        for s in self.sc.faults.skew:
            if s.member in self.boards:
                self.boards[s.member].skew = s.seconds

    @property
    def homes(self) -> dict[str, Home]:
        return {h.member: h for h in self.sc.homes}

    # -- MQTT -------------------------------------------------------------------------------

    async def start(self, addr: BrokerAddress) -> None:
        self._addr = addr
        logging.getLogger("mqtt").setLevel(logging.ERROR)  # many publishes in flight: intended
        await self._connect()
        self._orders_task = asyncio.create_task(self._orders())
        enrols = [b.enrolment(self.sc.start) for b in self.boards.values()]
        await self._publish(enrols)
        for b in self.boards.values():  # the first reading: registers at the start
            self._queue(b, self.sc.start)

    async def _connect(self) -> None:
        assert self._addr is not None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.__aexit__(None, None, None)
            self._conn = None
        for _ in range(100):
            try:
                conn = Connection(self._addr, "sim-boards")
                await conn.__aenter__()
                self._conn = conn
                return
            except MqttError:
                await asyncio.sleep(0.1)
        raise MqttError("the virtual boards cannot reach the broker")

    async def _publish(self, frames: list[tuple[str, bytes]]) -> None:
        """Publish at QoS 1 (at least once): after a broker restart, reconnect and send again."""
        for _ in range(50):
            try:
                if self._conn is None:
                    await self._connect()
                assert self._conn is not None
                conn = self._conn
                for i in range(0, len(frames), WINDOW):
                    batch = asyncio.gather(*(conn.publish(t, f) for t, f in frames[i : i + WINDOW]))
                    await asyncio.wait_for(batch, 10)
                return
            except (MqttError, TimeoutError):
                self._conn = None
                await asyncio.sleep(0.1)
        raise MqttError("the virtual boards could not publish for 5 s")

    async def _orders(self) -> None:
        """Take the coordinator's signed orders: setpoints for an interval."""
        assert self._addr is not None
        verifier = crypto.Verifier(self.coordinator_key)
        by_board = {b.board: m for m, b in self.boards.items()}
        while True:
            try:
                async with Connection(self._addr, "sim-orders", clean_session=False) as conn:
                    await conn.subscribe(topics.board_filter(self.grid, "order"))
                    async for m in conn.messages():
                        ack = self._order(m.topic, m.payload, verifier, by_board)
                        if ack is not None:  # sent with the boards' next publishes
                            self.acks.append(ack)
            except MqttError:
                await asyncio.sleep(0.2)

    def _order(
        self, topic: str, payload: bytes, verifier: crypto.Verifier, by_board: dict[str, str]
    ) -> tuple[str, bytes] | None:
        """Apply a verified order within the home's devices; the board's signed Ack of what it applied."""
        try:
            msg = frame.open_frame(topic, payload, lambda _m: verifier)
        except ProtocolError as e:
            self.orders_refused += 1
            log.warning("order refused on %s: %s", topic, e)
            return None
        if not isinstance(msg, messages.Order) or msg.board not in by_board:
            self.orders_refused += 1
            return None
        self.orders_in[msg.interval] += 1
        m = by_board[msg.board]
        if msg.oseq <= self.last_oseq.get(m, -1):  # a redelivered (retained) order: applied already
            return None
        self.last_oseq[m] = msg.oseq
        now = self.sc.start + self._k * STEP_S
        if now < msg.valid_from:  # early: held until its interval starts, the running one goes on
            self.pending.setdefault(m, []).append(msg)
            return None
        return self._apply(m, msg, now)

    def _due(self, t: int) -> None:
        """Put in force the held orders whose window has opened by ``t`` (the step's start), oldest
        first; their Acks go with the boards' next publishes. One whose window closed before it
        opened is dropped (a board refuses it as stale)."""
        for m, held in self.pending.items():
            while held and held[0].valid_from <= t:
                o = held.pop(0)
                if t >= o.valid_until:
                    self.orders_refused += 1
                    continue
                self.acks.append(self._apply(m, o, t))

    def _apply(self, m: str, msg: messages.Order, now: int) -> tuple[str, bytes]:
        """The order's setpoints in force on member ``m``'s devices; the board's signed Ack."""
        bat_w, ev_ma, pv_w, why = self._limits(m, msg)
        applied = False
        bat = self.batteries.get(m)
        if bat is not None and bat_w is not None:
            bat.setpoint_w = bat_w
            bat.until = msg.valid_until
            applied = True
        ev = self.evs.get(m)
        if ev is not None:
            ev.order(ev_ma, msg.valid_until)
            applied = applied or ev_ma is not None
        if pv_w is None:  # the board's default: no export limit
            self.pv_limits.pop(m, None)
        elif self.homes[m].pv_wp:
            self.pv_limits[m] = (pv_w, msg.valid_from, msg.valid_until)
            applied = True
        if applied:
            self.orders_applied += 1
        ack = messages.Ack(
            board=msg.board,
            oseq=msg.oseq,
            ts=max(now, msg.valid_from),
            status=messages.ST_CLAMPED if why else messages.ST_APPLIED,
            reason=why,
            bat_w=bat_w,
            ev_ma=ev_ma,
            pv_limit_w=pv_w,
            relay_state=0,
        )
        t = topics.board_topic(self.grid, msg.board, "ack")
        return t, frame.seal(ack, t, self.boards[m].key)

    def _limits(self, member: str, o: messages.Order) -> tuple[int | None, int | None, int | None, str]:
        """The order's setpoints within what the home has, as a board's local limits clamp them
        (firmware/orders.py): a battery's power, an EV charger's current (none below 6 A), the PV
        inverter's export (a home without PV can limit none: 0); and why, the first clamp."""
        why = ""
        h = self.homes[member]
        bat = o.bat_w
        if bat is not None:
            b = max(-h.battery_w, min(h.battery_w, bat))
            if b != bat:
                why, bat = f"bat_w limited to {b}", b
        ev = o.ev_ma
        if ev is not None:
            top = EV_MAX_MA if member in self.evs else 0
            e = 0 if ev < EV_MIN_MA else min(ev, top)
            if e != ev:
                why, ev = why or f"ev_ma limited to {e}", e
        pv = o.pv_limit_w
        if pv is not None:
            p = max(0, min(pv, h.pv_wp))
            if p != pv:
                why, pv = why or f"pv_limit_w limited to {p}", p
        if o.relay_mask and not why:  # the homes have no relays fitted
            why = f"relays {o.relay_mask} not fitted"
        return bat, ev, pv, why

    async def stop(self) -> None:
        if self._orders_task is not None:
            self._orders_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, MqttError):
                await self._orders_task
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.__aexit__(None, None, None)
            self._conn = None

    # -- physics and readings -----------------------------------------------------------------

    async def step(self, ts: int) -> None:
        """Meter the step that ends at ``ts``; queue a reading where one is due."""
        k = (ts - self.sc.start) // STEP_S  # physics index of the step's end
        t = ts - STEP_S  # the step's start
        self._due(t)
        for m, b in self.boards.items():
            ph = self.physics[m]
            i = min(k, len(ph.load_w) - 1)
            p = ph.net(i)
            ev = self.evs.get(m)
            if ev is not None:
                w = ev.power(ph.ev_w[i], t, STEP_S)
                if w != ph.ev_w[i]:
                    p += w - ph.ev_w[i]
                    self.ev_held.setdefault(m, {})[i] = ph.ev_w[i] - w
            bat = self.batteries.get(m)
            if bat is not None:
                w = bat.power(t, STEP_S)
                p += w
                b.bat_soc = bat.soc_permille
                b.bat_p = w
                self.battery_w[m].append(w)
            lim = self.pv_limits.get(m)
            if lim is not None and lim[1] <= t < lim[2] and -p > lim[0]:  # the inverter curtails
                cut = min(ph.pv_w[i], -p - lim[0])
                if cut > 0:
                    p += cut
                    self.curtailed.setdefault(m, {})[i] = cut
            self.power[m].append(p)
            if ts % self.sc.reading_s == 0:
                self._queue(b, ts, p)
            else:
                b.advance(ts, p)
        self._k = k

    def _queue(self, b: VirtualBoard, ts: int, p: int | None = None) -> None:
        seq = b.seq
        topic, fr = b.reading(ts, 0 if p is None else p)
        self.sent[b.board][seq] = SentReading(ts + b.skew, b.e_imp, b.e_exp)
        self._seq_of[fr] = seq
        member = b.board[2:]
        self.spool[member].append((topic, fr))

    async def flush(self, now: int) -> None:
        """Publish the boards' order acknowledgements, and every online board's queue through the link."""
        if self.acks:
            acks, self.acks = self.acks, []
            await self._publish(acks)
        out: list[tuple[str, bytes]] = []
        for m, q in self.spool.items():
            if self.offline_until.get(m, 0) > now or not q:
                continue
            deliver, acked = self.link.plan(self.boards[m].board, q)
            del q[:acked]
            out.extend(deliver)
        if out:
            await self._publish(out)
            self._delivered(out)
            self._history.extend(out[-50:])
            del self._history[:-200]

    def _delivered(self, frames: list[tuple[str, bytes]]) -> None:
        self.delivered += len(frames)
        for topic, fr in frames:
            seq = self._seq_of.pop(fr, None)
            if seq is not None:
                board = topic.split("/")[3]
                self.newest[board] = max(seq, self.newest.get(board, -1))

    async def drain(self) -> None:
        """End of the run: everything queued or held back by the network arrives."""
        saved = self.link.f
        self.link.f = type(saved)()  # no more losses while draining
        self.offline_until.clear()
        await self.flush(2**40)
        late = self.link.drain()
        if late:
            await self._publish(late)
            self._delivered(late)
        self.link.f = saved

    # -- faults ---------------------------------------------------------------------------------

    def go_offline(self, member: str, until: int) -> None:
        self.offline_until[member] = until

    async def reboot(self, member: str, ts: int) -> None:
        b = self.boards[member]
        b.reboot()
        await self._publish([b.enrolment(ts, fw="sim")])

    async def attack(self, forged: int, replayed: int, moved: int, ts: int, rng: random.Random) -> None:
        """Frames a coordinator must refuse (``sim.attacks``), published on the boards' connection."""
        boards = {m: attacks.Target(b.board, b.seq, b.e_imp) for m, b in self.boards.items()}
        out = attacks.frames(self.grid, boards, self._history, forged, replayed, moved, ts, rng)
        if out:
            await self._publish(out)
            self.delivered += len(out)
            self.attacks += len(out)

    def registers(self) -> dict[str, tuple[int, int]]:
        """Each board's registers now (mWh): what its meter counted."""
        return {b.board: (b.e_imp, b.e_exp) for b in self.boards.values()}

    def physics_as_run(self) -> dict[str, HomePhysics]:
        """The homes' physics with the orders' effects: PV curtailed, EV charging held back (+) or
        caught up (-)."""
        out = dict(self.physics)
        for m in self.curtailed.keys() | self.ev_held.keys():
            ph = self.physics[m]
            load, pv, ev = list(ph.load_w), list(ph.pv_w), list(ph.ev_w)
            for i, w in self.curtailed.get(m, {}).items():
                pv[i] -= w
            for i, w in self.ev_held.get(m, {}).items():
                load[i] -= w
                ev[i] -= w
            out[m] = HomePhysics(tuple(load), tuple(pv), tuple(ev))
        return out


def _seed(seed: int, h: Home) -> bytes:
    return random.Random(f"{seed}/{h.member}").randbytes(32)
