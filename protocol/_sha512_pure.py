"""SHA-512 (FIPS 180-4) in plain Python, for MicroPython ports with neither a ``hashlib`` sha512
nor a native emitter for ``protocol._sha512_viper`` (the WebAssembly port the 32-bit heap tests
run on). A board never loads it: ``protocol.sha512`` imports it only when the viper module
cannot be imported.

64-bit words are Python ints kept below 2**64 by masking. On a 32-bit MicroPython each of them
is a heap-allocated big integer, so a 128-byte block allocates some 90 KB of short-lived
objects (the collector reclaims them; the viper version allocates nothing). Not constant-time.
"""

from binascii import unhexlify

_M = 0xFFFFFFFFFFFFFFFF

# Round constants and initial value, big-endian 64-bit words (FIPS 180-4, 4.2.3 and 5.3.5).
_K = unhexlify(
    "428a2f98d728ae227137449123ef65cdb5c0fbcfec4d3b2fe9b5dba58189dbbc"
    "3956c25bf348b53859f111f1b605d019923f82a4af194f9bab1c5ed5da6d8118"
    "d807aa98a303024212835b0145706fbe243185be4ee4b28c550c7dc3d5ffb4e2"
    "72be5d74f27b896f80deb1fe3b1696b19bdc06a725c71235c19bf174cf692694"
    "e49b69c19ef14ad2efbe4786384f25e30fc19dc68b8cd5b5240ca1cc77ac9c65"
    "2de92c6f592b02754a7484aa6ea6e4835cb0a9dcbd41fbd476f988da831153b5"
    "983e5152ee66dfaba831c66d2db43210b00327c898fb213fbf597fc7beef0ee4"
    "c6e00bf33da88fc2d5a79147930aa72506ca6351e003826f142929670a0e6e70"
    "27b70a8546d22ffc2e1b21385c26c9264d2c6dfc5ac42aed53380d139d95b3df"
    "650a73548baf63de766a0abb3c77b2a881c2c92e47edaee692722c851482353b"
    "a2bfe8a14cf10364a81a664bbc423001c24b8b70d0f89791c76c51a30654be30"
    "d192e819d6ef5218d69906245565a910f40e35855771202a106aa07032bbd1b8"
    "19a4c116b8d2d0c81e376c085141ab532748774cdf8eeb9934b0bcb5e19b48a8"
    "391c0cb3c5c95a634ed8aa4ae3418acb5b9cca4f7763e373682e6ff3d6b2b8a3"
    "748f82ee5defb2fc78a5636f43172f6084c87814a1f0ab728cc702081a6439ec"
    "90befffa23631e28a4506cebde82bde9bef9a3f7b2c67915c67178f2e372532b"
    "ca273eceea26619cd186b8c721c0c207eada7dd6cde0eb1ef57d4f7fee6ed178"
    "06f067aa72176fba0a637dc5a2c898a6113f9804bef90dae1b710b35131c471b"
    "28db77f523047d8432caab7b40c724933c9ebe0a15c9bebc431d67c49c100d4c"
    "4cc5d4becb3e42b6597f299cfc657e2a5fcb6fab3ad6faec6c44198c4a475817"
)
_IV = unhexlify(
    "6a09e667f3bcc908bb67ae8584caa73b3c6ef372fe94f82ba54ff53a5f1d36f1"
    "510e527fade682d19b05688c2b3e6c1f1f83d9abfb41bd6b5be0cd19137e2179"
)


def _word(b: bytes, i: int) -> int:
    return int.from_bytes(b[8 * i : 8 * i + 8], "big")


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (64 - n))) & _M


def _compress(h: list[int], w: list[int], blk: bytes) -> None:
    """Fold the 128-byte block ``blk`` into the state ``h``; ``w`` is an 80-word scratch list."""
    for t in range(16):
        w[t] = _word(blk, t)
    for t in range(16, 80):
        x = w[t - 15]
        y = w[t - 2]
        s0 = _rotr(x, 1) ^ _rotr(x, 8) ^ (x >> 7)
        s1 = _rotr(y, 19) ^ _rotr(y, 61) ^ (y >> 6)
        w[t] = (w[t - 16] + s0 + w[t - 7] + s1) & _M
    a, b, c, d, e, f, g, hh = h
    for t in range(80):
        s1 = _rotr(e, 14) ^ _rotr(e, 18) ^ _rotr(e, 41)
        t1 = (hh + s1 + (g ^ (e & (f ^ g))) + _word(_K, t) + w[t]) & _M
        s0 = _rotr(a, 28) ^ _rotr(a, 34) ^ _rotr(a, 39)
        t2 = (s0 + ((a & b) | (c & (a | b)))) & _M
        hh = g
        g = f
        f = e
        e = (d + t1) & _M
        d = c
        c = b
        b = a
        a = (t1 + t2) & _M
    h[0] = (h[0] + a) & _M
    h[1] = (h[1] + b) & _M
    h[2] = (h[2] + c) & _M
    h[3] = (h[3] + d) & _M
    h[4] = (h[4] + e) & _M
    h[5] = (h[5] + f) & _M
    h[6] = (h[6] + g) & _M
    h[7] = (h[7] + hh) & _M


def sha512(*parts: bytes) -> bytes:
    """SHA-512 digest (64 bytes) of the concatenation of ``parts`` (bytes-like objects)."""
    data = b"".join(parts)
    n = len(data)
    # padding: 0x80, zeros to 112 mod 128, the length in bits as a 128-bit big-endian number
    data += b"\x80" + bytes((111 - n) % 128) + (n << 3).to_bytes(16, "big")
    h = [0] * 8
    for i in range(8):
        h[i] = _word(_IV, i)
    w = [0] * 80
    for off in range(0, len(data), 128):
        _compress(h, w, data[off : off + 128])
    out = bytearray(64)
    for i in range(8):
        out[8 * i : 8 * i + 8] = h[i].to_bytes(8, "big")
    return bytes(out)
