"""The coordinator as the simulator runs it: the real ingest service, interval loop and dispatch on
a SQLite ledger, with the simulated clock, and a kill -9 that a run can inflict on it. With a
``check`` (a scenario with a grid), the dispatch runs the delivery check as ``coordinator run`` does
with ``[delivery] grid``: redispatches stored, compensated and sent in the boards' orders.

``kill()`` cancels the ingest and interval tasks where they stand (no flush, no clean shutdown)
and drops the ledger connection, so an uncommitted batch is lost exactly as a killed process loses
it; ``start()`` then opens the ledger again and resumes the same persistent MQTT session, so the
broker redelivers whatever was not acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coordinator.delivery.dispatch import Dispatch
from coordinator.errors import MqttError
from coordinator.ledger import Ledger
from coordinator.market import Clearing, Sharing, Tariff
from coordinator.service.interval import IntervalLoop
from coordinator.service.mqtt import BrokerAddress, Connection
from coordinator.transaction.ingest_service import IngestService
from protocol import crypto

if TYPE_CHECKING:
    from coordinator.delivery.guard import AssetCheck

log = logging.getLogger("peergrid.sim")


@dataclass
class SimCoordinator:
    path: Path
    grid: str
    broker: BrokerAddress
    scheme: str
    length: int
    delay: int
    tariff: Tariff
    key: crypto.SigningKey
    now: Callable[[], float]
    sharing: Sharing | None = None
    check: AssetCheck | None = None  # the dispatcher's delivery check (sim.gridflow.check)
    ledger: Ledger = field(init=False)
    svc: IngestService | None = None
    loop: IntervalLoop | None = None
    clearings: list[Clearing] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)  # of earlier incarnations
    kills: int = 0
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _pub: Connection | None = None

    def __post_init__(self) -> None:
        self.ledger = Ledger.open(self.path)

    async def _publish(self, topic: str, payload: bytes) -> None:
        for _ in range(2):
            try:
                if self._pub is None:
                    pub = Connection(self.broker, "sim-coordinator-pub")
                    await pub.__aenter__()
                    self._pub = pub
                await asyncio.wait_for(self._pub.publish(topic, payload, retain=True), 5)
                return
            except (MqttError, TimeoutError) as e:
                log.info("coordinator publish failed (%s); reconnecting", e)
                await self._close_pub()
        # stored in the ledger anyway; the next publish goes through when the broker is back

    async def _close_pub(self) -> None:
        if self._pub is not None:
            with contextlib.suppress(Exception):
                await self._pub.__aexit__(None, None, None)
            self._pub = None

    async def start(self) -> None:
        if self.svc is not None:
            raise RuntimeError("the coordinator is running")
        self._stop = asyncio.Event()
        self.svc = IngestService(
            self.ledger, self.grid, self.broker, now=self.now, batch=500, flush_s=0.02,
            client_id="sim-coordinator",
        )  # fmt: skip
        dispatch = Dispatch(
            self.ledger, self.grid, self.length, self.tariff, self.key, self._publish, check=self.check
        )
        self.loop = IntervalLoop(
            self.ledger, self.grid, self.scheme, self.length, self.delay, self.tariff, self.key,
            self.now, self._publish, dispatch, {"sharing": self.sharing} if self.sharing else {},
        )  # fmt: skip
        self._tasks = [asyncio.create_task(self.svc.run(self._stop))]
        await asyncio.sleep(0.05)

    async def settle(self) -> list[Clearing]:
        """Settle what is due now (and send the running interval's orders)."""
        assert self.loop is not None
        done = await self.loop.step()
        self.clearings.extend(done)
        return done

    @property
    def processed(self) -> int:
        """Readings the coordinator has dealt with: stored, or refused with a reason."""
        svc = self.svc
        now = sum(svc.ingest.rejected.values()) if svc is not None else 0
        return self.ledger.count_readings() + sum(self.rejected.values()) + now

    def refused(self) -> Counter[str]:
        out = Counter(self.rejected)
        if self.svc is not None:
            out.update(self.svc.ingest.rejected)
        return out

    async def kill(self) -> None:
        """kill -9: the tasks die where they stand; nothing pending is flushed or acknowledged."""
        self._stop.set()  # should a dying task get to run again, it ends
        for t in self._tasks:
            t.cancel()
        if self._tasks:  # a half-closed MQTT session can hang its goodbye: do not wait for it long
            await asyncio.wait(self._tasks, timeout=2)
        self._tasks = []
        if self.svc is not None:
            self.rejected.update(self.svc.ingest.rejected)
        self.svc = None
        self.loop = None
        self.ledger.conn.rollback()  # an open transaction dies with the process
        self.ledger.close()
        self.ledger = Ledger.open(self.path)
        await self._close_pub()
        self.kills += 1

    async def close(self) -> None:
        self._stop.set()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=10)
            for t in pending:
                t.cancel()
        self._tasks = []
        await self._close_pub()
