"""Boards' order acknowledgements: a QoS 1 order the broker redelivers after a lost PUBACK is
refused by the board as replayed; that refusal must not overwrite the board's earlier signed
"applied" acknowledgement of the same order (it is counted and logged instead)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from coordinator.ledger import Ledger
from coordinator.ledger.store import ACK_KEPT
from coordinator.service.mqtt import BrokerAddress, Inbound
from coordinator.transaction.ingest_service import IngestService
from protocol import crypto, frame, messages, topics

START = 1_750_000_000 - 1_750_000_000 % 900
BOARD_KEY = crypto.SigningKey(bytes([3]) * 32)


def _ack(oseq: int, status: int, reason: str, ts: int) -> bytes:
    ack = messages.Ack(
        board="m-bat", oseq=oseq, ts=ts, status=status, reason=reason, bat_w=2_000, relay_state=0
    )
    return frame.seal(ack, topics.board_topic("g1", "m-bat", "ack"), BOARD_KEY)


def _ledger(tmp: Path) -> Ledger:
    led = Ledger.open(tmp / "l.db")
    led.add_member("bat", "Battery", "storage", now=START)
    led.add_board("m-bat", "virtual", BOARD_KEY.public, now=START, member_id="bat", status="active")
    led.add_board_order("m-bat", 1, START, b"order frame")
    return led


def _stored(led: Ledger) -> tuple[int, bytes]:
    row = led._conn.execute(
        "SELECT ack_status, ack_frame FROM board_orders WHERE board_id='m-bat' AND oseq=1"
    )
    return row.fetchone()  # type: ignore[no-any-return]


@pytest.mark.parametrize("first", [messages.ST_APPLIED, messages.ST_CLAMPED])
def test_a_replayed_rejection_keeps_the_applied_ack(tmp_path: Path, first: int) -> None:
    led = _ledger(tmp_path)
    applied = _ack(1, first, "" if first == messages.ST_APPLIED else "bat_w limited", START + 1)
    assert led.record_ack("m-bat", 1, first, applied)
    replayed = _ack(1, messages.ST_REJECTED, "replayed order 1 (last 1)", START + 30)
    assert led.record_ack("m-bat", 1, messages.ST_REJECTED, replayed)  # the order exists
    assert _stored(led) == (first, applied)
    assert led.record_acks([("m-bat", 1, messages.ST_REJECTED, replayed)]) == [ACK_KEPT]
    assert _stored(led) == (first, applied)
    led.close()


def test_a_rejection_of_an_order_not_yet_applied_is_recorded(tmp_path: Path) -> None:
    led = _ledger(tmp_path)
    stale = _ack(1, messages.ST_REJECTED, "stale: expired 5 s ago", START + 905)
    assert led.record_ack("m-bat", 1, messages.ST_REJECTED, stale)
    assert _stored(led) == (messages.ST_REJECTED, stale)
    # an order scheduled for later is refused as replayed on redelivery before it opens, then
    # applied when its window opens: the applied ack replaces the refusal
    applied = _ack(1, messages.ST_APPLIED, "", START + 910)
    assert led.record_ack("m-bat", 1, messages.ST_APPLIED, applied)
    assert _stored(led) == (messages.ST_APPLIED, applied)
    led.close()


class _Conn:
    def __init__(self) -> None:
        self.acked: list[Inbound] = []

    def ack(self, m: Inbound) -> None:
        self.acked.append(m)


def test_ingest_counts_and_logs_a_replayed_ack_and_keeps_the_applied_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    led = _ledger(tmp_path)
    svc = IngestService(led, "g1", BrokerAddress(), now=lambda: START + 60)
    topic = topics.board_topic("g1", "m-bat", "ack")
    applied = _ack(1, messages.ST_APPLIED, "", START + 1)
    replayed = _ack(1, messages.ST_REJECTED, "replayed order 1 (last 1)", START + 30)
    conn = _Conn()
    for payload in (applied, replayed):
        svc._handle(Inbound(topic, payload, False))
    with caplog.at_level(logging.INFO, logger="peergrid.ingest"):
        svc.flush(conn)  # type: ignore[arg-type]
    assert len(conn.acked) == 2  # both MQTT messages acknowledged to the broker
    assert _stored(led) == (messages.ST_APPLIED, applied)
    assert svc.replayed_acks == 1
    assert "redelivered" in caplog.text and "order 1" in caplog.text
    led.close()
