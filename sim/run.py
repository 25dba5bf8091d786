"""One simulated run: broker, coordinator and a community of boards, in lockstep on simulated time.

Simulated time advances in physics steps (60 s). At each step every board meters its home; every
``reading_s`` the boards publish their signed readings; one settlement delay after each interval
ends, the coordinator (once it has dealt with every reading delivered so far) settles the interval.
The coordinator's interval loop also steps ``dispatch_lead_s`` before each interval starts (the
clock set to that moment between two physics steps), as ``coordinator run`` wakes: it sends the
boards their orders for the next interval then (and, at its first step, for the running one), and
the boards hold them until the interval starts. Faults fire at their times. With
``speedup`` > 0 simulated time is paced to run that many times faster than real time; with 0 it
runs as fast as the machine goes.

Members' devices and the scenario's flexibility requests go in through the paths the operator's
CLI and API take (coordinator/p2s); the coordinator's own flexibility step clears, delivers,
verifies and pays the requests. At the end the boards' queues drain, the remaining intervals
settle (and with them the requests), and the run returns the clearings, the physics, the bills
and the invariant report (sim/invariants.py). With a grid in the scenario (and ``[delivery]
check`` not off) the coordinator's dispatch runs the delivery check on it (sim/gridflow.py) and
the boards apply its redispatches; the result's ``delivery`` is its record, ``grid`` the metered
flows on the grid.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from coordinator.config import Config
from coordinator.delivery import flexibility
from coordinator.ledger import flex_requests, journal
from coordinator.ledger.queries import sim as ledger_sim
from coordinator.market import DSO, PLATFORM, SUPPLIER, Clearing, Sharing, Tariff
from coordinator.p2s import devices, requests
from coordinator.transaction import billing
from protocol import crypto
from sim import gridflow
from sim.brokers import Broker, Embedded
from sim.coordinator import SimCoordinator
from sim.errors import SimError
from sim.faults import Link, LinkStats
from sim.firmware_fleet import FirmwareFleet
from sim.fleet import SentReading, VirtualFleet
from sim.gridflow import Delivery, GridInterval
from sim.invariants import Invariants, check
from sim.mpy_fleet import MicroPythonFleet
from sim.profiles import STEP_S, HomePhysics, home_physics
from sim.scenario import Scenario

log = logging.getLogger("peergrid.sim")
Fleet = VirtualFleet | FirmwareFleet | MicroPythonFleet
GRID = "sim"
WAIT_S = 15.0  # longest wait for the coordinator to catch up before settling anyway
ORDER_WAIT_S = 2.0  # longest wait for the virtual boards to take an interval's orders (a broker may be down)


@dataclass(frozen=True)
class Bill:
    party: str
    local_mwh: int  # + bought, - sold, with community members
    supplier_mwh: int  # + bought, - sold, with the supplier
    total: int  # nano-cent, + credit, - to pay
    alone: int = 0  # nano-cent it would have paid without the community: its meter at retail / feed-in
    flexibility: int = 0  # nano-cent paid for delivered flexibility
    redispatch: int = 0  # nano-cent paid for redispatches applied
    imbalance: int = 0  # nano-cent of its battery's imbalance


@dataclass(frozen=True)
class FlexResult:
    request: flexibility.FlexRequest
    ordered_w: int
    delivered_mwh: int
    ordered_mwh: int
    paid: int  # nano-cent


@dataclass
class RunResult:
    scenario: Scenario
    clearings: list[Clearing]
    physics: dict[str, HomePhysics]  # as run: PV curtailed and EV charging moved by orders
    power: dict[str, list[int]]  # metered net W per step
    battery_w: dict[str, list[int]]
    bills: list[Bill]
    invariants: Invariants
    link: LinkStats
    flex: list[FlexResult]
    wall_s: float
    readings: int
    orders_applied: int
    sent: dict[str, dict[int, SentReading]] = field(default_factory=dict)  # board -> seq -> reading
    grid: list[GridInterval] = field(default_factory=list)  # line loading and voltages per interval
    delivery: Delivery | None = None  # what the coordinator's delivery check did (None: no check)
    curtailed_mwh: int = 0  # PV the boards curtailed on the coordinator's export limits
    events: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        return self.scenario.duration_s / max(self.wall_s, 1e-9)


def _sharing(sc: Scenario) -> Sharing | None:
    if sc.market.scheme != "self_consumption" or not sc.market.sharing:
        return None
    sh = sc.market.sharing
    return Sharing(keys=sh.get("keys"), community_price=sh.get("community_price"))


async def run(
    sc: Scenario,
    broker: Broker,
    workdir: Path,
    *,
    progress: Callable[[float], None] | None = None,
    start_broker: bool = True,
) -> RunResult:
    if isinstance(broker, Embedded) and (sc.faults.broker_restart or sc.faults.coordinator_kill):
        raise SimError(
            "broker restarts and coordinator kills need Mosquitto (the embedded broker does not keep "
            "sessions across a restart, nor redeliver a resumed session's unacknowledged messages)"
        )
    wall0 = time.monotonic()
    clock = [sc.start]
    paced = [0.0]  # with boards on their own clocks: monotonic time at the scenario's start

    def now() -> float:
        """The coordinator's clock: the run's step, or the boards' paced time if the run lags."""
        if paced[0] and sc.speedup > 0:
            return max(clock[0], sc.start + int((time.monotonic() - paced[0]) * sc.speedup))
        return clock[0]

    tariff = Tariff(sc.market.feed_in, sc.market.retail, sc.market.grid_fee, sc.market.grid_fee_local)
    key = crypto.SigningKey(random.Random(f"{sc.seed}/coordinator").randbytes(32))
    physics = {h.member: home_physics(sc, h) for h in sc.homes}
    link = Link(sc.faults, sc.seed)
    fleet: VirtualFleet | FirmwareFleet | MicroPythonFleet
    if sc.boards == "firmware":
        if sc.faults.loss or sc.faults.duplicate or sc.faults.reorder or sc.faults.offline:
            raise SimError("firmware boards speak MQTT themselves: link faults and offline need virtual ones")
        fleet = FirmwareFleet(sc, GRID, physics, key.public, broker.address, workdir)
    elif sc.boards == "virtual":
        fleet = VirtualFleet(sc, GRID, physics, key.public, link)
    else:
        if sc.faults.loss or sc.faults.duplicate or sc.faults.reorder:
            raise SimError("MicroPython boards speak MQTT themselves: link faults need virtual boards")
        fleet = MicroPythonFleet(sc, GRID, physics, key.public, broker.address, workdir)
    grid = gridflow.load(sc)
    guard = gridflow.check(grid, sc.market.interval_s) if grid is not None and sc.delivery_check else None
    cfg = Config(
        GRID,
        workdir / "ledger.db",
        broker.address,
        flush_ms=20,
        scheme=sc.market.scheme,
        interval_s=sc.market.interval_s,
        settle_delay_s=sc.market.settle_delay_s,
        tariff=(tariff.feed_in, tariff.retail, tariff.grid_fee, tariff.grid_fee_local),
        sharing=_sharing(sc),
        contracts=sc.market.contracts if sc.market.scheme == "bilateral" else None,
        fixed_per_day=sc.market.fixed_per_day,
        fixed_to=sc.market.fixed_to,
        platform_fee=sc.market.platform_fee,
        tou=sc.market.tou,
        zone_fees=sc.market.zone_fees,
        assets=sc.market.assets,
        currency=sc.market.currency,
    )
    coord = SimCoordinator(cfg, key, now, check=guard)
    _register(coord, sc, fleet)
    events: list[str] = []
    if start_broker:
        await broker.start()
    try:
        await coord.start()
        pace0 = time.monotonic()
        await fleet.start(broker.address)
        if isinstance(fleet, MicroPythonFleet):
            pace0 = paced[0] = fleet.pace_origin  # the boards' clocks count from their common epoch
        posted = _flex_requests(sc, coord)
        length, delay, lead = sc.market.interval_s, sc.market.settle_delay_s, cfg.dispatch_lead_s
        fired: set[tuple[str, int]] = set()
        rng = random.Random(sc.seed ^ 0xA77AC)
        attack_at = sc.start + sc.duration_s // 2
        attack_at -= attack_at % sc.reading_s
        total_steps = sc.duration_s // STEP_S
        for n in range(1, total_steps + 1):
            ts = sc.start + n * STEP_S
            dispatch_at = ts + lead - (ts + lead) % length - lead  # the latest dispatch time at or before ts
            if dispatch_at > ts - STEP_S:  # the next interval's orders go out before this step ends
                clock[0] = dispatch_at
                await _caught_up(coord, fleet)
                await coord.settle()
                if isinstance(fleet, VirtualFleet):
                    await _orders_taken(coord, fleet, dispatch_at + lead)
            clock[0] = ts
            await _board_faults(sc, ts, fleet, fired, events)
            await fleet.step(ts)
            if ts % sc.reading_s == 0:
                await fleet.flush(ts)
                f = sc.faults
                if ts == attack_at and (f.forged or f.replayed or f.moved):
                    await fleet.attack(f.forged, f.replayed, f.moved, ts, rng)
                    events.append(
                        f"+{(ts - sc.start) / 3600:5.2f} h  {f.forged} forged, {f.replayed} replayed and "
                        f"{f.moved} moved frames sent"
                    )
            await _service_faults(sc, ts, coord, broker, fired, events)
            if (ts - delay) % length == 0 and ts - delay > sc.start:
                await _caught_up(coord, fleet)
                await coord.settle()
                if isinstance(fleet, VirtualFleet):
                    await _orders_taken(coord, fleet, ts - ts % length)
            if sc.speedup > 0:
                ahead = pace0 + (ts - sc.start) / sc.speedup - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if progress is not None and n % 15 == 0:
                progress(n / total_steps)
        await fleet.drain()
        await _caught_up(coord, fleet)
        clock[0] = sc.end + delay + (-sc.end) % length
        paced[0] = 0.0
        await coord.settle()
        flex_results = _flex_results(coord, posted, length)
        if progress is not None:
            progress(1.0)
    finally:
        await fleet.stop()
        await coord.close()
        if start_broker:
            await broker.stop()
    inv = check(coord.ledger, GRID, fleet.sent, fleet.registers(), coord.refused(), fleet.queued)
    bills = _bills(coord, sc, cfg)
    as_run = fleet.physics_as_run()
    curtailed = sum(sum(physics[m].pv_w) - sum(ph.pv_w) for m, ph in as_run.items()) * STEP_S * 1000 // 3600
    result = RunResult(
        scenario=sc,
        clearings=sorted(coord.clearings, key=lambda c: c.interval),
        physics=as_run,
        power=fleet.power,
        battery_w=fleet.battery_w,
        bills=bills,
        invariants=inv,
        link=link.stats,
        flex=flex_results,
        wall_s=time.monotonic() - wall0,
        readings=coord.ledger.count_readings(),
        orders_applied=fleet.orders_applied,
        sent=fleet.sent,
        grid=gridflow.flows(sc, fleet.power, grid),
        delivery=None if guard is None else gridflow.delivery(coord.ledger, sc.start, sc.end),
        curtailed_mwh=curtailed,
        events=events,
    )
    coord.ledger.close()
    return result


async def _board_faults(
    sc: Scenario, ts: int, fleet: Fleet, fired: set[tuple[str, int]], events: list[str]
) -> None:
    """Boards going offline or rebooting at ``ts`` (each fault once)."""
    for o in sc.faults.offline:
        if ("off", o.at) not in fired and ts - sc.start >= o.at and o.member in fleet.boards:
            fired.add(("off", o.at))
            fleet.go_offline(o.member, sc.start + o.at + o.seconds)
            events.append(f"+{o.at / 3600:5.2f} h  board of {o.member} offline for {o.seconds // 60} min")
    for r in sc.faults.reboot:
        if ("reboot", r.at) not in fired and ts - sc.start >= r.at and r.member in fleet.boards:
            fired.add(("reboot", r.at))
            await fleet.reboot(r.member, ts)
            events.append(f"+{r.at / 3600:5.2f} h  board of {r.member} rebooted")


async def _service_faults(
    sc: Scenario,
    ts: int,
    coord: SimCoordinator,
    broker: Broker,
    fired: set[tuple[str, int]],
    events: list[str],
) -> None:
    """The coordinator killed (-9) and restarted, the broker restarted, at ``ts`` (each once)."""
    for at in sc.faults.coordinator_kill:
        if ("kill", at) not in fired and ts - sc.start >= at:
            fired.add(("kill", at))
            await coord.kill()
            await coord.start()
            events.append(f"+{at / 3600:5.2f} h  coordinator killed (-9) and restarted")
    for at in sc.faults.broker_restart:
        if ("broker", at) not in fired and ts - sc.start >= at:
            fired.add(("broker", at))
            await broker.restart(sc.faults.broker_down_s)
            events.append(f"+{at / 3600:5.2f} h  broker restarted ({sc.faults.broker_down_s:g} s down)")


def _register(coord: SimCoordinator, sc: Scenario, fleet: Fleet) -> None:
    """Members and boards into the registry; each member's devices and price limits through the
    path the operator's CLI and API take (:func:`coordinator.p2s.devices.change`), in force from
    the first interval."""
    length = sc.market.interval_s
    for h in sc.homes:
        role = "storage" if h.battery_mwh and not h.annual_kwh else ("prosumer" if h.pv_wp else "consumer")
        coord.ledger.add_member(h.member, h.name, role, now=sc.start, feeder=h.feeder)
        b = fleet.boards[h.member]
        coord.ledger.add_board(
            b.board, b.board_type, b.key.public, now=sc.start, member_id=h.member, status="active"
        )
        prefs: dict[str, object] = {"min_sell": h.min_sell, "max_buy": h.max_buy}
        if h.battery_mwh:
            prefs["storage"] = {
                "capacity_mwh": h.battery_mwh,
                "max_charge_w": h.battery_w,
                "max_discharge_w": h.battery_w,
                "min_soc": 50,
            }
            prefs["flex"] = {"battery": 12_000}  # what it asks per kWh of flexibility
        if h.integrator:  # its battery and EV follow its own plan
            prefs["integrator"] = {}
            if h.ev:
                prefs["ev"] = {"max_charge_w": 11_000, "phases": 3, "need_mwh": 10_000_000, "arrive": "17:00"}
        given = {k: v for k, v in prefs.items() if v is not None}
        if given:
            devices.change(coord.ledger, h.member, given, by="sim:operator", now=sc.start - 1, length=length)


async def _caught_up(coord: SimCoordinator, fleet: Fleet) -> None:
    """Wait until the coordinator has dealt with every reading delivered so far: as many stored or
    refused as were delivered, and each board's newest delivered reading stored."""
    deadline = time.monotonic() + WAIT_S
    while coord.processed < fleet.delivered and time.monotonic() < deadline:
        await asyncio.sleep(0.002)
    while time.monotonic() < deadline:
        last = coord.ledger.last_readings()
        behind = [b for b, s in fleet.newest.items() if b not in last or last[b].seq < s]
        if not behind:
            return
        await asyncio.sleep(0.01)
    log.warning("coordinator behind: %d of %d readings dealt with", coord.processed, fleet.delivered)


async def _orders_taken(coord: SimCoordinator, fleet: VirtualFleet, interval: int) -> None:
    """Wait until the virtual boards have taken every order the coordinator sent for ``interval``
    (boards get an order milliseconds after it is published: without the wait, the run's next steps
    could meter minutes of the interval before the boards' order task had run)."""
    want = ledger_sim.orders_sent(coord.ledger, interval)
    deadline = time.monotonic() + ORDER_WAIT_S
    while fleet.orders_in[interval] < want and time.monotonic() < deadline:
        await asyncio.sleep(0.002)


def _flex_requests(sc: Scenario, coord: SimCoordinator) -> list[str]:
    """Post each flexibility request of the scenario as the grid operator does (the operator API's
    path, :func:`coordinator.p2s.requests.post`); the coordinator's flexibility step clears it
    against the members' devices, sends the setpoints, verifies and pays it. Returns the ids
    posted (a request whose window or baseline the run does not cover is left out)."""
    out = []
    length = sc.market.interval_s
    for i, f in enumerate(sc.flex):
        start = sc.start + f.start_s
        start -= start % length
        n = f.hours * 3600 // length
        if start - flexibility.BASELINE_INTERVALS * length < sc.start or start + n * length > sc.end:
            continue  # the run does not cover the request and its baseline
        body = {
            "id": f"req{i + 1}",
            "congestion_point": f.congestion_point,
            "direction": f.direction,
            "power_w": f.power_w,
            "start": start,
            "intervals": n,
            "price_cap": f.price_cap,
        }
        r = requests.post(coord.ledger, body, grid=GRID, now=sc.start, length=length, source="sim:operator")
        out.append(r.request_id)
    return out


def _flex_results(coord: SimCoordinator, posted: list[str], length: int) -> list[FlexResult]:
    """What became of each posted request, as the coordinator recorded it."""
    out = []
    for rid in posted:
        r = flex_requests.request(coord.ledger, rid)
        assert r is not None
        req = flexibility.FlexRequest(
            r.request_id, r.congestion_point, r.start, r.intervals, r.direction, r.power_w, r.price_cap
        )
        if r.state != "settled":
            log.warning("flexibility request %s %s: %s", rid, r.state, r.note)
        per = r.ordered_w * length * 10 // 36 * r.intervals
        out.append(FlexResult(req, r.ordered_w, r.delivered_mwh or 0, per, r.paid or 0))
    return out


def _bills(coord: SimCoordinator, sc: Scenario, cfg: Config) -> list[Bill]:
    """Each party's bill for the run (charges pending: the run issues no invoice), and what each
    member would have paid without the community: its metered import at retail and export at the
    feed-in tariff of each interval (time of use included)."""
    from coordinator.service.app import site_of, terms_of

    out = []
    end = sc.end + sc.market.interval_s
    terms = terms_of(cfg)
    site = site_of(cfg)
    alone: dict[str, int] = {}
    for t, party, e_imp, e_exp in ledger_sim.deliveries_between(coord.ledger, sc.start, end):
        tf = site.tariff_at(t)
        alone[party] = alone.get(party, 0) - e_imp * tf.retail + e_exp * tf.feed_in
    for p in [h.member for h in sc.homes] + [SUPPLIER, DSO, PLATFORM]:
        st = billing.statement(coord.ledger, p, sc.start, end, terms=terms)
        e = {x.account: x.energy for x in st.lines}
        m = {x.account: x.amount for x in st.lines}
        local = e.get(journal.ENERGY_BOUGHT_LOCAL, 0) + e.get(journal.ENERGY_SOLD_LOCAL, 0)
        grid = (journal.SUPPLIER_KIND, journal.IMBALANCE_KIND)
        sup = sum(e.get(journal.bought(k), 0) + e.get(journal.sold(k), 0) for k in grid)
        imb = m.get(journal.ENERGY_BOUGHT_IMBALANCE, 0) + m.get(journal.ENERGY_SOLD_IMBALANCE, 0)
        fixed = sum(m.get(a, 0) for a in (journal.FIXED, journal.SUBSCRIPTION))
        out.append(
            Bill(
                p, local, sup, st.total, alone.get(p, 0) + fixed, m.get(journal.FLEXIBILITY, 0),
                m.get(journal.REDISPATCH_COMPENSATION, 0), imb,
            )
        )  # fmt: skip
    return out
