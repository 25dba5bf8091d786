"""A capacity limit on a congestion point (a feeder or bus) or on the community's connection (the
grid id), for a window: the dispatcher keeps the expected import (or export) there within it by
holding back EV charging, switching deferrable loads off and discharging (charging) batteries
(:mod:`coordinator.delivery.dispatch.limits`)."""

from __future__ import annotations

from collections.abc import Mapping

from coordinator.ledger import Ledger, flex_requests
from coordinator.ledger.flex_requests import CapacityLimit
from coordinator.p2s.errors import BadRequest
from coordinator.p2s.requests import points, when


def parse(data: object, *, grid: str, ledger: Ledger, now: int, source: str) -> CapacityLimit:
    if not isinstance(data, Mapping):
        raise BadRequest(f"a capacity limit is a JSON object, got {type(data).__name__}")
    keys = ("id", "resource", "direction", "limit_w", "start", "until")
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise BadRequest(f"unknown key {unknown[0]!r} (known: {', '.join(keys)})")
    res = data.get("resource")
    known = points(ledger, grid)
    if not isinstance(res, str) or res not in known:
        raise BadRequest(f"resource {res!r} is no feeder or bus of a member, nor the grid {grid!r}")
    direction = data.get("direction")
    if direction not in ("import", "export"):
        raise BadRequest(f"direction must be 'import' or 'export', got {direction!r}")
    w = data.get("limit_w")
    if type(w) is not int or not 0 <= w <= 10**9:
        raise BadRequest(f"limit_w must be an integer in 0..1000000000, got {w!r}")
    start, until = when(data.get("start"), "start"), when(data.get("until"), "until")
    if until <= start:
        raise BadRequest(f"until {until} must be after start {start}")
    if until <= now:
        raise BadRequest(f"the window ended at {until}: it is in the past")
    lid = data.get("id") or f"{res}-{direction}-{start}"
    if not isinstance(lid, str) or not 1 <= len(lid) <= 128:
        raise BadRequest(f"id must be a string of 1-128 characters, got {lid!r}")
    return CapacityLimit(lid, res, direction, w, start, until, source[:64], now)


def add(ledger: Ledger, data: object, *, grid: str, now: int, source: str) -> tuple[CapacityLimit, bool]:
    """Check and store a limit; (the limit, False if one with its id was stored already)."""
    lim = parse(data, grid=grid, ledger=ledger, now=now, source=source)
    return lim, flex_requests.add_limit(ledger, lim)
