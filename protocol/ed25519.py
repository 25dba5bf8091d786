"""Ed25519 signatures (RFC 8032, pure Ed25519) in plain Python, for CPython and MicroPython.

    key = SigningKey(seed32); key.public; key.sign(msg) -> 64 bytes
    public_key(seed32) -> 32 bytes
    verify(public32, msg, sig64) -> None, or raises SignatureError / BadKeyError

Field elements are ints mod p = 2^255 - 19, points are extended coordinates (X:Y:Z:T).
[r]B for signing uses a signed-digit fixed-base comb: 4 tables of 32 affine points stored as
(y+x, y-x, 2dxy), 6 teeth per table, teeth 11 bits apart, i.e. 10 doublings and 44 mixed
additions. The tables are built on first use with one modular inverse for all 128 points
and kept packed (96 bytes a point, 12 KiB in eight bytearrays). Inverses use the extended
Euclidean algorithm: on MicroPython it is ~10x faster than pow(z, p - 2, p).

verify() is cofactorless like libsodium and OpenSSL (``cryptography``): it checks
[S]B == R + [k]A with k = SHA-512(R || A || M) mod L, after rejecting, like libsodium,
S >= L, non-canonical or invalid encodings of A and R, and A or R of small order.

Known limitation: not constant-time. Big-int arithmetic, branches and table indices depend
on secret values, so a device's timing or power draw can leak its key. Accepted here because
each board generates its key on the device and signs only its own meter readings (messages
an attacker does not choose); do not use it where an attacker can run or time signing at will.
"""

from protocol.errors import BadKeyError, ProtocolError, SignatureError
from protocol.sha512 import sha512

TYPING = False  # True for mypy only (pyproject: always_true)
if TYPING:

    def const(x: int) -> int:
        return x

else:
    try:
        from micropython import const
    except ImportError:  # CPython

        def const(x):
            return x


# Curve constants: const() with a leading underscore keeps them out of a board's heap (the
# compiler inlines them; no module global, no name in the qstr pool).
_P = const(2**255 - 19)
_L = const(2**252 + 27742317777372353535851937790883648493)
_D = const(37095705934669439343138083508754565189542113879843219016388785533085940283555)
_D2 = const(2 * 37095705934669439343138083508754565189542113879843219016388785533085940283555 % (2**255 - 19))
_SQRT_M1 = const(19681161376707505956807079304988542015446066515923890162744021073123829784752)
_BX = const(15112221349535400772501151409588531511454012693041857206046113283949847762202)
_BY = const(46316835694926478169428394003475163141307993866256225615783033603165251855960)

_TABLES = []  # type: list[bytes | bytearray]  # comb tables, filled by _build_tables()

# Point formulas: RFC 8032, 5.1.4 (a = -1; complete, no exceptional cases). A point to be
# added is given as (Y+X, Y-X, 2dT, 2Z); for an affine point that is (y+x, y-x, 2dxy, 2).
# Coordinates may be left unreduced (even negative) between steps; products are reduced.


def _inv(z: int) -> int:
    # 1/z mod p by the extended Euclidean algorithm (z not a multiple of p).
    r0 = _P
    r1 = z % _P
    t0 = 0
    t1 = 1
    while r1:
        q = r0 // r1
        r0, r1 = r1, r0 - q * r1
        t0, t1 = t1, t0 - q * t1
    return t0 % _P


def _dbl(x: int, y: int, z: int) -> tuple[int, int, int, int]:
    p = _P
    a = x * x % p
    b = y * y % p
    c = 2 * z * z % p
    h = a + b
    e = h - (x + y) * (x + y) % p
    g = a - b
    f = c + g
    return e * f % p, g * h % p, f * g % p, e * h % p


def _add(x, y, z, t, ypx, ymx, t2d, z2):
    # type: (int, int, int, int, int, int, int, int) -> tuple[int, int, int, int]
    p = _P
    a = (y - x) * ymx % p
    b = (y + x) * ypx % p
    c = t * t2d % p
    d = z * z2 % p
    e = b - a
    f = d - c
    g = d + c
    h = b + a
    return e * f % p, g * h % p, f * g % p, e * h % p


def _cached(pt: tuple[int, int, int, int], neg: bool = False) -> tuple[int, int, int, int]:
    # (Y+X, Y-X, 2dT, 2Z) of pt, or of -pt = (-X, Y, Z, -T).
    x, y, z, t = pt
    if neg:
        return y - x, y + x, -t * _D2 % _P, 2 * z
    return y + x, y - x, t * _D2 % _P, 2 * z


def _encode(x: int, y: int, z: int) -> bytes:
    zi = _inv(z)
    return (y * zi % _P | (x * zi % _P & 1) << 255).to_bytes(32, "little")


def _decode(s: bytes, err: type[ProtocolError], what: str) -> tuple[int, int]:
    # Affine (x, y) of a canonical point encoding, else raise err (RFC 8032, 5.1.3).
    p = _P
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= p:
        raise err(what + " is not a canonical point encoding (y >= p)")
    y2 = y * y % p
    u = (y2 - 1) % p
    v = (_D * y2 + 1) % p
    v3 = v * v % p * v % p
    x = u * v3 % p * pow(u * v3 % p * v3 % p * v % p, (p - 5) >> 3, p) % p
    vx2 = v * x % p * x % p
    if vx2 != u:
        if vx2 != p - u:
            raise err(what + " is not a valid point encoding (not on the curve)")
        x = x * _SQRT_M1 % p
    if sign and not x:
        raise err(what + " is not a canonical point encoding (x = 0, sign bit set)")
    if (x & 1) != sign:
        x = p - x
    # small order: [8]P is the neutral element (X = 0)
    pt = _dbl(x, y, 1)
    pt = _dbl(pt[0], pt[1], pt[2])
    if not _dbl(pt[0], pt[1], pt[2])[0]:
        raise err(what + " is a point of small order")
    return x, y


def _build_tables() -> None:
    # Table g, entry w (5 bits): G(6g+5) + sum_{t<5} (G(6g+t) if bit t of w else -G(6g+t)),
    # G(i) = 2^(11 i) B, stored as y+x, y-x, 2dxy in chunk 2g + (w >> 4) at 96 * (w & 15).
    # Entries come in Gray-code order, one addition each; then one batch inversion.
    p = _P
    tabs = [bytearray(16 * 96) for _ in range(8)]
    pre = [bytearray(16 * 32) for _ in range(8)]  # running products of the Z coordinates
    acc = 1
    pt = (_BX, _BY, 1, _BX * _BY % p)
    s = 0
    for g in range(4):
        teeth = []
        for i in range(6):
            teeth.append(pt)
            for _ in range(11 if g < 3 or i < 5 else 0):
                pt = _dbl(pt[0], pt[1], pt[2])
        q = teeth[5]
        for i in range(5):
            q = _add(*q, *_cached(teeth[i], True))
            teeth[i] = _dbl(teeth[i][0], teeth[i][1], teeth[i][2])
        for k in range(32):
            w = k ^ (k >> 1)
            if k:
                i = 0
                while not (k >> i) & 1:
                    i += 1
                q = _add(*q, *_cached(teeth[i], not (w >> i) & 1))
            o = (w & 15) * 96
            tabs[2 * g + (w >> 4)][o : o + 96] = (
                (q[0] % p).to_bytes(32, "little")
                + (q[1] % p).to_bytes(32, "little")
                + (q[2] % p).to_bytes(32, "little")
            )
            acc = acc * q[2] % p
            pre[s >> 4][(s & 15) * 32 : (s & 15) * 32 + 32] = acc.to_bytes(32, "little")
            s += 1
    inv = _inv(acc)
    while s:
        s -= 1
        w = (s & 31) ^ ((s & 31) >> 1)
        tab = tabs[2 * (s >> 5) + (w >> 4)]
        o = (w & 15) * 96
        zi = inv
        if s:
            o2 = ((s - 1) & 15) * 32
            zi = inv * int.from_bytes(pre[(s - 1) >> 4][o2 : o2 + 32], "little") % p
            inv = inv * int.from_bytes(tab[o + 64 : o + 96], "little") % p
        x = int.from_bytes(tab[o : o + 32], "little") * zi % p
        y = int.from_bytes(tab[o + 32 : o + 64], "little") * zi % p
        tab[o : o + 96] = (
            ((y + x) % p).to_bytes(32, "little")
            + ((y - x) % p).to_bytes(32, "little")
            + (x * y % p * _D2 % p).to_bytes(32, "little")
        )
    _TABLES[:] = tabs


def _load_tables() -> None:
    # Precomputed (protocol/ed25519_table.py, generated from _build_tables and checked against
    # it by the tests): bytes constants that stay in flash on a board (ROMFS or frozen), so the
    # table costs no heap and no build time at boot. Built here only if that module is missing.
    try:
        from protocol.ed25519_table import TABLES
    except ImportError:
        _build_tables()
        return
    _TABLES[:] = TABLES


def _mul_base(k: int) -> tuple[int, int, int, int]:
    # [k]B for 0 <= k < L. Signed all-bits-set digits: for odd k and k' = (k + 2^264 - 1)/2,
    # k = sum_i (2 bit_i(k') - 1) 2^i; [k]B = [k + L]B makes k odd.
    if not _TABLES:
        _load_tables()
    tabs = _TABLES
    fb = int.from_bytes
    if not k & 1:
        k += _L
    k = (k + (1 << 264) - 1) >> 1
    # idx[4j + g], bit i: digit bit of tooth 6g + i in column j, i.e. bit 66g + 11i + j of k
    idx = bytearray(44)
    for n in range(24):
        c = (k >> (11 * n)) & 0x7FF
        j = n // 6
        while c:
            if c & 1:
                idx[j] |= 1 << (n % 6)
            c >>= 1
            j += 4
    x, y, z, t = 0, 1, 1, 0
    j = 44
    while j:
        if j < 44:
            x, y, z, t = _dbl(x, y, z)
        j -= 4
        for n in range(j, j + 4):
            # bit 5 set: entry w & 31; clear: minus entry 31 - w (swap y+x, y-x; negate 2dxy)
            w = idx[n]
            e = w & 31 if w & 32 else 31 - w
            tab = tabs[2 * (n & 3) + (e >> 4)]
            o = (e & 15) * 96
            a = fb(tab[o : o + 32], "little")
            b = fb(tab[o + 32 : o + 64], "little")
            c = fb(tab[o + 64 : o + 96], "little")
            if w & 32:
                x, y, z, t = _add(x, y, z, t, a, b, c, 2)
            else:
                x, y, z, t = _add(x, y, z, t, b, a, -c, 2)
    return x, y, z, t


def _mul_var(k: int, x: int, y: int) -> tuple[int, int, int, int]:
    # [k](x, y) for 0 <= k < 2^255, width-5 NAF, odd multiples P, 3P, ..., 15P precomputed.
    pt = (x, y, 1, x * y % _P)
    two = _cached(_dbl(x, y, 1))
    odd = []
    for _ in range(8):
        odd.append(_cached(pt))
        pt = _add(*pt, *two)
    naf = bytearray(256)  # digits mod 256, least significant first
    n = 0
    while k:
        if k & 1:
            w = k & 31
            if w > 16:
                w -= 32
            k -= w
            naf[n] = w & 0xFF
        k >>= 1
        n += 1
    x, y, z, t = 0, 1, 1, 0
    while n:
        n -= 1
        w = naf[n]
        x, y, z, t = _dbl(x, y, z)
        if w and w < 128:
            x, y, z, t = _add(x, y, z, t, *odd[w >> 1])
        elif w:
            ymx, ypx, t2d, z2 = odd[(256 - w) >> 1]
            x, y, z, t = _add(x, y, z, t, ypx, ymx, -t2d, z2)
    return x, y, z, t


class SigningKey:
    """Ed25519 private key from a 32-byte seed; ``public`` is the 32-byte public key."""

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != 32:
            raise BadKeyError("an Ed25519 seed is 32 bytes")
        h = sha512(seed)
        a = int.from_bytes(h[:32], "little")
        self._a = ((a & ((1 << 254) - 8)) | (1 << 254)) % _L  # clamped; [a]B = [a mod L]B
        self._prefix = h[32:]
        self.public = _encode(*_mul_base(self._a)[:3])

    def sign(self, msg: bytes) -> bytes:
        """Deterministic 64-byte signature R || S of ``msg`` (RFC 8032, 5.1.6)."""
        r = int.from_bytes(sha512(self._prefix, msg), "little") % _L
        rb = _encode(*_mul_base(r)[:3])
        k = int.from_bytes(sha512(rb, self.public, msg), "little") % _L
        return rb + ((r + k * self._a) % _L).to_bytes(32, "little")


def public_key(seed: bytes) -> bytes:
    """The 32-byte public key of a 32-byte seed."""
    return SigningKey(seed).public


def verify(public: bytes, msg: bytes, sig: bytes) -> None:
    """Return if ``sig`` is ``public``'s signature of ``msg``, else raise (cofactorless).

    BadKeyError: public is not 32 bytes, not a canonical point encoding, or of small order.
    SignatureError: sig is not 64 bytes, S >= L, R is not a canonical point encoding or is
    of small order, or [S]B != R + [SHA-512(R || A || M)]A.
    """
    if len(public) != 32:
        raise BadKeyError("an Ed25519 public key is 32 bytes, got %d" % len(public))
    if len(sig) != 64:
        raise SignatureError("an Ed25519 signature is 64 bytes, got %d" % len(sig))
    ax, ay = _decode(public, BadKeyError, "public key")
    s = int.from_bytes(sig[32:], "little")
    if s >= _L:
        raise SignatureError("signature S is not canonical (S >= L)")
    rx, ry = _decode(sig[:32], SignatureError, "signature R")
    k = int.from_bytes(sha512(sig[:32], public, msg), "little") % _L
    p = _P
    x, y, z, _ = _add(*_mul_var(k, ax, ay), ry + rx, ry - rx, rx * ry % p * _D2 % p, 2)
    x1, y1, z1, _ = _mul_base(s)
    if (x1 * z - x * z1) % p or (y1 * z - y * z1) % p:
        raise SignatureError("signature does not verify")
