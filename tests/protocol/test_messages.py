"""Messages, topics and signed frames on CPython: every field is checked, every frame binds its
topic and type, and anything altered is rejected with a specific error."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import crypto, frame, messages, topics
from protocol.errors import (
    DecodeError,
    FieldError,
    OversizeError,
    ProtocolError,
    SignatureError,
    TopicError,
    UnknownTypeError,
)
from tests.protocol.strategies import any_message

KEY = crypto.SigningKey(bytes(range(32)))
OTHER = crypto.SigningKey(bytes(range(1, 33)))
VER = crypto.Verifier(KEY.public)
MANY = settings(max_examples=300, deadline=None)


def reading(**kw: Any) -> messages.Reading:
    base: dict[str, Any] = dict(
        board="m01", seq=1, ts=1_750_000_000, e_imp=10, e_exp=0, p=5, u=230_000, flags=0
    )
    base.update(kw)
    return messages.Reading(**base)


@MANY
@given(any_message)
def test_decode_inverts_encode(msg: messages.Message) -> None:
    assert messages.decode(msg.encode()) == msg


@MANY
@given(any_message)
def test_frames_roundtrip_and_bind_topic(msg: messages.Message) -> None:
    topic = topics.topic_for("g1", msg)
    fr = frame.seal(msg, topic, KEY)
    assert frame.open_frame(topic, fr, lambda m: VER) == msg
    with pytest.raises(SignatureError):
        frame.open_frame(topic, fr, lambda m: crypto.Verifier(OTHER.public))
    # same board and leaf on another grid: the signature (a result: its grid field) refuses it
    other = topic.replace(f"peergrid/{topics.parse(topic)[0]}/", "peergrid/zz-other/")
    with pytest.raises(TopicError if msg.DIR == messages.BROADCAST else SignatureError):
        frame.open_frame(other, fr, lambda m: VER)


@MANY
@given(any_message, st.data())
def test_any_single_byte_change_is_rejected(msg: messages.Message, data: st.DataObject) -> None:
    topic = topics.topic_for("g1", msg)
    fr = bytearray(frame.seal(msg, topic, KEY))
    i = data.draw(st.integers(0, len(fr) - 1))
    fr[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(ProtocolError):
        frame.open_frame(topic, bytes(fr), lambda m: VER)


@MANY
@given(st.binary(max_size=600))
def test_garbage_frames_rejected_without_crash(b: bytes) -> None:
    with pytest.raises(ProtocolError):
        frame.open_frame("peergrid/g1/b/m01/reading", b, lambda m: VER)


def test_field_checks_are_specific() -> None:
    with pytest.raises(FieldError, match="Reading.p=20000000 is outside"):
        reading(p=20_000_000)
    with pytest.raises(FieldError, match="Reading.e_imp is required"):
        messages.Reading(board="m01", seq=1, ts=1, e_exp=0, p=0, u=0, flags=0)
    with pytest.raises(FieldError, match="must be an integer"):
        reading(seq=True)
    with pytest.raises(FieldError, match="must be an integer"):
        reading(seq=1.0)
    with pytest.raises(FieldError, match="not an identifier"):
        reading(board="M01")
    with pytest.raises(FieldError, match="not an identifier"):
        reading(board="a/b")
    with pytest.raises(FieldError, match="not an identifier"):
        reading(board="-lead")
    with pytest.raises(FieldError, match="has no field"):
        reading(colour="red")
    with pytest.raises(FieldError, match="32 bytes"):
        messages.Enrol(board="m01", pubkey=b"short", board_type="x", fw="1", ts=0)
    with pytest.raises(FieldError, match="printable ASCII"):
        messages.Ack(board="m01", oseq=1, ts=1, status=0, reason="caf\u00e9", relay_state=0)


def test_decode_rejects_wrong_arity_version_and_type() -> None:
    from protocol import codec

    items = reading().to_list()
    with pytest.raises(DecodeError, match="fields, expected"):
        messages.from_list(items[:-1])
    with pytest.raises(DecodeError, match="version 2 is not supported"):
        messages.from_list([1, 2, *items[2:]])
    with pytest.raises(UnknownTypeError):
        messages.decode(codec.pack([77, 1]))
    with pytest.raises(DecodeError, match="not a message array"):
        messages.decode(codec.pack(5))


def test_topics() -> None:
    r = reading()
    assert topics.topic_for("walenstadt", r) == "peergrid/walenstadt/b/m01/reading"
    assert topics.parse("peergrid/g/b/m01/order") == ("g", "m01", "order")
    assert topics.parse("peergrid/g/market/result") == ("g", None, "result")
    assert topics.board_filter("g", "reading", share="ingest") == "$share/ingest/peergrid/g/b/+/reading"
    for bad in [
        "peergrid/g/b/m01",
        "peergrid/g/b/M01/reading",
        "x/g/b/m01/reading",
        "peergrid/g/b/m01/reading/extra",
        "peergrid/g/b/+/reading",
        "a" * 200,
    ]:
        with pytest.raises(TopicError):
            topics.parse(bad)
    with pytest.raises(TopicError, match="board 'm02'"):
        topics.check("peergrid/g/b/m02/reading", r)
    with pytest.raises(TopicError, match="does not belong"):
        topics.check("peergrid/g/b/m01/order", r)


def test_frame_size_limits() -> None:
    topic = topics.topic_for("g1", reading())
    with pytest.raises(OversizeError):
        frame.open_frame(topic, bytes(frame.MAX_FRAME + 1), lambda m: VER)
    with pytest.raises(DecodeError, match="too short"):
        frame.open_frame(topic, bytes(64), lambda m: VER)


def test_verifier_refusal_propagates() -> None:
    class Unknown(ProtocolError):
        code = "unknown_board"

    def refuse(m: messages.Message) -> crypto.Verifier:
        raise Unknown("board m01 is not enrolled")

    topic = topics.topic_for("g1", reading())
    with pytest.raises(Unknown, match="not enrolled"):
        frame.open_frame(topic, frame.seal(reading(), topic, KEY), refuse)


def test_a_status_from_older_firmware_still_decodes_with_the_new_fields_empty() -> None:
    """Boards are updated after the coordinator: a Status without the fields added since (reset
    cause, firmware version, failed boots, largest free block, pending update) still decodes; a
    message missing a required field does not."""
    M = messages
    old = [M.Status.TYPE, M.VERSION, "m01", 1_750_000_000, 1, 100, 30_000, 0, 0, 0]
    s = M.from_list(old)
    assert isinstance(s, M.Status) and s.heap_free == 30_000
    assert (s.reset, s.fw, s.boots, s.block, s.pending) == (None, None, None, None, None)
    with pytest.raises(DecodeError, match="fields, expected"):
        M.from_list(old[:-1])  # ``rejected`` is required
    full = M.Status(
        board="m01", ts=1, state=1, uptime=1, heap_free=1, queued=0, dropped=0, rejected=0,
        reset=3, fw="0.3.0", boots=0, block=8_000, pending=None,
    )  # fmt: skip
    assert M.decode(full.encode()) == full
