# A small MQTT 3.1.1 client for the board, on asyncio streams (MicroPython and CPython).
#
# QoS 0/1 publish (QoS 1 waits for PUBACK), QoS 1 subscribe (a refusal in the SUBACK raises),
# last will, keepalive pings that detect a dead link, TCP_NODELAY (without it every small publish
# waits ~40 ms for a delayed ACK), optional TLS. Every wait is bounded: connect, CONNACK, each
# send, each acknowledgement, each ping's answer.
# No reconnect logic here: a failed session raises MqttError and the link task (app.py) reconnects
# with backoff.
import asyncio
import struct

from errors import FirmwareError

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc,no-untyped-def]
        return x


# True for mypy only (pyproject: always_true). A const: a board's compiler drops `if TYPING:`
# blocks whole, so the names they import cost no heap there.
TYPING = const(0)
if TYPING:
    from typing import Any  # noqa: F401  (used in type comments)

_IPPROTO_TCP = const(6)  # numeric: the unix port's socket module does not name them
_TCP_NODELAY = const(1)

_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)
_UNSUBSCRIBE = const(0xA2)
_UNSUBACK = const(0xB0)
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)
_DISCONNECT = const(0xE0)

_MAX_PACKET = const(2048)  # the board never expects anything larger (an order frame is < 200 bytes)
_SEND_S = const(10)  # a packet not taken by the TCP stack in this time: the link is dead


class MqttError(FirmwareError):
    pass


def _str(buf, s):
    b = s.encode() if isinstance(s, str) else s
    buf.extend(struct.pack("!H", len(b)))
    buf.extend(b)


def _header(kind, length):
    out = bytearray((kind,))
    while True:
        byte = length & 0x7F
        length >>= 7
        out.append(byte | 0x80 if length else byte)
        if not length:
            return out


class MQTTClient:
    def __init__(self, client_id, host, port=1883, user=None, password=None, keepalive=60, ssl=None):
        self.client_id = client_id
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.ssl = ssl
        self.will = None
        self.cb = None
        self._r = None  # type: Any
        self._w = None  # type: Any
        self._pid = 0
        self._acks = {}  # type: dict[int, list[Any]]  # pid -> [asyncio.Event, acknowledged]
        self._lock = asyncio.Lock()
        self.connected = False

    def set_will(self, topic, msg, retain=True, qos=1):
        self.will = (topic, msg, retain, qos)

    def set_callback(self, cb):
        """``cb(topic: str, payload: bytes)``, called for every PUBLISH received."""
        self.cb = cb

    def _next_pid(self):
        self._pid = self._pid % 0xFFFF + 1
        return self._pid

    async def connect(self, clean_session=False, timeout_ms=10000):
        flags = 0x02 if clean_session else 0
        var = bytearray()
        _str(var, "MQTT")
        var.append(4)
        payload = bytearray()
        _str(payload, self.client_id)
        if self.will:
            topic, msg, retain, qos = self.will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            _str(payload, topic)
            _str(payload, msg)
        if self.user is not None:
            flags |= 0x80
            _str(payload, self.user)
            if self.password is not None:
                flags |= 0x40
                _str(payload, self.password)
        var.append(flags)
        var.extend(struct.pack("!H", self.keepalive))
        # each step bounded (TCP connect and TLS handshake, then CONNACK): a broker host that
        # drops packets must not hold the link task (and so the watchdog) for minutes
        try:
            if self.ssl is not None:
                got = asyncio.open_connection(self.host, self.port, ssl=self.ssl)  # type: Any
            else:
                got = asyncio.open_connection(self.host, self.port)
            self._r, self._w = await asyncio.wait_for(got, timeout_ms / 1000)
            sock = getattr(self._w, "s", None) or self._w.get_extra_info("socket")
            try:
                sock.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass  # TLS-wrapped or a port without the option: slower, still correct
            await self._send(_header(_CONNECT, len(var) + len(payload)) + var + payload)
            got = await asyncio.wait_for(self._read_packet(), timeout_ms / 1000)
        except (asyncio.TimeoutError, EOFError):  # neither is an OSError on MicroPython: the
            raise MqttError("connect failed: no CONNACK") from None  # link took them for a bug
        kind, body = got
        if kind != _CONNACK or len(body) != 2:
            raise MqttError("expected CONNACK")
        if body[1] != 0:
            raise MqttError("broker refused connection: code %d" % body[1])
        self.connected = True
        return body[0] & 1  # session present

    async def _send(self, data):
        async with self._lock:
            if self._w is None:  # checked under the lock: close() may run while we wait for it
                raise MqttError("not connected")
            self._w.write(data)
            try:
                await asyncio.wait_for(self._w.drain(), _SEND_S)
            except asyncio.TimeoutError:  # a half-open link with a full send buffer; and a packet
                self.close()  # cut off mid-stream cannot be resumed: end the session
                raise MqttError("send timed out") from None

    async def _read_packet(self):
        hdr = await self._r.readexactly(1)
        if not hdr:
            raise MqttError("connection closed")
        n = 0
        shift = 0
        while True:
            b = (await self._r.readexactly(1))[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MqttError("malformed remaining length")
        if n > _MAX_PACKET:
            if hdr[0] & 0xF0 != _PUBLISH:
                raise MqttError("packet of %d bytes exceeds %d" % (n, _MAX_PACKET))
            # A PUBLISH too large for the board: keep its head (topic, packet id, the start of the
            # payload, which the app then refuses as a bad frame) and skip the rest, so that it is
            # acknowledged. Dropping the connection instead would have the broker redeliver it in
            # the persistent session on every reconnect: the board would never stay connected.
            body = await self._r.readexactly(_MAX_PACKET)
            n -= _MAX_PACKET
            while n:
                n -= len(await self._r.readexactly(min(n, _MAX_PACKET)))
            return hdr[0], body
        body = await self._r.readexactly(n) if n else b""
        return hdr[0], body

    async def publish(self, topic, msg, retain=False, qos=1, timeout_ms=10000):
        t = topic.encode()
        if qos:
            pid = self._next_pid()
            waiter = [asyncio.Event(), False]  # type: list[Any]
            self._acks[pid] = waiter
            head = _header(_PUBLISH | 0x02 | (1 if retain else 0), 2 + len(t) + 2 + len(msg))
            head.extend(struct.pack("!H", len(t)))
            head.extend(t)
            head.extend(struct.pack("!H", pid))
            try:
                await self._send(head + msg)
                await asyncio.wait_for(waiter[0].wait(), timeout_ms / 1000)
            except asyncio.TimeoutError:
                raise MqttError("no PUBACK for %s" % topic) from None
            finally:
                self._acks.pop(pid, None)
            if not waiter[1]:
                raise MqttError("connection lost before PUBACK for %s" % topic)
        else:
            head = _header(_PUBLISH | (1 if retain else 0), 2 + len(t) + len(msg))
            head.extend(struct.pack("!H", len(t)))
            head.extend(t)
            await self._send(head + msg)

    async def subscribe(self, topic, qos=1, timeout_ms=10000):
        pid = self._next_pid()
        waiter = [asyncio.Event(), False]  # type: list[Any]
        self._acks[pid] = waiter
        body = bytearray(struct.pack("!H", pid))
        _str(body, topic)
        body.append(qos)
        try:
            await self._send(_header(_SUBSCRIBE, len(body)) + body)
            await asyncio.wait_for(waiter[0].wait(), timeout_ms / 1000)
        except asyncio.TimeoutError:
            raise MqttError("no SUBACK for %s" % topic) from None
        finally:
            self._acks.pop(pid, None)
        if waiter[1] is None:  # the session goes on without the subscription: fail it instead
            raise MqttError("broker refused the subscription to %s" % topic)
        if not waiter[1]:
            raise MqttError("connection lost before SUBACK for %s" % topic)

    async def unsubscribe(self, topic, timeout_ms=10000):
        pid = self._next_pid()
        waiter = [asyncio.Event(), False]  # type: list[Any]
        self._acks[pid] = waiter
        body = bytearray(struct.pack("!H", pid))
        _str(body, topic)
        try:
            await self._send(_header(_UNSUBSCRIBE, len(body)) + body)
            await asyncio.wait_for(waiter[0].wait(), timeout_ms / 1000)
        except asyncio.TimeoutError:
            raise MqttError("no UNSUBACK for %s" % topic) from None
        finally:
            self._acks.pop(pid, None)
        if not waiter[1]:
            raise MqttError("connection lost before UNSUBACK for %s" % topic)

    async def ping(self):
        """PINGREQ, then wait keepalive / 2 (at most 10 s) for any packet, the PINGRESP or any
        other: the link is alive. Without one it is dead: MqttError, the session ends. A
        half-open TCP link (the broker's host gone, a NAT entry expired) takes writes without
        error for many minutes; before, only a reading's PUBACK timeout showed it."""
        waiter = [asyncio.Event(), False]  # type: list[Any]
        self._acks[0] = waiter  # 0 is never a packet id: run() sets it on any packet
        try:
            await self._send(bytes((_PINGREQ, 0)))
            await asyncio.wait_for(waiter[0].wait(), min(self.keepalive, 20) / 2 or 10)
        except asyncio.TimeoutError:
            pass
        finally:
            self._acks.pop(0, None)
        if not waiter[1]:  # no packet in time, or the connection closed meanwhile
            raise MqttError("no answer to PINGREQ")

    async def run(self):
        """Read packets until the connection fails; dispatch PUBLISH to the callback."""
        try:
            while True:
                kind, body = await self._read_packet()
                waiter = self._acks.get(0)  # a ping waiting: any packet shows the link alive
                if waiter is not None:
                    waiter[1] = True
                    waiter[0].set()
                t = kind & 0xF0
                if t == _PUBLISH:
                    await self._on_publish(kind, body)
                elif t in (_PUBACK, _SUBACK, _UNSUBACK):
                    if len(body) >= 2:
                        waiter = self._acks.get(struct.unpack_from("!H", body)[0])
                        if waiter is not None:
                            # a SUBACK's return code 0x80 (or none) is a refusal: None, not True
                            waiter[1] = True if t != _SUBACK or 2 < len(body) and body[2] < 0x80 else None
                            waiter[0].set()
                elif t == _PINGRESP:
                    pass
                else:
                    raise MqttError("unexpected packet type 0x%02x" % kind)
        except (OSError, EOFError) as e:
            raise MqttError("connection lost: %r" % (e,)) from None
        finally:
            self.connected = False

    async def _on_publish(self, kind, body):
        if len(body) < 2:
            raise MqttError("short PUBLISH")
        tlen = struct.unpack_from("!H", body)[0]
        pos = 2 + tlen
        topic = bytes(body[2:pos]).decode()
        qos = (kind >> 1) & 3
        pid = None
        if qos:
            pid = struct.unpack_from("!H", body, pos)[0]
            pos += 2
        payload = bytes(body[pos:])
        if self.cb is not None:
            self.cb(topic, payload)  # the app validates; a bad payload never raises here
        if qos == 1:
            await self._send(bytes((_PUBACK, 2)) + struct.pack("!H", pid))

    async def disconnect(self):
        try:
            await self._send(bytes((_DISCONNECT, 0)))
        except (OSError, MqttError):
            pass
        self.close()

    def close(self):
        self.connected = False
        if self._w is not None:
            try:
                self._w.close()
                # MicroPython's Stream.close() does nothing (its socket closes in wait_closed()):
                # close the socket itself, or every reconnect leaves a connection open
                s = getattr(self._w, "s", None)
                if s is not None:
                    s.close()
            except OSError:
                pass
        self._w = None
        self._r = None
        for waiter in self._acks.values():
            waiter[0].set()  # wake waiters: not acknowledged, so they raise
