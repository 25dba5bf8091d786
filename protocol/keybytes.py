"""Length check shared by both Ed25519 backends."""

from protocol.errors import BadKeyError


def need(value: bytes, n: int, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != n:
        raise BadKeyError("an Ed25519 %s is %d bytes" % (what, n))
    return bytes(value)
