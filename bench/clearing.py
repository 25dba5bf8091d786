"""Clearing time against ``sort_and_cross_bound`` (sort + one walk, no bookkeeping), same run.

``run(ci)`` returns ``bench.table.Row``s, so ``bench/`` can list it as a suite; standalone:
``python -m bench.clearing [--ci]``. Orders are random Quartierstrom-like members:
bids between 10 and 20.75 Rp/kWh, asks between 4 and 14 Rp/kWh, 1..5000 mWh, on eight feeders
(``feeders=False``: no feeder, one fee). The reference walks the book at the standard grid fee.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from operator import attrgetter

from bench.table import Row, render
from coordinator.market import Order, Tariff, clear, sort_and_cross_bound
from coordinator.market.orderbook import split_sorted

TARIFF = Tariff(feed_in=4_000, retail=20_750, grid_fee=6_000, grid_fee_local=3_000)


def orders(n: int, feeders: bool = True, seed: int = 1) -> list[Order]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        buy = rng.random() < 0.5
        out.append(
            Order(
                f"m{k % 997}",
                "buy" if buy else "sell",
                rng.randint(1, 5_000),
                rng.randint(10_000, 20_750) if buy else rng.randint(4_000, 14_000),
                f"f{rng.randrange(8)}" if feeders else None,
                f"{k:08x}",
            )
        )
    rng.shuffle(out)
    return out


def sort_cross_emit(os: list[Order], fee: int) -> list[tuple[Order, Order, int, int]]:
    """The bound's sort and walk that also writes each matched pair as a tuple (bid, ask, mWh,
    mean price): the least any clearing that outputs its trades does, no checks, no supplier rows.
    Printed beside the bound to show what writing the trades alone costs."""
    bids, asks = split_sorted(sorted(os, key=attrgetter("rank")))
    out: list[tuple[Order, Order, int, int]] = []
    if not bids or not asks:
        return out
    append = out.append
    i = j = 0
    b, a = bids[0], asks[0]
    rb, ra, bl, al = b.energy, a.energy, b.limit, a.limit + fee
    while bl >= al:
        q = rb if rb < ra else ra
        append((b, a, q, (bl + al) >> 1))
        rb -= q
        ra -= q
        if not rb:
            i += 1
            if i == len(bids):
                break
            b = bids[i]
            rb, bl = b.energy, b.limit
        if not ra:
            j += 1
            if j == len(asks):
                break
            a = asks[j]
            ra, al = a.energy, a.limit + fee
    return out


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def run(ci: bool) -> list[Row]:
    rows = []
    sizes = (1_000, 10_000) if ci else (1_000, 10_000, 100_000)
    for n in sizes:
        repeat = 5 if n >= 100_000 else 20
        for feeders in (True, False):
            os = orders(n, feeders)
            bound = best_ms(lambda os=os: sort_and_cross_bound(os, TARIFF.grid_fee), repeat)  # type: ignore[misc]
            emit = best_ms(lambda os=os: sort_cross_emit(os, TARIFF.grid_fee), repeat)  # type: ignore[misc]
            where = f"{n:,} orders{'' if feeders else ', no feeders'}"
            rows.append(Row(f"sort+cross writing the trades, {where}", emit, "ms", bound, "sort+cross bound"))
            for scheme in ("pairwise", "uniform", "pay_as_bid"):
                ms = best_ms(lambda os=os, s=scheme: clear(s, 0, os, TARIFF), repeat)  # type: ignore[misc]
                name = f"clear {scheme}, {where}"
                rows.append(Row(name, ms, "ms", bound, "sort+cross bound", "<= 1.5x"))
    return rows


if __name__ == "__main__":
    print(render(run("--ci" in sys.argv)))
