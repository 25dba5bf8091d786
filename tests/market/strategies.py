"""Hypothesis strategies for market tests: tariffs, orders, sharing keys, contracts, whole cases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from coordinator.market import (
    BUY,
    EX_ANTE,
    EX_POST,
    SELL,
    Contract,
    Order,
    Sharing,
    Tariff,
)
from coordinator.market.types import PRICE_MAX, PRICE_MIN, Kind, Side

PARTIES = [f"m{k}" for k in range(6)]
FEEDERS = [None, "f1", "f2"]
INTERVAL = 1_750_000_000
DA_SCHEMES = ["pairwise", "uniform", "pay_as_bid"]
# id prefixes: the book's tie-break must not depend on how ids are spelt
PREFIXES = st.sampled_from(["o", "z", "a1", "m0-x", "Q"])
ALL_SCHEMES = [*DA_SCHEMES, "self_consumption", "bilateral"]


@st.composite
def tariffs(draw: st.DrawFn) -> Tariff:
    feed_in = draw(st.integers(-2_000, 12_000))
    retail = draw(st.integers(max(feed_in, 0), 40_000))
    grid_fee = draw(st.sampled_from([0, 6_000]) | st.integers(0, min(retail, 12_000)))
    grid_fee = min(grid_fee, retail)
    local = draw(st.sampled_from([grid_fee, grid_fee // 2, 0]) | st.integers(0, grid_fee))
    return Tariff(feed_in=feed_in, retail=retail, grid_fee=grid_fee, grid_fee_local=local)


def _clip(v: int) -> int:
    return max(PRICE_MIN, min(PRICE_MAX, v))


SIDES: st.SearchStrategy[Side] = st.sampled_from((BUY, SELL))
ENERGIES = st.sampled_from([1, 500, 1_000, 1_000_000]) | st.integers(1, 5_000)
PARTY = st.sampled_from(PARTIES)
FEEDER = st.sampled_from(FEEDERS)
KINDS: st.SearchStrategy[Kind] = st.sampled_from((EX_POST, EX_POST, EX_POST, EX_ANTE))


@st.composite
def orders(draw: st.DrawFn, tariff: Tariff, within: bool = False, max_size: int = 24) -> list[Order]:
    """Orders with unique ids; ``within``: bids at most retail, asks at least feed-in."""
    n = draw(st.integers(0, max_size))
    lo, hi = tariff.feed_in, tariff.retail
    anchors = st.sampled_from([lo, hi, (lo + hi) // 2, lo + tariff.grid_fee, lo + tariff.grid_fee_local])
    limits = anchors | (st.integers(lo, hi) if within else st.integers(lo - 8_000, hi + 8_000))
    out = []
    for k in range(n):
        side = draw(SIDES)
        limit = _clip(draw(limits))
        if within:
            limit = min(limit, hi) if side == BUY else max(limit, lo)
        out.append(
            Order(
                draw(PARTY), side, draw(ENERGIES), limit, draw(FEEDER), f"{draw(PREFIXES)}-{k}", draw(KINDS)
            )
        )
    return out


@st.composite
def sharings(draw: st.DrawFn, tariff: Tariff) -> Sharing | None:
    if draw(st.booleans()):
        return None
    price = draw(st.none() | st.integers(tariff.feed_in, tariff.retail))
    if draw(st.booleans()):
        return Sharing(None, price)
    members = draw(st.lists(st.sampled_from(PARTIES), unique=True, max_size=len(PARTIES)))
    keys: dict[str, int] = {}
    left = 10_000
    for m in members:
        bps = draw(st.integers(0, left))
        keys[m] = bps
        left -= bps
    return Sharing(keys, price)


@st.composite
def contracts(draw: st.DrawFn, tariff: Tariff) -> tuple[list[Contract], dict[int, int]]:
    """Contracts (at most one active per consumer at ``INTERVAL``) and a wholesale series."""
    out = []
    consumers = draw(st.lists(st.sampled_from(PARTIES), unique=True, max_size=4))
    for k, c in enumerate(consumers):
        producer = draw(st.sampled_from([p for p in PARTIES if p != c]))
        active = draw(st.booleans() | st.just(True))
        start = INTERVAL - 900 * draw(st.integers(0, 4)) if active else INTERVAL + 900
        end = start + 900 * draw(st.integers(1, 8))
        if draw(st.booleans()):
            price = draw(st.integers(tariff.feed_in - 2_000, tariff.retail))
            out.append(Contract(f"c{k}", c, producer, start, end, price=_clip(price), subscription=k * 1000))
        else:
            markup = draw(st.integers(-3_000, 5_000))
            out.append(Contract(f"c{k}", c, producer, start, end, markup=markup))
    wholesale = {INTERVAL: draw(st.integers(-5_000, 30_000)), INTERVAL + 900: 1}
    return out, wholesale


@dataclass
class Case:
    """One clearing problem: scheme, tariff, orders and the scheme's options."""

    scheme: str
    tariff: Tariff
    orders: list[Order]
    limits: str = "allow"
    options: dict[str, Any] = field(default_factory=dict)


@st.composite
def cases(
    draw: st.DrawFn, scheme: str, within: bool = False, limits: list[str] | None = None, max_size: int = 24
) -> Case:
    tariff = draw(tariffs())
    os = draw(orders(tariff, within=within, max_size=max_size))
    policy = draw(st.sampled_from(limits or ["allow", "clamp"]))
    options: dict[str, Any] = {}
    if scheme == "self_consumption":
        sharing = draw(sharings(tariff))
        if sharing is not None:
            options["sharing"] = sharing
    elif scheme == "bilateral":
        cs, wholesale = draw(contracts(tariff))
        options["contracts"] = cs
        options["wholesale"] = wholesale
    return Case(scheme, tariff, os, policy, options)
