"""Ed25519 for both runtimes: ``cryptography`` on CPython, pure code on MicroPython.

key = SigningKey(seed32); key.public; key.sign(data) -> 64 bytes
Verifier(public32).verify(data, sig64)   raises SignatureError; BadKeyError for a bad key
verify(public32, data, sig64)            the same without keeping the parsed key

The CPython backend is its own module, never loaded on a board: every identifier a loaded module
names costs heap there.
"""

import sys

from protocol.keybytes import need

TYPING = False  # True for mypy only (pyproject: always_true)

BACKEND = "pure"
if TYPING or sys.implementation.name != "micropython":
    try:
        from protocol._crypto_c import SigningKey as SigningKey
        from protocol._crypto_c import Verifier as Verifier

        BACKEND = "cryptography"
    except ImportError:  # CPython without cryptography
        pass

if not TYPING and BACKEND == "pure":
    from protocol import ed25519 as _pure

    SigningKey = _pure.SigningKey

    class Verifier:
        def __init__(self, public):
            self.public = need(public, 32, "public key")

        def verify(self, data, sig):
            _pure.verify(self.public, bytes(data), bytes(sig))


def verify(public: bytes, data: bytes, sig: bytes) -> None:
    Verifier(public).verify(data, sig)
