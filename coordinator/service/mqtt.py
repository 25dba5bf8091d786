"""The one module that talks to aiomqtt. Everything else uses ``Connection``.

QoS 1 throughout (at-least-once; the ledger makes storage idempotent). With ``manual_ack`` a
received message is acknowledged to the broker only when the application calls ``ack`` (after
it has committed the message), so a crash or a lost connection before that makes the broker
redeliver it on the next session (``clean_session=False``). Shared subscriptions
(``$share/<group>/...``) let several ingest processes split the load on Mosquitto.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType

import aiomqtt

from coordinator.errors import MqttError


@dataclass(frozen=True)
class BrokerAddress:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None

    @classmethod
    def parse(cls, text: str) -> BrokerAddress:
        """``host[:port]`` as typed on a command line."""
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "1883")
        try:
            return cls(host=host or "127.0.0.1", port=int(port))
        except ValueError:
            raise MqttError(f"broker address {text!r} is not host[:port]") from None


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    retain: bool = True


@dataclass(frozen=True)
class Inbound:
    topic: str
    payload: bytes
    retain: bool
    mid: int = 0
    qos: int = 0


class Connection:
    """An MQTT session: ``async with Connection(addr, "coordinator") as c: ...``."""

    def __init__(
        self,
        addr: BrokerAddress,
        client_id: str,
        *,
        will: Will | None = None,
        clean_session: bool = True,
        keepalive: int = 30,
        max_queued_incoming: int = 0,
        manual_ack: bool = False,
    ) -> None:
        self._client = aiomqtt.Client(
            addr.host,
            addr.port,
            identifier=client_id,
            username=addr.username,
            password=addr.password,
            tls_context=addr.tls,
            will=aiomqtt.Will(will.topic, will.payload, qos=1, retain=will.retain) if will else None,
            clean_session=clean_session,
            keepalive=keepalive,
            max_queued_incoming_messages=max_queued_incoming or None,
        )
        # concurrent QoS 1 publishes (a dispatch sends up to PUBLISH_WINDOW orders at once) are
        # normal here: aiomqtt's default warns from 10 pending calls on
        self._client.pending_calls_threshold = 1000
        self.manual_ack = manual_ack
        # aiomqtt 2.x does not expose paho's manual acknowledgement; its paho client does
        self._paho = self._client._client
        self._paho.manual_ack_set(manual_ack)

    async def __aenter__(self) -> Connection:
        try:
            await self._client.__aenter__()
        except aiomqtt.MqttError as e:
            raise MqttError(f"cannot connect to the broker: {e}") from e
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._client.__aexit__(exc_type, exc, tb)
        except aiomqtt.MqttError:
            pass  # the session is gone either way

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        try:
            await self._client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttError as e:
            raise MqttError(f"publish to {topic} failed: {e}") from e

    async def subscribe(self, topic_filter: str, *, qos: int = 1) -> None:
        try:
            await self._client.subscribe(topic_filter, qos=qos)
        except aiomqtt.MqttError as e:
            raise MqttError(f"subscribe to {topic_filter} failed: {e}") from e

    def ack(self, msg: Inbound) -> None:
        """Acknowledge a message to the broker (``manual_ack`` sessions; a no-op otherwise)."""
        if self.manual_ack and msg.qos:
            self._paho.ack(msg.mid, msg.qos)

    async def messages(self) -> AsyncIterator[Inbound]:
        try:
            async for m in self._client.messages:
                payload = m.payload if isinstance(m.payload, bytes | bytearray) else b""
                yield Inbound(str(m.topic), bytes(payload), bool(m.retain), m.mid, m.qos)
        except aiomqtt.MqttError as e:
            raise MqttError(f"connection lost: {e}") from e
