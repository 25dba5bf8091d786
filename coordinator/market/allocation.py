"""Integer allocation: split an amount of energy by weights without losing a single mWh.

Largest remainder method (Hamilton): each share is first the floor of ``total * w / W``; the few
mWh left over go one each to the largest remainders ``total * w % W``, ties broken by position
(callers pass weights in a canonical order, e.g. sorted by party). The shares add up to ``total``
exactly, and no share differs from its exact quota by a whole mWh or more.
"""

from __future__ import annotations

from collections.abc import Sequence

from coordinator.market.errors import InvalidArgument


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` (>= 0) in proportion to ``weights`` (>= 0, not all zero unless total is 0)."""
    if total < 0:
        raise InvalidArgument(f"cannot allocate a negative amount {total}")
    if any(w < 0 for w in weights):
        raise InvalidArgument("allocation weights must not be negative")
    wsum = sum(weights)
    if wsum == 0:
        if total:
            raise InvalidArgument(f"cannot allocate {total} over weights that are all zero")
        return [0] * len(weights)
    shares = [total * w // wsum for w in weights]
    left = total - sum(shares)
    if left:
        order = sorted(range(len(weights)), key=lambda k: (-(total * weights[k] % wsum), k))
        for k in order[:left]:
            shares[k] += 1
    return shares


def pro_rata_capped(total: int, demands: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to ``demands``, never above a demand; hand out at most their sum.

    If ``total`` covers every demand each gets its demand in full; otherwise the largest remainder
    split of ``total`` over the demands (each share is then at most its demand).
    """
    need = sum(demands)
    if total >= need:
        return list(demands)
    return largest_remainder(total, demands)


def fill_in_order(amount: int, capacities: Sequence[int]) -> list[int]:
    """Fill ``capacities`` one after the other with ``amount`` (at most their sum)."""
    out = []
    for c in capacities:
        q = c if c < amount else amount
        out.append(q)
        amount -= q
    return out
