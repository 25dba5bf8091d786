"""A grid operator's flexibility request, checked and accepted into a running coordinator.

The request names a congestion point (a feeder or bus the members are on, or the grid id for the
community's whole connection), a direction (``reduce``: less import or more export there;
``increase``: the opposite), the power (W) per interval, the window (``start``, aligned to an
interval, in the future, and ``intervals`` or ``end``) and a price cap (mc/kWh delivered). Times are
Unix seconds or ISO 8601 with a zone. :func:`post` refuses what is malformed, out of range,
already taken or overlapping an accepted request for the same congestion point, naming what is
wrong; nothing is stored then. The flexibility step of the interval loop
(:mod:`coordinator.delivery.flexstep`) takes it from there.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping
from typing import Any

from coordinator.ledger import Ledger, LedgerError, flex_requests
from coordinator.ledger.flex_requests import StoredRequest
from coordinator.ledger.rules import DEFAULT_LIMIT_W
from coordinator.market.types import PRICE_MAX
from coordinator.p2s.errors import BadRequest, Conflict

KEYS = ("id", "congestion_point", "direction", "power_w", "start", "intervals", "end", "price_cap")
MAX_INTERVALS = 96 * 7  # a week of 15-minute intervals
AHEAD_S = 7 * 86_400  # a request starts at most a week ahead
_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
Limits = Callable[[str], tuple[int, int]]


def when(v: object, field: str) -> int:
    """Unix seconds from an integer or an ISO 8601 date-time with a zone."""
    if type(v) is int:
        return v
    if isinstance(v, str):
        try:
            t = datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise BadRequest(f"{field} {v!r} is not a time (Unix seconds or ISO 8601)") from None
        if t.tzinfo is None:
            raise BadRequest(f"{field} {v!r} has no time zone (add Z or +01:00)")
        return int(t.timestamp())
    raise BadRequest(f"{field} must be Unix seconds or an ISO 8601 time, got {v!r}")


def _int(d: Mapping[str, Any], key: str, lo: int, hi: int) -> int:
    v = d.get(key)
    if type(v) is not int or not lo <= v <= hi:
        raise BadRequest(f"{key} must be an integer in {lo}..{hi}, got {v!r}")
    return v


def points(ledger: Ledger, grid: str) -> dict[str, list[str]]:
    """Congestion point -> its members: every feeder and bus the members are on, and the grid id
    (the whole connection)."""
    out: dict[str, list[str]] = {grid: []}
    for m in ledger.members():
        if m.left_at is not None:
            continue
        out[grid].append(m.id)
        for p in {m.feeder, m.bus} - {None}:
            assert p is not None
            out.setdefault(p, []).append(m.id)
    return out


def capacity(ledger: Ledger, members: list[str], limits: Limits | None) -> int:
    """What the active boards of ``members`` can move at most (W): their connections' import."""
    total = 0
    for b in ledger.boards("active"):
        if b.member_id in members:
            total += limits(b.board_type)[0] if limits is not None else DEFAULT_LIMIT_W
    return total


def parse(
    data: object,
    *,
    grid: str,
    ledger: Ledger,
    now: int,
    length: int,
    source: str,
    limits: Limits | None = None,
) -> StoredRequest:
    """The request ``data`` describes, checked; :class:`BadRequest` names the first problem."""
    if not isinstance(data, Mapping):
        raise BadRequest(f"a flexibility request is a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise BadRequest(f"unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
    cp = data.get("congestion_point")
    known = points(ledger, grid)
    if not isinstance(cp, str) or not cp:
        raise BadRequest(f"congestion_point must be a feeder, a bus or the grid id, got {cp!r}")
    if cp not in known:
        raise BadRequest(
            f"congestion_point {cp!r} is no feeder or bus of a member, nor the grid {grid!r} "
            f"(known: {', '.join(sorted(known))})"
        )
    direction = data.get("direction")
    if direction not in ("reduce", "increase"):
        raise BadRequest(f"direction must be 'reduce' or 'increase', got {direction!r}")
    power = _int(data, "power_w", 1, 10**9)
    most = capacity(ledger, known[cp], limits)
    if power > most:
        raise BadRequest(
            f"power_w {power} is more than the boards at {cp!r} can move (their connections carry {most} W)"
        )
    price_cap = _int(data, "price_cap", 0, PRICE_MAX)
    if "start" not in data:
        raise BadRequest("start is missing")
    start = when(data["start"], "start")
    if start % length:
        raise BadRequest(f"start {start} is not an interval start (intervals of {length} s)")
    first = now - now % length + length
    if start < first:
        raise BadRequest(f"start {start} is not in the future: the first interval it may start is {first}")
    if start > now + AHEAD_S:
        raise BadRequest(f"start {start} is more than {AHEAD_S // 86_400} days ahead")
    if ("intervals" in data) == ("end" in data):
        raise BadRequest("give either intervals or end")
    if "end" in data:
        end = when(data["end"], "end")
        if end <= start or (end - start) % length:
            raise BadRequest(f"end {end} must be an interval start after start {start}")
        n = (end - start) // length
        if n > MAX_INTERVALS:
            raise BadRequest(f"the window is {n} intervals, more than {MAX_INTERVALS}")
    else:
        n = _int(data, "intervals", 1, MAX_INTERVALS)
    rid = data.get("id")
    if rid is None:
        rid = f"{cp}-{start}-{direction}"
    if not isinstance(rid, str) or not _ID.match(rid):
        raise BadRequest(f"id must be 1-64 letters, digits, _ or -, got {rid!r}")
    return StoredRequest(rid, cp, direction, power, start, n, price_cap, source[:64], now)


def post(
    ledger: Ledger,
    data: object,
    *,
    grid: str,
    now: int,
    length: int,
    source: str,
    limits: Limits | None = None,
) -> StoredRequest:
    """Check and store a request (state ``posted``); refused whole when anything is wrong."""
    r = parse(data, grid=grid, ledger=ledger, now=now, length=length, source=source, limits=limits)
    try:
        flex_requests.add_request(ledger, r, length)
    except (flex_requests.Overlap, flex_requests.Duplicate) as e:
        raise Conflict(str(e)) from None
    except LedgerError as e:
        raise BadRequest(str(e)) from None
    return r
