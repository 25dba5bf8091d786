"""Ed25519 on CPython through ``cryptography`` (the coordinator); never loaded on a board."""

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocol.errors import BadKeyError, SignatureError
from protocol.keybytes import need


class SigningKey:
    def __init__(self, seed: bytes) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(need(seed, 32, "seed"))
        self.public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(bytes(data))


class Verifier:
    def __init__(self, public: bytes) -> None:
        self.public = need(public, 32, "public key")
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
