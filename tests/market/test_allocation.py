"""Largest remainder allocation: exact totals, quotas within one mWh, deterministic ties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.market import InvalidArgument
from coordinator.market.allocation import fill_in_order, largest_remainder, pro_rata_capped

MANY = settings(max_examples=300, deadline=None)


def test_examples() -> None:
    assert largest_remainder(10, [1, 1, 1]) == [4, 3, 3]  # tie: the first position wins
    assert largest_remainder(7, [3_333, 3_333, 3_333, 1]) == [3, 2, 2, 0]
    assert largest_remainder(0, [0, 0]) == [0, 0]
    assert pro_rata_capped(10, [2, 3]) == [2, 3]
    assert pro_rata_capped(3, [4, 2]) == [2, 1]
    assert fill_in_order(5, [2, 2, 2]) == [2, 2, 1]
    with pytest.raises(InvalidArgument, match="all zero"):
        largest_remainder(1, [0, 0])
    with pytest.raises(InvalidArgument, match="negative"):
        largest_remainder(-1, [1])


@MANY
@given(total=st.integers(0, 10**12), weights=st.lists(st.integers(0, 10**6), min_size=1, max_size=12))
def test_largest_remainder(total: int, weights: list[int]) -> None:
    if not any(weights):
        weights = [*weights[:-1], 1]
    shares = largest_remainder(total, weights)
    assert sum(shares) == total  # no mWh lost or made
    wsum = sum(weights)
    for s, w in zip(shares, weights, strict=True):
        assert abs(s * wsum - total * w) < wsum  # within one mWh of the exact quota
        if w == 0:
            assert s == 0


@MANY
@given(total=st.integers(0, 10**9), demands=st.lists(st.integers(0, 10**6), max_size=12))
def test_pro_rata_never_above_demand(total: int, demands: list[int]) -> None:
    shares = pro_rata_capped(total, demands)
    assert all(0 <= s <= d for s, d in zip(shares, demands, strict=True))
    assert sum(shares) == min(total, sum(demands))
