"""Many virtual boards' order path in one process, for the orders benchmark: ``python -m
bench.order_boards PORT GRID N COORDINATOR_PUBKEY_HEX``.

Each board runs the firmware's own order handler (``firmware/orders.py`` under CPython): it
verifies the coordinator's signature for its own topic, checks the sequence and validity window,
clamps to its limits and answers with a signed Ack, published at QoS 1. One MQTT connection
carries all the boards (a broker sees the same messages either way). Prints ``ready`` once
subscribed; runs until SIGTERM, then prints how many orders it acknowledged.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

from bench.reliability.fuzz import _Actuators, _orders_module, _Registers
from coordinator.service.mqtt import BrokerAddress, Connection
from protocol import crypto, topics

BOARD_CFG = {"battery": {"max_charge_w": 5000, "max_discharge_w": 5000}, "relays": []}


def board_key(i: int) -> crypto.SigningKey:
    return crypto.SigningKey(i.to_bytes(4, "big") * 8)


def board_id(i: int) -> str:
    return f"o{i:04d}"


async def serve(port: int, grid: str, n: int, coordinator: bytes) -> None:
    mod = _orders_module()
    verifier = crypto.Verifier(coordinator)
    limits = mod.Limits(BOARD_CFG)
    handlers = {}
    for i in range(n):
        regs = _Registers()
        regs.last_oseq = 0
        handlers[board_id(i)] = mod.OrderHandler(
            board_id(i), grid, verifier, limits, _Actuators(), regs, board_key(i)
        )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    acked = 0
    async with Connection(BrokerAddress("127.0.0.1", port), "bench-order-boards") as conn:
        await conn.subscribe(topics.board_filter(grid, "order"))
        print("ready", flush=True)

        sending: set[asyncio.Task[None]] = set()

        async def handle() -> None:
            nonlocal acked
            async for m in conn.messages():
                board = m.topic.split("/")[3]
                h = handlers.get(board)
                if h is None:
                    continue
                out = await h.handle(m.topic, m.payload, int(time.time()))
                if out is not None:
                    # each board publishes on its own: one board's wait for its PUBACK does not
                    # hold up the next board's order, as it would not with separate devices
                    t = asyncio.create_task(conn.publish(*out))
                    sending.add(t)
                    t.add_done_callback(sending.discard)
                    acked += 1

        task = asyncio.create_task(handle())
        await stop.wait()
        task.cancel()
    print(f"acked {acked}", flush=True)


def main(argv: list[str]) -> int:
    asyncio.run(serve(int(argv[0]), argv[1], int(argv[2]), bytes.fromhex(argv[3])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
