"""The interval loop: settle each market interval once it is over (plus a delay for late
readings), store the clearing, and broadcast a signed Result to the grid.

Intervals are aligned to the Unix epoch (a 900 s interval starts at :00, :15, :30, :45 UTC). After
a restart the loop catches up: it settles every interval since the last settled one (or since
the first stored reading), oldest first, up to ``MAX_CATCH_UP`` per pass. After a change of the
interval length the next interval is the first one aligned to the new length that starts at or
after the last settled end (energy metered in between counts in it, as a late reading does).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from coordinator.dispatch import Dispatch
from coordinator.ledger import Ledger
from coordinator.market import Clearing, Preferences, Tariff
from coordinator.settlement import digest, settle
from protocol import crypto, frame, messages, topics

log = logging.getLogger("peergrid.interval")
MAX_CATCH_UP = 96


@dataclass
class IntervalLoop:
    ledger: Ledger
    grid: str
    scheme: str
    length: int
    delay: int
    tariff: Tariff
    key: crypto.SigningKey
    now: Callable[[], float]
    publish: Callable[[str, bytes], Awaitable[None]]
    dispatch: Dispatch | None = None  # sends storage boards their orders before each interval
    options: dict[str, Any] = field(default_factory=dict)  # sharing / contracts / wholesale
    dispatched: int = -1

    def prefs(self) -> dict[str, Preferences]:
        out = {}
        for m in self.ledger.members():
            p = m["prefs"]
            out[m["id"]] = Preferences(
                m["id"], feeder=m["feeder"], min_sell=p.get("min_sell"), max_buy=p.get("max_buy")
            )
        return out

    def due(self) -> list[int]:
        """Interval starts that are over (with the delay) and not settled yet, oldest first."""
        row = self.ledger.conn.execute("SELECT max(start + length) FROM intervals").fetchone()
        if row[0] is not None:  # the first aligned start at or after the last settled end
            first = -(-row[0] // self.length) * self.length
        else:
            r = self.ledger.conn.execute("SELECT min(ts) FROM readings").fetchone()
            if r[0] is None:
                return []
            first = r[0] - r[0] % self.length
        last = int(self.now()) - self.delay - self.length  # latest start whose end + delay passed
        out: list[int] = []
        s = first
        while s <= last and len(out) < MAX_CATCH_UP:
            out.append(s)
            s += self.length
        return out

    def result(self, c: Clearing) -> tuple[str, bytes]:
        msg = messages.Result(
            grid=self.grid,
            interval=c.interval,
            length=self.length,
            scheme=c.scheme.replace("_", "-"),
            price=c.price or 0,
            traded=c.traded,
            grid_imp=c.grid_imp,
            grid_exp=c.grid_exp,
            n_trades=c.n_trades,
            digest=digest(c),
        )
        topic = topics.result_topic(self.grid)
        return topic, frame.seal(msg, topic, self.key)

    async def step(self) -> list[Clearing]:
        """Settle what is due; publish each Result (retained). Returns the clearings."""
        done = []
        prefs = self.prefs()
        for start in self.due():
            c = settle(
                self.ledger,
                start,
                self.length,
                self.scheme,
                self.tariff,
                prefs,
                now=int(self.now()),
                seal=lambda c: self.result(c)[1],  # stored with the settlement, in one transaction
                **self.options,
            )
            topic, fr = self.result(c)  # Ed25519 is deterministic: the frame just stored
            await self.publish(topic, fr)
            log.info("interval %d settled: %d mWh local at %s mc/kWh", start, c.traded, c.price)
            done.append(c)
        if self.dispatch is not None:
            now = int(self.now())
            current = now - now % self.length
            if current > self.dispatched:  # the running interval's orders, once
                self.dispatched = current
                await self.dispatch.run(current)  # market, homes, flexibility; then the grid check
        return done

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.step()
            except Exception:  # a bad interval is logged and retried; the service keeps running
                log.exception("settlement failed; retrying in 10 s")
            try:
                await asyncio.wait_for(stop.wait(), timeout=self._sleep())
            except TimeoutError:
                pass

    def _sleep(self) -> float:
        now = self.now()
        nxt = now - now % self.length + self.length + self.delay
        return max(1.0, min(nxt - now, 60.0))
