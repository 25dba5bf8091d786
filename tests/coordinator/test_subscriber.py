"""The ingest's lean MQTT subscriber: packet framing, and sessions against a real Mosquitto."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.errors import MqttError
from coordinator.service.mqtt import BrokerAddress, Connection
from coordinator.transaction.subscriber import MAX_PACKET, Subscriber, _packet, parse
from tests.broker import Mosquitto


@given(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=300)), max_size=20), st.data())
def test_parse_splits_any_stream_into_its_packets(
    packets: list[tuple[int, bytes]], data: st.DataObject
) -> None:
    stream = b"".join(_packet(k, body) for k, body in packets)
    # the stream arrives cut at arbitrary points; each read parses what is complete
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=5)))
    buf = bytearray()
    got: list[tuple[int, bytes]] = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        buf += stream[prev:cut]
        prev = cut
        used = parse(buf, got)
        del buf[:used]
    assert got == packets
    assert not buf


def test_parse_refuses_malformed_and_oversized_lengths() -> None:
    with pytest.raises(MqttError, match="malformed remaining length"):
        parse(bytearray(b"\x30\xff\xff\xff\xff\x01"), [])
    with pytest.raises(MqttError, match="exceeds"):
        parse(bytearray(b"\x90\xff\xff\xff\x7f"), [])  # only a PUBLISH may be that long
    out: list[tuple[int, bytes]] = []
    assert parse(bytearray(b"\x30\x05abc"), out) == 0 and not out  # incomplete: wait for more


def test_parse_truncates_an_oversized_publish_and_skips_the_rest() -> None:
    """A PUBLISH above MAX_PACKET (any client may publish up to what the broker allows) is handed
    on cut to MAX_PACKET bytes, for the ingest to refuse and acknowledge; the count of bytes taken
    runs past the buffer by the rest of it, which the subscriber skips as it arrives."""
    body = b"\x00\x03t/x\x00\x07" + bytes(range(256)) * (MAX_PACKET // 128)
    stream = _packet(0x32, body) + _packet(0x30, b"\x00\x03t/yok")
    head = len(_packet(0x32, body)) - len(body)  # first byte and remaining length
    out: list[tuple[int, bytes]] = []
    buf = bytearray(stream[: head + MAX_PACKET - 1])
    assert parse(buf, out) == 0 and not out  # the first MAX_PACKET bytes are not all there yet
    buf = bytearray(stream[: head + MAX_PACKET + 10])
    used = parse(buf, out)
    assert out == [(0x32, body[:MAX_PACKET])] and used == head + len(body)
    rest = bytearray(stream[used:])
    assert parse(rest, out) == len(rest) and out[-1] == (0x30, b"\x00\x03t/yok")


def test_receives_in_order_and_redelivers_what_was_not_acknowledged(mosquitto: Mosquitto) -> None:
    async def main() -> None:
        addr = mosquitto.address
        async with Subscriber(addr, "sub-1", clean_session=True) as s:
            pass  # a clean start for the persistent session below
        async with Subscriber(addr, "sub-1", clean_session=False) as s:
            await s.subscribe("t/#")
            async with Connection(addr, "pub") as pub:
                for i in range(300):
                    await pub.publish(f"t/{i % 3}", i.to_bytes(2, "big"))
            got = []
            async for batch in s.batches():
                for m in batch:
                    got.append(m)
                    if int.from_bytes(m.payload, "big") < 100:
                        s.ack(m)  # committed; the rest are not when the session drops
                # the broker sends at most its in-flight window (20) beyond what is acknowledged
                if len(got) >= 110:
                    break
            n = len(got)
            assert [int.from_bytes(m.payload, "big") for m in got] == list(range(n))  # in order
            assert [m.topic for m in got[:3]] == ["t/0", "t/1", "t/2"]
            await asyncio.sleep(0.2)
        async with Subscriber(addr, "sub-1", clean_session=False) as s:
            await s.subscribe("t/#")
            again = []
            async for batch in s.batches():
                again.extend(batch)
                if len(again) >= 200:
                    break
            assert sorted(int.from_bytes(m.payload, "big") for m in again) == list(range(100, 300))
            for m in again:
                s.ack(m)

    asyncio.run(asyncio.wait_for(main(), 30))


def test_refusals_are_clear_errors(mosquitto: Mosquitto) -> None:
    async def main() -> None:
        with pytest.raises(MqttError, match="cannot connect"):
            async with Subscriber(BrokerAddress("127.0.0.1", 1), "x"):
                pass
        async with Subscriber(mosquitto.address, "sub-2") as s:
            # "#" must end a filter: Mosquitto drops the client (a 3.1.1 protocol error)
            with pytest.raises(MqttError, match="refused the subscription|closed the connection"):
                await s.subscribe("t/#/x")

    asyncio.run(asyncio.wait_for(main(), 30))
