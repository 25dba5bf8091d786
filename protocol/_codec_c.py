"""The canonical codec's fast path on CPython: the msgpack C extension, held to the same bytes as
the portable encoder and decoder in ``protocol.codec`` (which fall back to it and say why)."""

import msgpack

from protocol.codec import MAX_BYTES, MAX_DEPTH, MAX_ITEMS, unpack_portable
from protocol.errors import DecodeError, OversizeError

_packb = msgpack.packb
_unpackb = msgpack.unpackb


def _check(v: object, depth: int) -> None:
    # Values from the C decoder, held to the portable decoder's rules (one loop per array: the
    # coordinator checks thousands of frames per second).
    if type(v) is not list:
        _check_item(v)
        return
    if depth >= MAX_DEPTH:
        raise OversizeError("arrays nested deeper than %d" % MAX_DEPTH)
    for item in v:
        t = type(item)
        if t is int or t is bytes or item is None:
            continue
        if t is str:
            if not (item.isascii() and item.isprintable()):  # i.e. every character in " ".."~"
                raise DecodeError("string is not printable ASCII")
        elif t is list:
            _check(item, depth + 1)
        else:
            _check_item(item)


def _check_item(v: object) -> None:
    if isinstance(v, str):
        if not (v.isascii() and v.isprintable()):
            raise DecodeError("string is not printable ASCII")
    elif v is None or isinstance(v, (int, bytes)):
        pass
    else:
        raise DecodeError("unsupported value of type %s" % type(v).__name__)


def pack(value: object) -> bytes:
    """Canonical encoding of ``value`` (same bytes as ``pack_portable``)."""
    _check(value, 0)
    out: bytes = _packb(value, use_bin_type=True)
    return out


def unpack(buf: bytes) -> object:
    """Decode one canonical value; DecodeError (or a subclass) for anything else."""
    try:
        v: object = _unpackb(
            buf,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=MAX_BYTES,
            max_bin_len=MAX_BYTES,
            max_array_len=MAX_ITEMS,
            max_map_len=0,
            max_ext_len=0,
        )
    except Exception:  # the C decoder raises many types; the portable one says why
        return unpack_portable(buf)
    _check(v, 0)
    if _packb(v, use_bin_type=True) != bytes(buf):
        return unpack_portable(buf)  # raises the precise non-canonical reason
    return v
