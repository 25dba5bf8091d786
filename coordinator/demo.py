"""``peergrid demo``: a small community end to end on the embedded broker (or a given Mosquitto).

Four homes with virtual meter boards enrol their keys and publish signed cumulative readings over
MQTT; the coordinator verifies every frame and stores it in a SQLite ledger (a temporary one),
refuses three bad frames (forged, replayed, moved to another board's topic), clears each
15-minute interval with the Quartierstrom-style pairwise double auction on measured energy,
settles it double-entry, and prints the intervals and each member's bill.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from coordinator import billing
from coordinator.broker import EmbeddedBroker
from coordinator.ingest_service import IngestService
from coordinator.ledger import Ledger
from coordinator.ledger.verify import verify
from coordinator.market import DSO, SUPPLIER, Preferences, Tariff
from coordinator.mqtt import BrokerAddress, Connection
from coordinator.settlement import settle
from protocol import topics
from sim.board import VirtualBoard

GRID = "demo"
INTERVAL = 900
TARIFF = Tariff(feed_in=4_000, retail=20_750, grid_fee=6_000, grid_fee_local=3_000)  # Rp/kWh x 1000


def pv(kwp: float) -> Callable[[int], float]:
    """Clear-sky-like PV output (W) of a ``kwp`` roof at a Unix second (UTC, central Europe)."""

    def p(ts: int) -> float:
        hour = (ts % 86_400) / 3600
        return max(0.0, 1000 * kwp * math.sin(math.pi * (hour - 5.5) / 12)) if 5.5 <= hour <= 17.5 else 0.0

    return p


def load(base: int, swing: int, seed: int) -> Callable[[int], float]:
    def p(ts: int) -> float:
        return base + swing * math.sin(ts / 1700 + seed) ** 2 + (ts * 7919 + seed) % 97

    return p


@dataclass
class Home:
    member: str
    name: str
    feeder: str
    pv: Callable[[int], float]
    load: Callable[[int], float]
    prefs: Preferences = field(init=False)

    def __post_init__(self) -> None:
        self.prefs = Preferences(self.member, feeder=self.feeder)

    def net(self, ts: int) -> int:
        return int(self.load(ts) - self.pv(ts))


HOMES = [
    Home("alice", "Alice (6 kWp roof)", "f1", pv(6.0), load(400, 300, 1)),
    Home("bob", "Bob (3 kWp roof)", "f1", pv(3.0), load(500, 400, 2)),
    Home("carol", "Carol (bakery)", "f1", pv(0.0), load(2500, 1200, 3)),
    Home("dave", "Dave (flat)", "f2", pv(0.0), load(600, 500, 4)),
]


@dataclass
class DemoResult:
    accepted: int
    expected: int
    rejected: dict[str, int]
    expected_rejections: dict[str, int]
    intervals: int
    money_sum: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return (
            self.accepted == self.expected
            and self.rejected == self.expected_rejections
            and self.money_sum == 0
            and not self.problems
            and self.intervals > 0
        )


@contextlib.asynccontextmanager
async def _broker(addr: BrokerAddress | None) -> AsyncIterator[BrokerAddress]:
    if addr is not None:
        yield addr
        return
    async with EmbeddedBroker() as embedded:
        yield embedded


def _kwh(mwh: int) -> str:
    return f"{mwh / 1e6:7.3f} kWh"


async def run(
    *,
    broker: BrokerAddress | None = None,
    hours: int = 2,
    step_s: int = 60,
    out: TextIO = sys.stdout,
) -> DemoResult:
    now = int(time.time())
    start = now - now % 86_400 - 86_400 + 10 * 3600  # yesterday 10:00 UTC: sun on the roofs
    end = start + hours * 3600
    boards = {
        h.member: VirtualBoard(GRID, f"m-{h.member}", bytes([i + 1]) * 32, h.net, board_type="virtual")
        for i, h in enumerate(HOMES)
    }
    with tempfile.TemporaryDirectory(prefix="peergrid-demo-") as tmp:
        ledger = Ledger.open(Path(tmp) / "ledger.db")
        for h in HOMES:
            ledger.add_member(h.member, h.name, "prosumer", now=start, feeder=h.feeder)
            b = boards[h.member]
            ledger.add_board(
                b.board, b.board_type, b.key.public, now=start, member_id=h.member, status="active"
            )
        async with _broker(broker) as addr:
            where = "embedded broker" if broker is None else "broker"
            print(
                f"peergrid demo: {where} at {addr.host}:{addr.port}, grid {GRID!r}, {len(HOMES)} homes, "
                f"{hours} h of readings every {step_s} s from "
                f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(start))} UTC",
                file=out,
            )
            for h in HOMES:
                print(
                    f"enrolled  {boards[h.member].board:<9} {h.name:<20} key "
                    f"{boards[h.member].key.public.hex()[:16]}...",
                    file=out,
                )
            svc = IngestService(ledger, GRID, addr, batch=200, flush_s=0.05, client_id="peergrid-demo")
            stop = asyncio.Event()
            task = asyncio.create_task(svc.run(stop))
            await asyncio.sleep(0.3)
            frames = [b.reading(t) for t in range(start, end + 1, step_s) for b in boards.values()]
            expected = len(frames)
            async with Connection(addr, "demo-boards") as conn:
                for topic, fr in frames:
                    await conn.publish(topic, fr)
                # three frames a coordinator must refuse
                forger = VirtualBoard(GRID, "m-alice", bytes(32), HOMES[0].net)
                forger.seq = boards["alice"].seq
                await conn.publish(*forger.reading(end))  # signed with a key that is not alice's
                await conn.publish(*frames[4])  # replay of an accepted reading
                await conn.publish(topics.board_topic(GRID, "m-bob", "reading"), frames[-1][1])  # wrong topic
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (
                ledger.count_readings() < expected or sum(svc.ingest.rejected.values()) < 3
            ):
                await asyncio.sleep(0.05)
            stop.set()
            await task
        refused = ", ".join(f"{n} {c}" for c, n in sorted(svc.ingest.rejected.items()))
        print(
            f"ingest    {ledger.count_readings()} of {expected} signed readings verified and stored; "
            f"refused: {refused}",
            file=out,
        )
        prefs = {h.member: h.prefs for h in HOMES}
        n = 0
        for s in range(start, end, INTERVAL):
            c = settle(ledger, s, INTERVAL, "pairwise", TARIFF, prefs, now=end)
            n += 1
            price = f"{c.price / 1000:6.2f} Rp/kWh" if c.price is not None else "     -       "
            print(
                f"interval  {time.strftime('%H:%M', time.gmtime(s))}  local {_kwh(c.traded)} at {price}"
                f"   from grid {_kwh(c.grid_imp)}   to grid {_kwh(c.grid_exp)}   ({c.n_trades} trades)",
                file=out,
            )
        print(
            f"bills     {hours} h: energy bought (+) / sold (-) locally and with the supplier; "
            "CHF (+ credit, - to pay)",
            file=out,
        )
        total = 0
        for p in [h.member for h in HOMES] + [SUPPLIER, DSO]:
            st = billing.statement(ledger, p, start, end)
            total += st.total
            e = {x.account: x.energy for x in st.lines}
            local = e.get("energy_bought_local", 0) + e.get("energy_sold_local", 0)
            grid = e.get("energy_bought_supplier", 0) + e.get("energy_sold_supplier", 0)
            shown = (
                f"local {local / 1e6:+7.3f} kWh  supplier {grid / 1e6:+7.3f} kWh"
                if p not in (SUPPLIER, DSO)
                else ""
            )
            print(f"  {p:<9} {shown:<44} total {billing.cents(st.total) / 100:+8.2f}", file=out)
        rep = verify(ledger, GRID)
        ledger.close()
    result = DemoResult(
        accepted=svc.stored,
        expected=expected,
        rejected=dict(svc.ingest.rejected),
        expected_rejections={"bad_signature": 1, "replay": 1, "wrong_topic": 1},
        intervals=n,
        money_sum=total,
        problems=rep.problems,
    )
    verdict = "OK" if result.ok else "UNEXPECTED"
    print(
        f"summary   {verdict}: {result.accepted}/{expected} readings stored once, {n} intervals settled, "
        f"money sums to {total} across members, supplier and grid operator; "
        f"ledger verify: {len(rep.problems)} problems",
        file=out,
    )
    return result
