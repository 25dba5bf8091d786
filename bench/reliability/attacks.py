"""Forged, replayed, cross-topic and stale messages against the coordinator's ingest and the
board's order path, implausible energy from a board's own key, a flood of refused frames, and a
board's credentials used against the broker's coordinator listener: each must be refused (or held
in quarantine), with the reason, and nothing stored from it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from bench.reliability.fuzz import GRID, NOW, _Actuators, _orders_module, _Registers
from coordinator.errors import RejectedMessage
from coordinator.provision import boardfile
from coordinator.transaction.ingest import MAX_AGE_S, MAX_FUTURE_S, Held, Ingest
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
        ing = Ingest(GRID, now=lambda: float(NOW), limits=lambda board_type: (11_000, 5_000))
        ing.enrol("b0", k0.public, since=NOW - 86_400)  # enrolled a day ago
        ing.enrol("b1", k1.public, since=NOW - 86_400)
        ing.check(*_seal(_reading("b0", 10, NOW - 300), k0))  # accepted: b0 is at seq 10
        ing.settled_end = NOW - 900  # settled up to a quarter of an hour ago
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
        ("implausible: +1 MWh in 5 min, signed with the board's own key",
         sealed(_reading("b0", 11, e_imp=1_000 + 10**9), k0)),
        ("key: a reading stamped before the board's key was enrolled",
         sealed(_reading("b0", 11, NOW - 2 * 86_400), k0)),
        ("settled time: a newer reading stamped 3 h back (settled)",
         sealed(_reading("b0", 11, NOW - 3 * 3600), k0)),
    ]  # fmt: skip
    out = []
    for name, attack in cases:
        try:
            got = attack(fresh())
            if isinstance(got, Held):  # kept for the operator, out of readings and settlement
                why = "held in quarantine: " + got.reason.split(" in ")[0]
                out.append(Attack("coordinator ingest", name, True, why))
            else:
                out.append(Attack("coordinator ingest", name, False, "ACCEPTED"))
        except RejectedMessage as e:
            out.append(Attack("coordinator ingest", name, True, e.code))
    out.append(_flood(k0))
    return out


def _flood(key: crypto.SigningKey, n: int = 20_000) -> Attack:
    """``n`` forged frames from an enrolled board and from strangers: every one refused and
    counted, the log bounded (a line per board and reason per minute, not per frame)."""
    ing = Ingest(GRID, now=lambda: float(NOW))
    ing.enrol("b0", key.public)
    evil = crypto.SigningKey(b"\x66" * 32)
    forged = _seal(_reading("b0", 11), evil)
    stranger = _seal(_reading("b7", 1), evil)
    for i in range(n):
        topic, payload = forged if i % 2 else stranger
        ing.handle(topic, payload)  # refused: counted, and logged as a summary
    refused = sum(ing.rejected.values())
    ok = refused == n and ing.refusals.logged <= 4
    why = f"{refused:,} refused, {ing.refusals.logged} log lines"
    return Attack("coordinator ingest", f"flood: {n:,} forged frames (log and memory bounded)", ok, why)


def broker_attacks() -> list[Attack]:
    """A board's credentials against the coordinator's loopback listener of a broker configured
    by ``peergrid broker init`` (a real Mosquitto): refused. Skipped without Mosquitto."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from coordinator.errors import MqttError
    from coordinator.provision.brokerconf import Site, SiteSettings
    from coordinator.service.broker import free_port
    from coordinator.service.mqtt import BrokerAddress, Connection
    from sim.errors import SimError
    from sim.mosquitto import launch, mosquitto_exe, terminate

    try:
        mosquitto_exe()
    except SimError:
        return []
    tmp = Path(tempfile.mkdtemp(prefix="peergrid-broker-attack-"))
    try:
        s = SiteSettings(GRID, ("127.0.0.1",), port=free_port(), local_port=free_port())
        site = Site.init(tmp / "broker", s)
        site.add_board("b0")
        conf = tmp / "mosquitto.conf"
        log = tmp / "mosquitto.log"
        root = "user root\n" if os.geteuid() == 0 else ""  # the broker keeps the files' owner
        conf.write_text(f"log_dest file {log}\n{root}" + site.mosquitto_conf())
        proc = launch(conf, log, (s.local_port, s.port))
        try:
            stolen = BrokerAddress("127.0.0.1", s.local_port, "b0", site.password("b0"))

            async def take_ingest_id() -> str:
                try:
                    async with Connection(stolen, f"peergrid-{GRID}"):
                        return "ACCEPTED"
                except MqttError as e:
                    return str(e)

            got = asyncio.run(take_ingest_id())
        finally:
            terminate(proc)
        name = "a board's credentials on the coordinator listener (ingest id)"
        refused = got != "ACCEPTED"
        return [Attack("broker", name, refused, "not authorised" if refused else got)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
        ack_topic, ack_frame = asyncio.run(h.handle(topic, payload, NOW))
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
        return ingest_attacks() + board_attacks() + broker_attacks()
    finally:
        quiet.setLevel(level)
