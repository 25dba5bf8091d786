"""A lean MQTT 3.1.1 subscriber for the ingest's receive path.

The general client (``coordinator.service.mqtt.Connection``, aiomqtt on paho) handles one packet per
event-loop wake-up and several small socket reads per message: about as much CPU per reading as
its signature check. Ingest only needs to receive QoS 1 messages on a persistent session and
acknowledge them after its commit, so this client reads the socket in large chunks, parses every
complete packet in the buffer at once, hands the messages over as one batch, and writes all the
PUBACKs of a commit in one go. Everything else (publishing, the market, dispatch) keeps using
``Connection``.

``async with Subscriber(addr, "ingest-1", clean_session=False) as s:``
``await s.subscribe("peergrid/g/b/+/reading")``; ``async for batch in s.batches(): ...``;
``s.ack(m)`` for each message once it is committed. A lost connection raises ``MqttError``; the
broker redelivers what was not acknowledged on the next session.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator
from types import TracebackType

from coordinator.errors import MqttError
from coordinator.service.mqtt import BrokerAddress, Inbound

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
PUBREC = 0x50
PUBREL = 0x60
SUBSCRIBE = 0x82
SUBACK = 0x90
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0

READ_CHUNK = 1 << 16
MAX_PACKET = 1 << 20  # far above any peergrid frame; a longer PUBLISH is passed on cut to this (parse)

_CONNACK_CODES = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


def _string(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _packet(kind: int, body: bytes) -> bytes:
    n = len(body)
    head = bytearray((kind,))
    while True:
        byte = n & 0x7F
        n >>= 7
        head.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(head) + body


def parse(buf: bytearray, out: list[tuple[int, bytes]]) -> int:
    """Split the complete packets at the start of ``buf`` into ``out`` as (first byte, body);
    return how many bytes they took (the rest is an incomplete packet).

    A PUBLISH longer than MAX_PACKET (the broker may pass on up to 256 MB) is not an error: a
    session failing on it would get it redelivered by the broker every time. Its first MAX_PACKET
    bytes (topic, packet id, the start of the payload) are handed on as its body, so the caller
    refuses and acknowledges it, and the rest is skipped: the count returned then runs past the end
    of ``buf`` by the bytes still to come that belong to it."""
    pos = 0
    end = len(buf)
    while end - pos >= 2:
        n = 0
        shift = 0
        k = pos + 1
        while True:
            if k >= end:
                return pos
            byte = buf[k]
            n |= (byte & 0x7F) << shift
            k += 1
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MqttError("malformed remaining length from the broker")
        keep = n
        if n > MAX_PACKET:
            if buf[pos] & 0xF0 != PUBLISH:
                raise MqttError(f"packet of {n} bytes from the broker exceeds {MAX_PACKET}")
            keep = MAX_PACKET
        if end - k < keep:
            return pos
        out.append((buf[pos], bytes(buf[k : k + keep])))
        pos = k + n
    return pos


class Subscriber:
    """One MQTT session that receives QoS 1 messages in batches (see the module docstring)."""

    def __init__(
        self, addr: BrokerAddress, client_id: str, *, clean_session: bool = False, keepalive: int = 30
    ) -> None:
        self.addr = addr
        self.client_id = client_id
        self.clean_session = clean_session
        self.keepalive = keepalive
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversized PUBLISH still to discard
        self._acks = bytearray()
        self._ack_scheduled = False
        self._pid = 0
        self._pinger: asyncio.Task[None] | None = None
        self._pending: list[tuple[int, bytes]] = []  # packets read before batches() started

    async def __aenter__(self) -> Subscriber:
        a = self.addr
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(
                    a.host, a.port, ssl=a.tls, server_hostname=a.host if a.tls else None, limit=READ_CHUNK
                ),
                timeout=10,
            )
        except (OSError, TimeoutError) as e:
            raise MqttError(f"cannot connect to the broker at {a.host}:{a.port}: {e}") from e
        flags = 0x00 if not self.clean_session else 0x02
        payload = _string(self.client_id)
        if a.username is not None:
            flags |= 0x80
            payload += _string(a.username)
            if a.password is not None:
                flags |= 0x40
                payload += _string(a.password)
        var = _string("MQTT") + bytes((4, flags)) + struct.pack("!H", self.keepalive)
        self._send(_packet(CONNECT, var + payload))
        kind, body = await self._one(timeout=10)
        if kind & 0xF0 != CONNACK or len(body) != 2:
            raise MqttError("the broker did not answer CONNECT with CONNACK")
        if body[1]:
            raise MqttError(f"the broker refused the connection: {_CONNACK_CODES.get(body[1], body[1])}")
        if self.keepalive:
            self._pinger = asyncio.create_task(self._ping())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
        w = self._writer
        if w is None:
            return
        try:
            self._write_acks()
            if exc_type is None:
                w.write(bytes((DISCONNECT, 0)))
            w.close()
            await asyncio.wait_for(w.wait_closed(), timeout=2)
        except (OSError, TimeoutError, asyncio.CancelledError):
            pass  # the session is gone either way

    # --- sending ----------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        if self._writer is None or self._writer.is_closing():
            raise MqttError("not connected to the broker")
        self._writer.write(data)

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive / 2)
            try:
                self._send(bytes((PINGREQ, 0)))
            except MqttError:
                return

    async def subscribe(self, topic_filter: str, *, qos: int = 1) -> None:
        self._pid = self._pid % 0xFFFF + 1
        pid = self._pid
        self._send(_packet(SUBSCRIBE, struct.pack("!H", pid) + _string(topic_filter) + bytes((qos,))))
        held: list[tuple[int, bytes]] = []  # messages that arrive meanwhile, in their order
        while True:  # before batches() runs, read here
            kind, body = await self._one(timeout=10)
            if kind & 0xF0 == SUBACK and len(body) >= 3 and struct.unpack_from("!H", body)[0] == pid:
                self._pending[:0] = held
                if body[2] & 0x80:
                    raise MqttError(f"the broker refused the subscription to {topic_filter}")
                return
            held.append((kind, body))

    def ack(self, msg: Inbound) -> None:
        """Acknowledge ``msg`` (after its commit); PUBACKs go out together at the next loop turn."""
        if msg.qos == 1:
            self._acks += bytes((PUBACK, 2)) + struct.pack("!H", msg.mid)
            if not self._ack_scheduled:
                self._ack_scheduled = True
                asyncio.get_running_loop().call_soon(self._write_acks)

    def _write_acks(self) -> None:
        self._ack_scheduled = False
        if self._acks and self._writer is not None and not self._writer.is_closing():
            self._writer.write(bytes(self._acks))
        self._acks.clear()

    # --- receiving --------------------------------------------------------------------------

    async def _read(self, timeout: float | None) -> list[tuple[int, bytes]]:
        if self._reader is None:
            raise MqttError("not connected to the broker")
        out: list[tuple[int, bytes]] = []
        while not out:
            try:
                data = await asyncio.wait_for(self._reader.read(READ_CHUNK), timeout)
            except TimeoutError:
                raise MqttError("the broker went quiet (no packet within the keepalive)") from None
            except OSError as e:
                raise MqttError(f"connection to the broker lost: {e}") from e
            if not data:
                raise MqttError("the broker closed the connection")
            if self._skip:  # the rest of an oversized PUBLISH, already handed on truncated
                cut = min(self._skip, len(data))
                self._skip -= cut
                data = data[cut:]
            buf = self._buf
            if buf:
                buf += data
            else:
                buf = bytearray(data)
            used = parse(buf, out)
            self._skip = max(0, used - len(buf))
            del buf[:used]
            self._buf = buf
        return out

    async def _one(self, timeout: float) -> tuple[int, bytes]:
        if not self._pending:
            self._pending.extend(await self._read(timeout))
        return self._pending.pop(0)

    async def batches(self) -> AsyncIterator[list[Inbound]]:
        """The messages received, one list per socket read (in arrival order)."""
        quiet = self.keepalive * 1.5 if self.keepalive else None
        while True:
            packets = self._pending
            self._pending = []
            if not packets:
                packets = await self._read(quiet)
            batch: list[Inbound] = []
            for kind, body in packets:
                t = kind & 0xF0
                if t == PUBLISH:
                    qos = (kind >> 1) & 3
                    n = struct.unpack_from("!H", body)[0]
                    topic = body[2 : 2 + n].decode("utf-8", "replace")
                    pos = 2 + n
                    mid = 0
                    if qos:
                        mid = struct.unpack_from("!H", body, pos)[0]
                        pos += 2
                    if qos == 2:  # not subscribed at QoS 2; complete the flow so nothing hangs
                        self._send(bytes((PUBREC, 2)) + struct.pack("!H", mid))
                    batch.append(Inbound(topic, body[pos:], bool(kind & 1), mid, qos))
                elif t == PUBREL:
                    self._send(bytes((0x70, 2)) + body[:2])  # PUBCOMP
                elif t not in (PINGRESP, SUBACK, PUBACK):
                    raise MqttError(f"unexpected packet type {t >> 4} from the broker")
            if batch:
                yield batch
