# ruff: noqa: F821  (ptr8, ptr32 and uint are viper builtins)
"""SHA-512 (FIPS 180-4) for MicroPython ports whose ``hashlib`` has no sha512.

MicroPython only: the compression function is ``@micropython.viper`` code. Viper integers
are machine words (32 bits on the ESP32, 64 bits on the unix port of a 64-bit host), so every
64-bit SHA-512 word is kept as a (hi, lo) pair of 32-bit halves, and the code is written to
give the same result for both word sizes:

* loads go through ``uint(...)`` (logical right shifts) and stores through ``ptr32``
  (truncation to 32 bits);
* values that are shifted right are masked to 32 bits first (the mask is a no-op on a
  32-bit port);
* the carry out of a 32-bit addition ``s = a + b`` is bit 31 of
  ``(a & b) | ((a | b) & ~s)``, which only depends on the low 32 bits of a, b and s.

All state lives in one preallocated ``bytearray`` of 32-bit words (state, IV, round constants, message
schedule) and one 128-byte block buffer: nothing is allocated per block. Because that state
is module level, ``sha512`` is not re-entrant (fine for the single-threaded firmware).
Little-endian and big-endian hosts give the same digests: bytes are assembled explicitly.

Use ``protocol.sha512.sha512`` rather than this module: it picks ``hashlib`` when it can.
"""

from binascii import unhexlify

import micropython
from micropython import const

# Word offsets inside the context array.
_H = const(0)  # running state: 8 words as 16 halves (hi, lo)
_IV = const(16)  # initial state
_K = const(32)  # 80 round constants as 160 halves
_W = const(192)  # message schedule: 80 words as 160 halves
_MASK = const(352)  # 0xFFFFFFFF, read into a register (no big literal inside viper code)
_CTX_WORDS = const(353)

# Round constants and initial value, big-endian 64-bit words (FIPS 180-4, 4.2.3 and 5.3.5).
_K_HEX = (
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
_IV_HEX = (
    "6a09e667f3bcc908bb67ae8584caa73b3c6ef372fe94f82ba54ff53a5f1d36f1"
    "510e527fade682d19b05688c2b3e6c1f1f83d9abfb41bd6b5be0cd19137e2179"
)


@micropython.viper
def _load_be(ctx: ptr32, src: ptr8, dst: int, nwords: int):
    """ctx[dst : dst + nwords] = big-endian 32-bit words of src."""
    i = 0
    while i < nwords:
        j = i << 2
        v = (uint(src[j]) << 24) | (uint(src[j + 1]) << 16)
        ctx[dst + i] = v | (uint(src[j + 2]) << 8) | uint(src[j + 3])
        i += 1


@micropython.viper
def _reset(ctx: ptr32):
    i = 0
    while i < 16:
        ctx[_H + i] = ctx[_IV + i]
        i += 1


@micropython.viper
def _digest(ctx: ptr32, out: ptr8):
    """out[0:64] = the state as big-endian bytes."""
    i = 0
    while i < 16:
        w = uint(ctx[_H + i])
        j = i << 2
        out[j] = w >> 24
        out[j + 1] = w >> 16
        out[j + 2] = w >> 8
        out[j + 3] = w
        i += 1


@micropython.viper
def _blocks(ctx: ptr32, data: ptr8, off: int, nblocks: int):
    """Run the compression function over nblocks 128-byte blocks at data[off:]."""
    m = uint(ctx[_MASK])
    while nblocks > 0:
        # W[0..15]: the block as big-endian 64-bit words.
        i = 0
        while i < 32:
            j = off + (i << 2)
            v = (uint(data[j]) << 24) | (uint(data[j + 1]) << 16)
            ctx[_W + i] = v | (uint(data[j + 2]) << 8) | uint(data[j + 3])
            i += 1
        # W[16..79] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16]; i = 2t.
        while i < 160:
            xh = uint(ctx[_W + i - 4])
            xl = uint(ctx[_W + i - 3])
            # s1 = rotr19 ^ rotr61 ^ shr6
            sh = ((xh >> 19) | (xl << 13)) ^ ((xl >> 29) | (xh << 3)) ^ (xh >> 6)
            sl = ((xl >> 19) | (xh << 13)) ^ ((xh >> 29) | (xl << 3)) ^ ((xl >> 6) | (xh << 26))
            yh = uint(ctx[_W + i - 14])
            yl = uint(ctx[_W + i - 13])
            lo = sl + yl
            hi = sh + yh + ((((sl & yl) | ((sl | yl) & (lo ^ m))) >> 31) & 1)
            xh = uint(ctx[_W + i - 30])
            xl = uint(ctx[_W + i - 29])
            # s0 = rotr1 ^ rotr8 ^ shr7
            sh = ((xh >> 1) | (xl << 31)) ^ ((xh >> 8) | (xl << 24)) ^ (xh >> 7)
            sl = ((xl >> 1) | (xh << 31)) ^ ((xl >> 8) | (xh << 24)) ^ ((xl >> 7) | (xh << 25))
            yl = lo + sl
            hi = hi + sh + ((((lo & sl) | ((lo | sl) & (yl ^ m))) >> 31) & 1)
            xh = uint(ctx[_W + i - 32])
            xl = uint(ctx[_W + i - 31])
            lo = yl + xl
            hi = hi + xh + ((((yl & xl) | ((yl | xl) & (lo ^ m))) >> 31) & 1)
            ctx[_W + i] = hi
            ctx[_W + i + 1] = lo
            i += 2

        ah = uint(ctx[_H + 0])
        al = uint(ctx[_H + 1])
        bh = uint(ctx[_H + 2])
        bl = uint(ctx[_H + 3])
        ch = uint(ctx[_H + 4])
        cl = uint(ctx[_H + 5])
        dh = uint(ctx[_H + 6])
        dl = uint(ctx[_H + 7])
        eh = uint(ctx[_H + 8])
        el = uint(ctx[_H + 9])
        fh = uint(ctx[_H + 10])
        fl = uint(ctx[_H + 11])
        gh = uint(ctx[_H + 12])
        gl = uint(ctx[_H + 13])
        hh = uint(ctx[_H + 14])
        hl = uint(ctx[_H + 15])
        i = 0
        while i < 160:
            # T1 = h + S1(e) + Ch(e, f, g) + K[t] + W[t]
            # S1 = rotr14 ^ rotr18 ^ rotr41
            sh = ((eh >> 14) | (el << 18)) ^ ((eh >> 18) | (el << 14)) ^ ((el >> 9) | (eh << 23))
            sl = ((el >> 14) | (eh << 18)) ^ ((el >> 18) | (eh << 14)) ^ ((eh >> 9) | (el << 23))
            lo = hl + sl
            hi = hh + sh + ((((hl & sl) | ((hl | sl) & (lo ^ m))) >> 31) & 1)
            sh = gh ^ (eh & (fh ^ gh))
            sl = gl ^ (el & (fl ^ gl))
            yl = lo + sl
            hi = hi + sh + ((((lo & sl) | ((lo | sl) & (yl ^ m))) >> 31) & 1)
            sh = uint(ctx[_K + i])
            sl = uint(ctx[_K + i + 1])
            lo = yl + sl
            hi = hi + sh + ((((yl & sl) | ((yl | sl) & (lo ^ m))) >> 31) & 1)
            sh = uint(ctx[_W + i])
            sl = uint(ctx[_W + i + 1])
            yl = lo + sl
            hi = hi + sh + ((((lo & sl) | ((lo | sl) & (yl ^ m))) >> 31) & 1)
            # now T1 = (hi, yl); T2 = S0(a) + Maj(a, b, c)
            # S0 = rotr28 ^ rotr34 ^ rotr39
            sh = ((ah >> 28) | (al << 4)) ^ ((al >> 2) | (ah << 30)) ^ ((al >> 7) | (ah << 25))
            sl = ((al >> 28) | (ah << 4)) ^ ((ah >> 2) | (al << 30)) ^ ((ah >> 7) | (al << 25))
            xh = (ah & bh) | (ch & (ah | bh))
            xl = (al & bl) | (cl & (al | bl))
            lo = sl + xl
            sh = sh + xh + ((((sl & xl) | ((sl | xl) & (lo ^ m))) >> 31) & 1)
            # rotate the working variables; e = d + T1, a = T1 + T2
            hh = gh
            hl = gl
            gh = fh
            gl = fl
            fh = eh
            fl = el
            xl = dl + yl
            eh = (dh + hi + ((((dl & yl) | ((dl | yl) & (xl ^ m))) >> 31) & 1)) & m
            el = xl & m
            dh = ch
            dl = cl
            ch = bh
            cl = bl
            bh = ah
            bl = al
            xl = yl + lo
            ah = (hi + sh + ((((yl & lo) | ((yl | lo) & (xl ^ m))) >> 31) & 1)) & m
            al = xl & m
            i += 2

        # H += (a, b, ..., h): park the working variables in W[0..15] (no longer needed)
        ctx[_W + 0] = ah
        ctx[_W + 1] = al
        ctx[_W + 2] = bh
        ctx[_W + 3] = bl
        ctx[_W + 4] = ch
        ctx[_W + 5] = cl
        ctx[_W + 6] = dh
        ctx[_W + 7] = dl
        ctx[_W + 8] = eh
        ctx[_W + 9] = el
        ctx[_W + 10] = fh
        ctx[_W + 11] = fl
        ctx[_W + 12] = gh
        ctx[_W + 13] = gl
        ctx[_W + 14] = hh
        ctx[_W + 15] = hl
        i = 0
        while i < 16:
            xl = uint(ctx[_H + i + 1])
            yl = uint(ctx[_W + i + 1])
            lo = xl + yl
            v = (((xl & yl) | ((xl | yl) & (lo ^ m))) >> 31) & 1
            ctx[_H + i] = uint(ctx[_H + i]) + uint(ctx[_W + i]) + v
            ctx[_H + i + 1] = lo
            i += 2

        off += 128
        nblocks -= 1


_CTX = bytearray(4 * _CTX_WORDS)  # 32-bit words through ptr32; one allocation, no copy
_CTX[4 * _MASK : 4 * _MASK + 4] = b"\xff\xff\xff\xff"
_load_be(_CTX, unhexlify(_IV_HEX), _IV, 16)
_load_be(_CTX, unhexlify(_K_HEX), _K, 160)
_BUF = bytearray(128)
_OUT = bytearray(64)


def sha512(*parts):
    """SHA-512 digest (64 bytes) of the concatenation of ``parts`` (bytes-like objects)."""
    ctx = _CTX
    buf = _BUF
    _reset(ctx)
    fill = 0  # bytes waiting in buf
    total = 0
    for part in parts:
        n = len(part)
        total += n
        off = 0
        if fill:
            off = 128 - fill
            if off > n:
                off = n
            buf[fill : fill + off] = part[:off]
            fill += off
            if fill < 128:
                continue
            _blocks(ctx, buf, 0, 1)
            fill = 0
        nb = (n - off) >> 7
        if nb:
            _blocks(ctx, part, off, nb)
            off += nb << 7
        if off < n:
            fill = n - off
            buf[0:fill] = part[off:]
    # Padding: 0x80, zeros, 128-bit big-endian length in bits.
    buf[fill] = 0x80
    fill += 1
    if fill > 112:
        while fill < 128:
            buf[fill] = 0
            fill += 1
        _blocks(ctx, buf, 0, 1)
        fill = 0
    while fill < 120:
        buf[fill] = 0
        fill += 1
    bits = total << 3
    i = 127
    while i >= 120:
        buf[i] = bits & 0xFF
        bits >>= 8
        i -= 1
    _blocks(ctx, buf, 0, 1)
    _digest(ctx, _OUT)
    return bytes(_OUT)
