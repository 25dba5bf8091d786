"""What every loop of one coordinator shares about its community: the grid id used in the MQTT
topics, the market interval length, the tariff and its options. Built once from the config by the
composition root (:mod:`coordinator.service.app`) and handed to the interval loop, settlement and
dispatch.

Tariff options:

- **time of use** (``tou``): windows of local time (``timezone``, the billing time zone) on given
  weekdays in which retail and/or feed-in differ from the base tariff; ``tariff_at`` gives an
  interval's tariff (the first window holding the interval's start; the base tariff outside all);
- **platform fee** (``platform_fee``, mc/kWh): what the platform operator (``PLATFORM``) takes of
  every kWh traded between members, paid by the seller;
- **community-owned assets** (``assets``): a member (a battery, a roof) whose every posting is
  passed on to the members holding shares of it, pro rata (largest remainder, exact);
- the network-fee matrix is the tariff's own (``Tariff.zone_fees``).
"""

from __future__ import annotations

import datetime
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from coordinator.errors import CoordinatorError
from coordinator.market import MarketError, Tariff
from coordinator.market.types import RESERVED_PARTIES

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class SiteError(CoordinatorError):
    """A tariff option that cannot be used: a malformed time-of-use window, fee or asset."""


@dataclass(frozen=True)
class TouWindow:
    """Local times ``[start, end)`` (minutes after local midnight) on ``days`` (0 = Monday) in which
    ``retail`` and/or ``feed_in`` (mc/kWh; None: the base tariff's) apply."""

    days: frozenset[int]
    start: int
    end: int
    retail: int | None = None
    feed_in: int | None = None

    def holds(self, local: datetime.datetime) -> bool:
        m = local.hour * 60 + local.minute
        return local.weekday() in self.days and self.start <= m < self.end


@dataclass(frozen=True)
class Asset:
    """A community-owned asset: the member whose postings are passed on, and its shareholders."""

    member: str
    shares: tuple[tuple[str, int], ...]  # (member, shares), by member


@dataclass(frozen=True)
class Site:
    grid: str  # identifier in the MQTT topics
    length: int  # market interval, s (divides a day)
    tariff: Tariff
    timezone: str = "UTC"  # local time of the time-of-use windows
    tou: tuple[TouWindow, ...] = ()
    platform_fee: int = 0  # mc/kWh traded locally, paid by the seller to the platform operator
    assets: tuple[Asset, ...] = ()

    def tariff_at(self, t: int) -> Tariff:
        """The tariff of the interval starting at ``t`` (Unix s): a time-of-use window's, or the base."""
        if not self.tou:
            return self.tariff
        tz: datetime.tzinfo = datetime.UTC if self.timezone == "UTC" else zoneinfo.ZoneInfo(self.timezone)
        local = datetime.datetime.fromtimestamp(t, tz)
        for w in self.tou:
            if w.holds(local):
                return replace(
                    self.tariff,
                    retail=self.tariff.retail if w.retail is None else w.retail,
                    feed_in=self.tariff.feed_in if w.feed_in is None else w.feed_in,
                )
        return self.tariff


def _minutes(v: object, where: str) -> int:
    if isinstance(v, str) and len(v) == 5 and v[2] == ":" and v[:2].isdigit() and v[3:].isdigit():
        h, m = int(v[:2]), int(v[3:])
        if (h < 24 and m < 60) or (h == 24 and m == 0):
            return h * 60 + m
    raise SiteError(f"{where} must be a local time HH:MM (00:00..24:00), got {v!r}")


def _days(v: object, where: str) -> frozenset[int]:
    """``"all"``, ``"mon-fri"``, ``"sat,sun"``, ``"mon,wed-fri"``."""
    if v is None or v == "all":
        return frozenset(range(7))
    if not isinstance(v, str) or not v:
        raise SiteError(f"{where} must be days such as 'mon-fri' or 'sat,sun', got {v!r}")
    out: set[int] = set()
    for part in v.lower().split(","):
        a, _, b = part.strip().partition("-")
        if a not in DAYS or (b and b not in DAYS):
            raise SiteError(f"{where}: {part.strip()!r} is not a day or a range of days ({', '.join(DAYS)})")
        i, j = DAYS.index(a), DAYS.index(b or a)
        if j < i:
            raise SiteError(f"{where}: {part.strip()!r} runs backwards")
        out.update(range(i, j + 1))
    return frozenset(out)


def parse_tou(items: object, base: Tariff) -> tuple[TouWindow, ...]:
    """``[[market.tou]]``: ``days``, ``from``, ``to``, ``retail`` and/or ``feed_in``; each window's
    tariff is checked against the base (feed-in at most retail, fees within retail)."""
    if items is None:
        return ()
    if not isinstance(items, list):
        raise SiteError("market.tou must be an array of tables [[market.tou]]")
    out = []
    for i, x in enumerate(items):
        where = f"market.tou[{i}]"
        if not isinstance(x, dict):
            raise SiteError(f"{where} must be a table")
        extra = sorted(set(x) - {"days", "from", "to", "retail", "feed_in"})
        if extra:
            raise SiteError(f"{where}: unknown key {extra[0]!r} (days, from, to, retail, feed_in)")
        start, end = _minutes(x.get("from"), f"{where}.from"), _minutes(x.get("to"), f"{where}.to")
        if end <= start:
            raise SiteError(f"{where}: 'to' must be after 'from' (a window over midnight is two windows)")
        prices = {}
        for k in ("retail", "feed_in"):
            v = x.get(k)
            if v is not None and type(v) is not int:
                raise SiteError(f"{where}.{k} must be an integer of mc/kWh, got {v!r}")
            prices[k] = v
        if prices["retail"] is None and prices["feed_in"] is None:
            raise SiteError(f"{where}: give retail and/or feed_in")
        w = TouWindow(_days(x.get("days"), f"{where}.days"), start, end, prices["retail"], prices["feed_in"])
        try:
            replace(
                base,
                retail=base.retail if w.retail is None else w.retail,
                feed_in=base.feed_in if w.feed_in is None else w.feed_in,
            )
        except MarketError as e:
            raise SiteError(f"{where}: {e}") from None
        out.append(w)
    return tuple(out)


def parse_fees(items: object) -> tuple[tuple[str, str, int], ...]:
    """``[[market.fees]]``: ``zones = ["f1", "f2"]`` (a member's feeder; the same zone twice: a
    trade within it) and ``fee`` (mc/kWh) of a local trade between them, either way."""
    if items is None:
        return ()
    if not isinstance(items, list):
        raise SiteError("market.fees must be an array of tables [[market.fees]]")
    out = []
    for i, x in enumerate(items):
        where = f"market.fees[{i}]"
        if not isinstance(x, dict) or sorted(x) != ["fee", "zones"]:
            raise SiteError(f"{where} must be a table with zones = [a, b] and fee")
        z, fee = x["zones"], x["fee"]
        if not (isinstance(z, list) and len(z) == 2 and all(isinstance(v, str) and v for v in z)):
            raise SiteError(f"{where}.zones must be two zone (feeder) names, got {z!r}")
        if type(fee) is not int:
            raise SiteError(f"{where}.fee must be an integer of mc/kWh, got {fee!r}")
        out.append((z[0], z[1], fee))
    return tuple(out)


def parse_assets(items: object) -> tuple[Asset, ...]:
    """``[[community.assets]]``: ``member`` (the asset's member id) and ``shares = {member = n}``."""
    if items is None:
        return ()
    if not isinstance(items, list):
        raise SiteError("community.assets must be an array of tables [[community.assets]]")
    out = []
    seen: set[str] = set()
    for i, x in enumerate(items):
        where = f"community.assets[{i}]"
        if not isinstance(x, dict) or sorted(x) != ["member", "shares"]:
            raise SiteError(f"{where} must be a table with member and shares = {{member = n, ...}}")
        m, sh = x["member"], x["shares"]
        if not isinstance(m, str) or not m or m in RESERVED_PARTIES:
            raise SiteError(f"{where}.member must be a member id, got {m!r}")
        if m in seen:
            raise SiteError(f"{where}: the asset {m!r} is listed twice")
        seen.add(m)
        out.append(Asset(m, _shares(sh, m, f"{where}.shares")))
    return tuple(out)


def _shares(sh: object, asset: str, where: str) -> tuple[tuple[str, int], ...]:
    if not isinstance(sh, Mapping) or not sh:
        raise SiteError(f"{where} must name at least one member and its number of shares")
    pairs: Sequence[tuple[Any, Any]] = sorted(sh.items())
    for k, n in pairs:
        if type(n) is not int or n <= 0:
            raise SiteError(f"{where}.{k} must be a positive number of shares, got {n!r}")
        if k == asset or k in RESERVED_PARTIES:
            raise SiteError(f"{where}: {k!r} cannot hold shares of {asset!r}")
    return tuple((str(k), int(n)) for k, n in pairs)
