"""Signed frames: ``body || signature``, the signature binding the domain, type and topic.

    signed bytes = DOMAIN || type_id (1 byte) || len(topic) (1 byte) || topic || body

The body is the canonical msgpack of the message; the sender signs the exact bytes it sends and
the receiver verifies those bytes before it trusts anything else (never re-serialise). Binding the
topic means a frame cannot be replayed on another board's topic or as another message type.
"""

from protocol import codec, topics
from protocol.errors import DecodeError, OversizeError, SignatureError
from protocol.messages import Message, from_list

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[no-untyped-def]
        return x


# True for mypy only (pyproject: always_true). A const: a board's compiler drops `if TYPING:`
# blocks whole, so the names they import cost no heap there.
TYPING = const(0)
if TYPING:
    from typing import Callable, Protocol

    class Signer(Protocol):
        def sign(self, data: bytes) -> bytes: ...

    class Checker(Protocol):
        def verify(self, data: bytes, sig: bytes) -> None: ...


DOMAIN = b"peergrid/1\x00"
SIG_LEN = 64
MAX_FRAME = 512


def signed_bytes(type_id: int, topic: str, body: "bytes | memoryview") -> bytes:
    t = topic.encode()
    if len(t) > topics.MAX_TOPIC:
        raise OversizeError("topic longer than %d bytes" % topics.MAX_TOPIC)
    return DOMAIN + bytes((type_id, len(t))) + t + bytes(body)


def seal(msg: Message, topic: str, key: "Signer") -> bytes:
    """Frame ``msg`` for ``topic``, signed with ``key`` (a SigningKey)."""
    topics.check(topic, msg)
    body = msg.encode()
    if len(body) + SIG_LEN > MAX_FRAME:
        raise OversizeError("%s body of %d bytes is too large" % (type(msg).__name__, len(body)))
    return body + key.sign(signed_bytes(msg.TYPE, topic, body))


def split(frame: bytes) -> "tuple[memoryview, memoryview]":
    """Return ``(body, sig)``; DecodeError if the frame cannot hold both."""
    n = len(frame)
    if n > MAX_FRAME:
        raise OversizeError("frame of %d bytes exceeds %d" % (n, MAX_FRAME))
    if n <= SIG_LEN:
        raise DecodeError("frame of %d bytes is too short for a signed message" % n)
    mv = memoryview(frame)
    return mv[: n - SIG_LEN], mv[n - SIG_LEN :]


def open_frame(topic: str, frame: bytes, verifier_for: "Callable[[Message], Checker | None]") -> Message:
    """Decode and authenticate a frame received on ``topic``.

    ``verifier_for(msg)`` returns the Verifier of the key that must have signed ``msg`` (the
    board's key for UP messages, the coordinator's for DOWN/BROADCAST); it raises a
    ProtocolError of its own to refuse (e.g. an unknown board). Checks, in order: size, canonical
    body, fields, topic, signature. Returns the message.
    """
    body, sig = split(frame)
    msg = from_list(codec.unpack(bytes(body)))
    topics.check(topic, msg)
    verifier = verifier_for(msg)
    if verifier is None:
        raise SignatureError("no key to verify a %s from %r" % (type(msg).__name__, topic))
    verifier.verify(signed_bytes(msg.TYPE, topic, body), bytes(sig))
    return msg
