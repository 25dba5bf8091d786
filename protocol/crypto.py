"""Ed25519 for both runtimes: ``cryptography`` on CPython, pure code on MicroPython.

    key = SigningKey(seed32); key.public; key.sign(data) -> 64 bytes
    verify(public32, data, sig64)            raises SignatureError / BadKeyError
    Verifier(public32).verify(data, sig64)   same, with the parsed key cached (coordinator)
"""

from protocol.errors import BadKeyError, SignatureError

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    BACKEND = "cryptography"

    class SigningKey:
        def __init__(self, seed):
            if not isinstance(seed, bytes) or len(seed) != 32:
                raise BadKeyError("an Ed25519 seed is 32 bytes")
            self._key = Ed25519PrivateKey.from_private_bytes(seed)
            self.public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

        def sign(self, data):
            return self._key.sign(bytes(data))

    class Verifier:
        def __init__(self, public):
            if not isinstance(public, bytes) or len(public) != 32:
                raise BadKeyError("an Ed25519 public key is 32 bytes")
            try:
                self._key = Ed25519PublicKey.from_public_bytes(public)
            except ValueError as e:
                raise BadKeyError("not an Ed25519 public key: %s" % e) from None
            self.public = public

        def verify(self, data, sig):
            if len(sig) != 64:
                raise SignatureError("a signature is 64 bytes, got %d" % len(sig))
            try:
                self._key.verify(bytes(sig), bytes(data))
            except InvalidSignature:
                raise SignatureError("signature does not verify") from None

except ImportError:  # MicroPython on the board
    from protocol import ed25519 as _pure

    BACKEND = "pure"
    SigningKey = _pure.SigningKey

    class Verifier:
        def __init__(self, public):
            if not isinstance(public, bytes) or len(public) != 32:
                raise BadKeyError("an Ed25519 public key is 32 bytes")
            self.public = public

        def verify(self, data, sig):
            _pure.verify(self.public, bytes(data), bytes(sig))


def verify(public, data, sig):
    Verifier(public).verify(data, sig)
