"""Canonical msgpack: the one byte encoding of the wire, portable to MicroPython.

Only the subset the protocol needs: nil, booleans, integers (-2**63 .. 2**64-1), ASCII strings,
binary and arrays. No maps, floats or extension types. "Canonical" means every value has exactly
one encoding, the shortest one, which is also what the ``msgpack`` C extension produces with
``use_bin_type=True``; the decoder rejects any other encoding, trailing bytes, excessive sizes and
nesting, so a frame has one meaning and one byte form.

``pack``/``unpack`` use the ``msgpack`` C extension where it is installed (the coordinator) and
the portable code otherwise (the board). Tests hold both to the same bytes.
"""

import struct
import sys

from protocol.errors import DecodeError, OversizeError

MAX_DEPTH = 3  # the message array and one level of nesting inside it, plus margin
MAX_ITEMS = 64  # elements in one array
MAX_BYTES = 1024  # length of one string or binary


def _pack_int(out: bytearray, v: int) -> None:
    if v >= 0:
        if v < 0x80:
            out.append(v)
        elif v <= 0xFF:
            out.append(0xCC)
            out.append(v)
        elif v <= 0xFFFF:
            out.extend(struct.pack(">BH", 0xCD, v))
        elif v <= 0xFFFFFFFF:
            out.extend(struct.pack(">BI", 0xCE, v))
        elif v <= 0xFFFFFFFFFFFFFFFF:
            out.extend(struct.pack(">BQ", 0xCF, v))
        else:
            raise OversizeError("integer %d does not fit in 64 bits" % v)
    elif v >= -32:
        out.append(v & 0xFF)
    elif v >= -0x80:
        out.extend(struct.pack(">Bb", 0xD0, v))
    elif v >= -0x8000:
        out.extend(struct.pack(">Bh", 0xD1, v))
    elif v >= -0x80000000:
        out.extend(struct.pack(">Bi", 0xD2, v))
    elif v >= -0x8000000000000000:
        out.extend(struct.pack(">Bq", 0xD3, v))
    else:
        raise OversizeError("integer %d does not fit in 64 bits" % v)


def _pack_len(
    out: bytearray, n: int, fix_base: "int | None", fix_max: int, b8: "int | None", b16: int, b32: int
) -> None:
    if fix_base is not None and n <= fix_max:
        out.append(fix_base | n)
    elif b8 is not None and n <= 0xFF:
        out.append(b8)
        out.append(n)
    elif n <= 0xFFFF:
        out.extend(struct.pack(">BH", b16, n))
    else:
        out.extend(struct.pack(">BI", b32, n))


def _pack(out: bytearray, v: object, depth: int) -> None:
    if v is None:
        out.append(0xC0)
    elif v is True:
        out.append(0xC3)
    elif v is False:
        out.append(0xC2)
    elif isinstance(v, int):
        _pack_int(out, v)
    elif isinstance(v, str):
        b = v.encode()
        if len(b) > MAX_BYTES:
            raise OversizeError("string of %d bytes is longer than %d" % (len(b), MAX_BYTES))
        _pack_len(out, len(b), 0xA0, 31, 0xD9, 0xDA, 0xDB)
        out.extend(b)
    elif isinstance(v, (bytes, bytearray, memoryview)):
        if len(v) > MAX_BYTES:
            raise OversizeError("binary of %d bytes is longer than %d" % (len(v), MAX_BYTES))
        _pack_len(out, len(v), None, 0, 0xC4, 0xC5, 0xC6)
        out.extend(v)
    elif isinstance(v, (list, tuple)):
        if depth >= MAX_DEPTH:
            raise OversizeError("arrays nested deeper than %d" % MAX_DEPTH)
        if len(v) > MAX_ITEMS:
            raise OversizeError("array of %d items is longer than %d" % (len(v), MAX_ITEMS))
        _pack_len(out, len(v), 0x90, 15, None, 0xDC, 0xDD)
        for item in v:
            _pack(out, item, depth + 1)
    else:
        raise DecodeError("cannot encode a value of type %s" % type(v).__name__)


def pack_portable(value: object) -> bytes:
    """Encode ``value`` canonically with the portable encoder (the board's code path)."""
    out = bytearray()
    _pack(out, value, 0)
    return bytes(out)


class _Reader:
    def __init__(self, buf: bytes) -> None:
        self.buf = memoryview(buf)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        p = self.pos
        if p + n > len(self.buf):
            raise DecodeError("truncated: need %d bytes at offset %d of %d" % (n, p, len(self.buf)))
        self.pos = p + n
        return self.buf[p : p + n]

    def byte(self) -> int:
        return self.take(1)[0]


def _uint(r: _Reader, n: int) -> int:
    v = 0
    for b in r.take(n):
        v = (v << 8) | b
    return v


def _sint(r: _Reader, n: int) -> int:
    v = _uint(r, n)
    if v >= 1 << (8 * n - 1):
        v -= 1 << (8 * n)
    return v


def _noncanonical(what: str, off: int) -> DecodeError:
    return DecodeError("non-canonical encoding of %s at offset %d" % (what, off))


def _text(raw: memoryview, off: int) -> str:
    for c in raw:
        if c < 0x20 or c > 0x7E:
            raise DecodeError("string at offset %d is not printable ASCII" % off)
    return str(bytes(raw), "ascii")


def _unpack(r: _Reader, depth: int) -> object:
    off = r.pos
    t = r.byte()
    if t <= 0x7F:
        return t
    if t >= 0xE0:
        return t - 0x100
    if 0xA0 <= t <= 0xBF:
        return _text(r.take(t & 0x1F), off)
    if 0x90 <= t <= 0x9F:
        return _array(r, t & 0x0F, depth, off)
    if t == 0xC0:
        return None
    if t == 0xC2:
        return False
    if t == 0xC3:
        return True
    if 0xCC <= t <= 0xCF:
        n = 1 << (t - 0xCC)
        v = _uint(r, n)
        lo = (0x80, 0x100, 0x10000, 0x100000000)[t - 0xCC]
        if v < lo:
            raise _noncanonical("an unsigned integer", off)
        return v
    if 0xD0 <= t <= 0xD3:
        n = 1 << (t - 0xD0)
        v = _sint(r, n)
        lim = (-32, -0x80, -0x8000, -0x80000000)[t - 0xD0]
        if v >= lim:
            raise _noncanonical("a signed integer", off)
        return v
    if t in (0xC4, 0xC5, 0xC6, 0xD9, 0xDA, 0xDB):
        if t <= 0xC6:
            n = _uint(r, 1 << (t - 0xC4))
            shortest = (0, 0x100, 0x10000)[t - 0xC4]
        else:
            n = _uint(r, 1 << (t - 0xD9))
            shortest = (32, 0x100, 0x10000)[t - 0xD9]
        if n < shortest:
            raise _noncanonical("a length", off)
        if n > MAX_BYTES:
            raise OversizeError("string or binary of %d bytes at offset %d" % (n, off))
        raw = r.take(n)
        return bytes(raw) if t <= 0xC6 else _text(raw, off)
    if t in (0xDC, 0xDD):
        n = _uint(r, 2 if t == 0xDC else 4)
        if n < (16 if t == 0xDC else 0x10000):
            raise _noncanonical("an array length", off)
        return _array(r, n, depth, off)
    raise DecodeError("unsupported msgpack type byte 0x%02x at offset %d" % (t, off))


def _array(r: _Reader, n: int, depth: int, off: int) -> list[object]:
    if depth >= MAX_DEPTH:
        raise OversizeError("arrays nested deeper than %d at offset %d" % (MAX_DEPTH, off))
    if n > MAX_ITEMS:
        raise OversizeError("array of %d items at offset %d" % (n, off))
    return [_unpack(r, depth + 1) for _ in range(n)]


def unpack_portable(buf: bytes) -> object:
    """Decode exactly one canonical value from ``buf``; raise DecodeError on anything else."""
    r = _Reader(buf)
    v = _unpack(r, 0)
    if r.pos != len(r.buf):
        raise DecodeError("%d trailing bytes after the message" % (len(r.buf) - r.pos))
    return v


# The coordinator's fast path (the msgpack C extension, held to the same bytes) lives in its own
# module, never loaded on a board: every identifier a loaded module names costs heap there.
if sys.implementation.name == "micropython":
    pack = pack_portable
    unpack = unpack_portable
else:
    try:
        from protocol._codec_c import pack as pack
        from protocol._codec_c import unpack as unpack
    except ImportError:  # CPython without msgpack
        pack = pack_portable
        unpack = unpack_portable
