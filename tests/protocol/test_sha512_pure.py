"""protocol._sha512_pure (the SHA-512 of MicroPython ports without viper) against hashlib."""

from __future__ import annotations

import hashlib

import pytest

from protocol import _sha512_pure


@pytest.mark.parametrize("n", [0, 1, 55, 111, 112, 113, 127, 128, 129, 239, 240, 255, 256, 1000])
def test_matches_hashlib(n: int) -> None:
    data = bytes((7 * i + 3) & 0xFF for i in range(n))
    assert _sha512_pure.sha512(data) == hashlib.sha512(data).digest()


def test_parts_are_concatenated() -> None:
    data = bytes(range(256)) * 3
    want = hashlib.sha512(data).digest()
    for cut in (0, 1, 64, 127, 128, 300, len(data)):
        assert _sha512_pure.sha512(data[:cut], data[cut:]) == want
    assert _sha512_pure.sha512(data[:5], b"", bytearray(data[5:100]), memoryview(data)[100:]) == want
    assert _sha512_pure.sha512() == hashlib.sha512(b"").digest()


def test_fips_vector() -> None:
    # FIPS 180-4 example "abc"
    assert _sha512_pure.sha512(b"abc").hex() == (
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
    )
