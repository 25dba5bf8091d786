"""Forged, replayed, cross-topic and stale messages against the coordinator's ingest and the
board's order path: each must be refused, with the reason it was refused for."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from bench.reliability.fuzz import GRID, NOW, _Actuators, _orders_module, _Registers
from coordinator.errors import RejectedMessage
from coordinator.provision import boardfile
from coordinator.transaction.ingest import MAX_AGE_S, MAX_FUTURE_S, Ingest
from protocol import crypto, frame, messages, topics


@dataclass(frozen=True)
class Attack:
    target: str
    name: str
    refused: bool
    reason: str


def _reading(board: str, seq: int, ts: int = NOW, e_imp: int = 1_000) -> messages.Reading:
    return messages.Reading(board=board, seq=seq, ts=ts, e_imp=e_imp, e_exp=0, p=100, u=230_000,
                            bat_soc=None, bat_p=None, ev_state=None, ev_p=None, flags=0)  # fmt: skip


def _seal(msg: messages.Message, key: crypto.SigningKey, topic: str | None = None) -> tuple[str, bytes]:
    t = topic or topics.topic_for(GRID, msg)
    body = msg.encode()
    return t, body + key.sign(frame.signed_bytes(msg.TYPE, t, body))


def ingest_attacks() -> list[Attack]:
    k0 = crypto.SigningKey(b"\x01" * 32)
    k1 = crypto.SigningKey(b"\x02" * 32)
    evil = crypto.SigningKey(b"\x66" * 32)
    coord = crypto.SigningKey(b"\xc0" * 32)

    def fresh() -> Ingest:
        ing = Ingest(GRID, now=lambda: float(NOW))
        ing.enrol("b0", k0.public)
        ing.enrol("b1", k1.public)
        ing.check(*_seal(_reading("b0", 10), k0))  # accepted: b0 is at seq 10
        return ing

    r11 = _seal(_reading("b0", 11), k0)
    on_b1 = topics.board_topic(GRID, "b1", "reading")
    body11 = r11[1][:-64]
    order = messages.Order(board="b0", oseq=1, interval=NOW, valid_from=NOW, valid_until=NOW + 900,
                           bat_w=None, ev_ma=None, pv_limit_w=None, relay_mask=0, relay_state=0)  # fmt: skip

    def sealed(
        msg: messages.Message, key: crypto.SigningKey, topic: str | None = None
    ) -> Callable[[Ingest], object]:
        t, f = _seal(msg, key, topic)
        return lambda i: i.check(t, f)

    def raw(topic: str, payload: bytes) -> Callable[[Ingest], object]:
        return lambda i: i.check(topic, payload)

    ack_topic = topics.board_topic(GRID, "b0", "ack")
    old = NOW - MAX_AGE_S - 1
    enrol = messages.Enrol(board="b0", pubkey=evil.public, board_type="x", fw="1", ts=NOW)
    cases: list[tuple[str, Callable[[Ingest], object]]] = [
        ("forged: b0's reading signed with another key", sealed(_reading("b0", 11), evil)),
        ("forged: signature of the right key over other bytes", raw(r11[0], body11 + k0.sign(b"x"))),
        ("replayed: the accepted frame again", sealed(_reading("b0", 10), k0)),
        ("replayed: an older reading after a newer one", sealed(_reading("b0", 9), k0)),
        ("cross-topic: b0's frame published on b1's topic", raw(on_b1, r11[1])),
        ("cross-topic: b0's frame re-signed for b1's topic by b0", sealed(_reading("b0", 11), k0, on_b1)),
        ("cross-topic: a reading on the ack topic", raw(ack_topic, r11[1])),
        ("cross-topic: another grid", raw(r11[0].replace(f"/{GRID}/", "/other/"), r11[1])),
        ("cross-topic: an order (coordinator to board) sent to ingest", sealed(order, coord)),
        ("stale: older than the store-and-forward window", sealed(_reading("b0", 11, old), k0)),
        ("stale: stamped in the future", sealed(_reading("b0", 11, NOW + MAX_FUTURE_S + 60), k0)),
        ("registers running backwards", sealed(_reading("b0", 11, e_imp=999), k0)),
        ("unknown board", sealed(_reading("b9", 1), evil)),
        ("enrol of an enrolled board with another key", sealed(enrol, evil)),
    ]  # fmt: skip
    out = []
    for name, attack in cases:
        try:
            attack(fresh())
            out.append(Attack("coordinator ingest", name, False, "ACCEPTED"))
        except RejectedMessage as e:
            out.append(Attack("coordinator ingest", name, True, e.code))
    return out


def board_attacks() -> list[Attack]:
    from bench.reliability.fuzz import ROOT

    mod = _orders_module()
    cfg = boardfile.load(ROOT / "boards" / "circuitsetup-atm90e32.toml")
    coord = crypto.SigningKey(b"\xc0" * 32)
    evil = crypto.SigningKey(b"\x66" * 32)
    key = crypto.SigningKey(b"\x01" * 32)

    def order(board: str = "b0", oseq: int = 5, valid_until: int = NOW + 900) -> messages.Order:
        return messages.Order(board=board, oseq=oseq, interval=NOW, valid_from=NOW - 60,
                              valid_until=valid_until, bat_w=1000, ev_ma=None, pv_limit_w=None,
                              relay_mask=1, relay_state=1)  # fmt: skip

    mine = topics.board_topic(GRID, "b0", "order")
    good = _seal(order(), coord)
    cases: list[tuple[str, tuple[str, bytes]]] = [
        ("forged: an order signed with another key", _seal(order(), evil)),
        ("replayed: an order no newer than the last applied (oseq 3)", _seal(order(oseq=3), coord)),
        ("cross-topic: b1's order published on b0's topic", (mine, _seal(order("b1"), coord)[1])),
        ("cross-topic: b1's order re-signed for b0's topic", _seal(order("b1"), coord, mine)),
        ("stale: an order whose window has passed", _seal(order(valid_until=NOW - 1), coord)),
        ("truncated frame", (mine, good[1][:40])),
    ]
    out = []
    for name, (topic, payload) in cases:
        h = mod.OrderHandler("b0", GRID, crypto.Verifier(coord.public), mod.Limits(cfg), _Actuators(),
                             _Registers(), key)  # fmt: skip
        ack_topic, ack_frame = h.handle(topic, payload, NOW)
        ack = frame.open_frame(ack_topic, ack_frame, lambda m: crypto.Verifier(key.public))
        assert isinstance(ack, messages.Ack)
        refused = ack.status == messages.ST_REJECTED
        out.append(Attack("board order path", name, refused, ack.reason if refused else "APPLIED"))
    return out


def run() -> list[Attack]:
    quiet = logging.getLogger("peergrid")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        return ingest_attacks() + board_attacks()
    finally:
        quiet.setLevel(level)
