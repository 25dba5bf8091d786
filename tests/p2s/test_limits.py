"""A capacity limit in the dispatch: above an import limit on a feeder, the deferrable load there
is switched off in its board's signed order and the change recorded with the limit as its reason;
a limit that holds already changes nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from coordinator.ledger import Ledger
from coordinator.p2s import devices, limits
from protocol import crypto, frame, messages
from sim.board import VirtualBoard
from tests.coordinator.readings import store
from tests.coordinator.service import service

LEN = 900
T0 = 1_750_000_000 - 1_750_000_000 % LEN


def test_an_import_limit_switches_the_deferrable_load_off(tmp_path: Path) -> None:
    led = Ledger.open(tmp_path / "ledger.db")
    key = crypto.SigningKey(b"\x07" * 32)
    led.add_member("carol", "Carol", "consumer", now=T0 - 86_400, feeder="f2")
    b = VirtualBoard("g1", "b-carol", b"\x03" * 32, lambda ts: 2_300)
    led.add_board(b.board, "virtual", b.key.public, now=T0 - 86_400, member_id="carol", status="active")
    devices.change(led, "carol", {"deferrable": {"w": 2_000, "relay": 0}}, by="t", now=T0 - 10, length=LEN)
    for start, w in ((T0 + LEN, 5_000), (T0 + 2 * LEN, 500)):  # the first holds already
        limits.add(
            led,
            {
                "resource": "f2",
                "direction": "import",
                "limit_w": w,
                "start": start,
                "until": start + LEN,
                "id": f"lim-{w}",
            },
            grid="g1",
            now=T0,
            source="t",
        )
    sent: list[tuple[str, bytes]] = []

    async def publish(topic: str, payload: bytes) -> None:
        sent.append((topic, payload))

    clock = [float(T0)]
    loop = service(led, key, lambda: clock[0], publish, settle_delay_s=30).intervals
    assert loop is not None
    store(led, [b], range(T0, T0 + 3 * LEN + 1, 60))
    for t in (T0 + LEN + 40, T0 + 2 * LEN + 40):
        clock[0] = t
        asyncio.run(loop.step())
    orders = {}
    for topic, fr in sent:
        if not topic.endswith("/order"):
            continue
        o = frame.open_frame(topic, fr, lambda m: crypto.Verifier(key.public))
        assert isinstance(o, messages.Order)
        orders[o.interval] = o
    assert T0 + LEN not in orders or not orders[T0 + LEN].relay_mask  # 2.3 kW under 5 kW: nothing to do
    assert orders[T0 + 2 * LEN].relay_mask & 1 and not orders[T0 + 2 * LEN].relay_state & 1
    rows = led._conn.execute("SELECT interval, board_id, kind, delta_w, reason FROM redispatches").fetchall()
    assert rows == [(T0 + 2 * LEN, "b-carol", "load", 2_000, "capacity limit lim-500: import at f2 <= 500 W")]
