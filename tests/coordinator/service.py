"""The coordinator as the tests build it: through the composition root, with the test's clock,
key and publish function (no MQTT publisher), on a ledger file the test also opens."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from coordinator.config import Config
from coordinator.ledger import Ledger
from coordinator.service.app import Runtime, Service, build
from coordinator.service.interval import IntervalLoop
from coordinator.service.mqtt import BrokerAddress
from protocol import crypto

Publish = Callable[[str, bytes], Awaitable[None]]


async def nop(topic: str, payload: bytes) -> None:
    pass


def service(
    led: Ledger | Path,
    key: crypto.SigningKey,
    now: Callable[[], float],
    publish: Publish = nop,
    check: Any = None,
    **config: Any,
) -> Service:
    path = Path(led.path) if isinstance(led, Ledger) else led
    cfg = Config(config.pop("grid", "g1"), path, BrokerAddress(), **config)
    return build(cfg, Runtime(now=now, key=key, publish=publish, check=check))


def interval_loop(
    led: Ledger | Path,
    key: crypto.SigningKey,
    now: Callable[[], float],
    publish: Publish = nop,
    **config: Any,
) -> IntervalLoop:
    loop = service(led, key, now, publish, **config).intervals
    assert loop is not None
    return loop
