"""The coordinator as the simulator runs it: the service that ``coordinator run`` builds
(:func:`coordinator.service.app.build`, from a config made from the scenario), with the simulated
clock driving its interval loop, and a kill -9 that a run can inflict on it. With a ``check`` (a
scenario with a grid), the dispatch runs the delivery check as ``coordinator run`` does with
``[delivery] grid``: redispatches stored, compensated and sent in the boards' orders.

``kill()`` cancels the service's tasks where they stand (no flush, no clean shutdown) and drops
the ledger connection, so an uncommitted batch is lost exactly as a killed process loses it; the
coordinator is then built again from the same config (a restarted process), and ``start()`` resumes
the same persistent MQTT session, so the broker redelivers whatever was not acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from coordinator.config import Config
from coordinator.ledger import Ledger
from coordinator.market import Clearing
from coordinator.service.app import Runtime, Service, build
from protocol import crypto

if TYPE_CHECKING:
    from coordinator.delivery.guard import AssetCheck

log = logging.getLogger("peergrid.sim")
CLIENT_ID = "sim-coordinator"


@dataclass
class SimCoordinator:
    cfg: Config
    key: crypto.SigningKey
    now: Callable[[], float]
    check: AssetCheck | None = None  # the dispatcher's delivery check (sim.gridflow.check)
    service: Service = field(init=False)
    clearings: list[Clearing] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)  # of earlier incarnations
    running: bool = False
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.service = self._build()

    def _build(self) -> Service:
        return build(self.cfg, Runtime(now=self.now, client_id=CLIENT_ID, key=self.key, check=self.check))

    @property
    def ledger(self) -> Ledger:
        return self.service.ledger

    async def start(self) -> None:
        if self.running:
            raise RuntimeError("the coordinator is running")
        self._stop = asyncio.Event()
        self.service.start(self._stop, intervals=False)  # the simulated clock drives settlement
        self.running = True
        await asyncio.sleep(0.05)

    async def settle(self) -> list[Clearing]:
        """Settle what is due now (and send the running interval's orders)."""
        loop = self.service.intervals
        if loop is None:
            raise RuntimeError("the simulated coordinator settles: it is never ingest-only")
        done = await loop.step()
        self.clearings.extend(done)
        return done

    @property
    def processed(self) -> int:
        """Readings the coordinator has dealt with: stored, or refused with a reason."""
        now = sum(self.service.ingest.ingest.rejected.values())
        return self.ledger.count_readings() + sum(self.rejected.values()) + now

    def refused(self) -> Counter[str]:
        out = Counter(self.rejected)
        out.update(self.service.ingest.ingest.rejected)
        return out

    async def kill(self) -> None:
        """kill -9: the tasks die where they stand; nothing pending is flushed or acknowledged.
        The coordinator is built again, as a restarted process is, and waits for ``start()``."""
        self._stop.set()  # should a dying task get to run again, it ends
        tasks = self.service.tasks
        for t in tasks:
            t.cancel()
        if tasks:  # a half-closed MQTT session can hang its goodbye: do not wait for it long
            await asyncio.wait(tasks, timeout=2)
        self.rejected.update(self.service.ingest.ingest.rejected)
        self.ledger.rollback()  # an open transaction dies with the process
        await self.service.close()
        self.service = self._build()
        self.running = False

    async def close(self) -> None:
        """Stop the tasks; the ledger stays open for the run's report."""
        self._stop.set()
        tasks = self.service.tasks
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=10)
            for t in pending:
                t.cancel()
        self.running = False
        if self.service.publisher is not None:
            await self.service.publisher.close()
