"""Board orders: each board's target for an interval as one Order signed with the coordinator's
key, and their publication, many in flight at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from coordinator.delivery.dispatch.targets import Target
from coordinator.site import Site
from protocol import crypto, frame, messages, topics

PUBLISH_WINDOW = 200  # orders in flight at once; the broker config allows 1,000 (max_inflight_messages)

Publish = Callable[[str, bytes], Awaitable[None]]


@dataclass(frozen=True)
class Setpoint:
    """A board's signed order: its sequence number, storage power (W, + charge) and frame."""

    board_id: str
    oseq: int
    bat_w: int
    frame: bytes


def sign(site: Site, key: crypto.SigningKey, board: str, oseq: int, start: int, target: Target) -> Setpoint:
    """The board's order ``oseq`` for the interval ``start``, valid for that interval only."""
    fields: dict[str, Any] = {"relay_mask": 0, "relay_state": 0, **target.setpoints()}
    msg = messages.Order(
        board=board,
        oseq=oseq,
        interval=start,
        valid_from=start,
        valid_until=start + site.length,
        **fields,
    )
    fr = frame.seal(msg, topics.board_topic(site.grid, board, "order"), key)
    return Setpoint(board, oseq, target.power_w(), fr)


async def publish_all(publish: Publish, grid: str, setpoints: Iterable[Setpoint]) -> None:
    """Publish the orders concurrently (QoS 1 waits for each PUBACK: one at a time, 1,000 boards
    cost 1,000 round trips), at most ``PUBLISH_WINDOW`` in flight."""
    window = asyncio.Semaphore(PUBLISH_WINDOW)

    async def one(sp: Setpoint) -> None:
        async with window:
            await publish(topics.board_topic(grid, sp.board_id, "order"), sp.frame)

    await asyncio.gather(*(one(sp) for sp in setpoints))
