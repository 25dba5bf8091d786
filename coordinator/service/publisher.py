"""The coordinator's outbound MQTT: signed Results and orders, retained, on one connection that is
opened on first use and opened again after the broker dropped it.

A publish that fails twice is given up: what it carried is stored in the ledger already (Results
with the settlement, orders with the dispatch), and the next Result is retained in its place; a
board whose order was lost keeps its safe default until the next interval's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from coordinator.errors import MqttError
from coordinator.service.mqtt import BrokerAddress, Connection

log = logging.getLogger("peergrid.publish")
Publish = Callable[[str, bytes], Awaitable[None]]
SEND_TIMEOUT_S = 5.0


class Publisher:
    """``await publisher.publish(topic, payload)``; ``await publisher.close()`` at the end."""

    def __init__(self, broker: BrokerAddress, client_id: str) -> None:
        self.broker = broker
        self.client_id = client_id
        self.failed = 0  # publishes given up (stored in the ledger all the same)
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()  # one connect at a time when many orders go out at once

    async def _connection(self) -> Connection:
        async with self._lock:
            if self._conn is None:
                conn = Connection(self.broker, self.client_id)
                await conn.__aenter__()
                self._conn = conn
            return self._conn

    async def publish(self, topic: str, payload: bytes) -> None:
        for attempt in range(2):
            try:
                conn = await self._connection()
                await asyncio.wait_for(conn.publish(topic, payload, retain=True), SEND_TIMEOUT_S)
                return
            except (MqttError, TimeoutError, OSError) as e:
                log.info("publish on %s failed (%s)%s", topic, e, "; reconnecting" if not attempt else "")
                await self.close()
        self.failed += 1
        log.warning("not published on %s (stored in the ledger; the next one is retained)", topic)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.__aexit__(None, None, None)
