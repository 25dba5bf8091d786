"""The embedded MQTT broker (amqtt, in-process) for the demo and a quick start.

Production runs Mosquitto; the embedded broker needs nothing installed beyond the Python deps.
"""

from __future__ import annotations

import logging
import socket
from types import TracebackType
from typing import Any

from coordinator.errors import BrokerError
from coordinator.service.mqtt import BrokerAddress


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedBroker:
    """``async with EmbeddedBroker() as addr:`` runs an anonymous broker on loopback."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.address = BrokerAddress(host=host, port=port or free_port(host))
        self._broker: Any = None

    async def __aenter__(self) -> BrokerAddress:
        from amqtt.broker import Broker  # imported here: amqtt is heavy and only the demo needs it

        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.address.host}:{self.address.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        try:
            self._broker = Broker(config)
            await self._broker.start()
        except Exception as e:  # amqtt raises several unrelated types on bind/config problems
            raise BrokerError(f"embedded broker failed to start on {self.address.port}: {e}") from e
        return self.address

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
