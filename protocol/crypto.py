"""Ed25519 for both runtimes: ``cryptography`` on CPython, pure code on MicroPython.

key = SigningKey(seed32); key.public; key.sign(data) -> 64 bytes
Verifier(public32).verify(data, sig64)   raises SignatureError; BadKeyError for a bad key
verify(public32, data, sig64)            the same without keeping the parsed key
"""

from protocol.errors import BadKeyError, SignatureError

TYPING = False  # True for mypy only (pyproject: always_true)

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    BACKEND = "cryptography"
except ImportError:  # MicroPython on the board
    BACKEND = "pure"


def _need(value: bytes, n: int, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != n:
        raise BadKeyError("an Ed25519 %s is %d bytes" % (what, n))
    return bytes(value)


if TYPING or BACKEND == "cryptography":

    class SigningKey:
        def __init__(self, seed: bytes) -> None:
            self._key = Ed25519PrivateKey.from_private_bytes(_need(seed, 32, "seed"))
            self.public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

        def sign(self, data: bytes) -> bytes:
            return self._key.sign(bytes(data))

    class Verifier:
        def __init__(self, public: bytes) -> None:
            self.public = _need(public, 32, "public key")
            try:
                self._key = Ed25519PublicKey.from_public_bytes(self.public)
            except ValueError as e:
                raise BadKeyError("not an Ed25519 public key: %s" % e) from None

        def verify(self, data: bytes, sig: bytes) -> None:
            if len(sig) != 64:
                raise SignatureError("a signature is 64 bytes, got %d" % len(sig))
            try:
                self._key.verify(bytes(sig), bytes(data))
            except InvalidSignature:
                raise SignatureError("signature does not verify") from None

else:
    from protocol import ed25519 as _pure

    SigningKey = _pure.SigningKey

    class Verifier:
        def __init__(self, public):
            self.public = _need(public, 32, "public key")

        def verify(self, data, sig):
            _pure.verify(self.public, bytes(data), bytes(sig))


def verify(public: bytes, data: bytes, sig: bytes) -> None:
    Verifier(public).verify(data, sig)
