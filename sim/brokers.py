"""The MQTT broker a run talks to, and how a run restarts it (a fault it may inject).

- ``Embedded``: the in-process broker (amqtt, coordinator/service/broker.py), stopped and started again on
  the same port; it keeps no sessions across a restart (what was in flight is resent by the
  at-least-once ends: boards' spools and the coordinator's unacknowledged messages).
- ``External``: a broker someone else runs (``--broker HOST:PORT``); a run cannot restart it.
- ``Mosquitto``: a Mosquitto this process starts (persistence on), restartable.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Protocol

from coordinator.service.broker import EmbeddedBroker
from coordinator.service.mqtt import BrokerAddress
from sim import mosquitto
from sim.errors import SimError


class Broker(Protocol):
    address: BrokerAddress

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def restart(self, down_s: float) -> None: ...


class Embedded:
    def __init__(self) -> None:
        self._b = EmbeddedBroker()
        self.address = self._b.address

    async def start(self) -> None:
        self._b = EmbeddedBroker(self.address.host, self.address.port)
        await self._b.__aenter__()
        # amqtt warns about every acknowledgement it did not expect (it mistracks QoS 1 ids under
        # many publishes in flight); the run's own accounting is what tells whether anything was lost
        logging.getLogger("amqtt").setLevel(logging.ERROR)

    async def stop(self) -> None:
        await self._b.__aexit__(None, None, None)

    async def restart(self, down_s: float) -> None:
        await self.stop()
        await asyncio.sleep(down_s)
        await self.start()


class External:
    def __init__(self, address: BrokerAddress) -> None:
        self.address = address

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def restart(self, down_s: float) -> None:
        raise SimError("a broker given with --broker is not ours to restart; drop broker_restart faults")


class Mosquitto:
    """A Mosquitto this process starts (``sim.mosquitto``), with room queued for a whole run's
    readings and no limit on the messages in flight."""

    def __init__(self, workdir: Path) -> None:
        self._m = mosquitto.Mosquitto(workdir, "max_inflight_messages 0\n", max_queued_messages=1_000_000)
        self.address = self._m.address

    async def start(self) -> None:
        await asyncio.to_thread(self._m.start)

    async def stop(self) -> None:
        await asyncio.to_thread(self._m.stop)

    async def restart(self, down_s: float) -> None:
        await self.stop()
        await asyncio.sleep(down_s)
        await self.start()
