"""Canonical msgpack: the portable encoder is byte-identical to the C extension, and the decoder
accepts exactly the canonical encodings and nothing else without crashing."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import codec
from protocol.errors import DecodeError, OversizeError, ProtocolError
from tests.protocol.strategies import any_message, wire_values

MANY = settings(max_examples=500, deadline=None)


@MANY
@given(wire_values)
def test_portable_encoder_matches_c_extension(v: Any) -> None:
    portable = codec.pack_portable(v)
    assert portable == msgpack.packb(v, use_bin_type=True)
    assert codec.pack(v) == portable


@MANY
@given(wire_values)
def test_roundtrip_both_decoders(v: Any) -> None:
    b = codec.pack_portable(v)
    assert codec.unpack_portable(b) == v
    assert codec.unpack(b) == v


@MANY
@given(any_message)
def test_every_message_encodes_identically(msg: Any) -> None:
    items = msg.to_list()
    assert codec.pack_portable(items) == msgpack.packb(items, use_bin_type=True) == msg.encode()


def _outcome(fn: Any, b: bytes) -> Any:
    try:
        return ("ok", fn(b))
    except ProtocolError as e:
        return ("err", type(e))


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes_never_crash_and_decoders_agree(b: bytes) -> None:
    portable = _outcome(codec.unpack_portable, b)
    fast = _outcome(codec.unpack, b)
    assert portable == fast
    if portable[0] == "ok":  # whatever is accepted is canonical
        assert codec.pack_portable(portable[1]) == b


@MANY
@given(wire_values, st.data())
def test_mutated_encodings_never_crash(v: Any, data: st.DataObject) -> None:
    b = bytearray(codec.pack_portable(v))
    if b:
        i = data.draw(st.integers(0, len(b) - 1))
        b[i] = data.draw(st.integers(0, 255))
    out = _outcome(codec.unpack, bytes(b))
    if out[0] == "ok":
        assert codec.pack_portable(out[1]) == bytes(b)


def test_limits_are_specific_errors() -> None:
    with pytest.raises(OversizeError, match="longer than"):
        codec.pack_portable(b"x" * (codec.MAX_BYTES + 1))
    with pytest.raises(OversizeError, match="64 bits"):
        codec.pack_portable(2**64)
    with pytest.raises(OversizeError, match="nested"):
        codec.pack_portable([[[[1]]]])
    with pytest.raises(DecodeError, match="cannot encode"):
        codec.pack_portable(1.5)
    with pytest.raises(DecodeError, match="trailing"):
        codec.unpack(b"\x01\x02")
    with pytest.raises(DecodeError, match="non-canonical"):
        codec.unpack(b"\xcc\x05")
    with pytest.raises(DecodeError, match="truncated"):
        codec.unpack(b"\xce\x00")
