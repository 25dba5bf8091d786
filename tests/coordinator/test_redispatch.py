"""Redispatch on the linear grid model: violations removed at least cost, every change explained,
and what cannot be fixed reported."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.delivery.redispatch import Constraint, RedispatchError, Resource, redispatch

# A feeder end where PV export raises the voltage: 0.01 pu per 10 kW injected at B2, half at B1.
V = Constraint("v:B2", 1.08, 1.05, {"B1": 0.5e-6, "B2": 1.0e-6})


def test_cheapest_effect_first_and_explained() -> None:
    res = redispatch(
        [V],
        [
            Resource("pv-b1", "B1", "pv_limit", 20_000, -1, cost=4_000),  # half the effect, same price
            Resource("bat-b2", "B2", "battery", 10_000, -1, cost=6_000),  # charge instead
            Resource("pv-b2", "B2", "pv_limit", 20_000, -1, cost=4_000),
        ],
    )
    assert res.ok
    # cost per unit of effect: PV at B2 (4000 per 1e-6), then the battery at B2 (6000 per 1e-6),
    # before PV at B1 (4000 per 0.5e-6); 0.03 pu needs 30 kW of effect at B2
    got = {a.board: a.delta_w for a in res.adjustments}
    assert got == {"pv-b2": -20_000, "bat-b2": -10_000}
    assert all("v:B2" in a.reason for a in res.adjustments)
    assert all(a.cost > 0 for a in res.adjustments)


def test_unfixable_is_reported() -> None:
    res = redispatch([V], [Resource("pv-b1", "B1", "pv_limit", 1_000, -1, cost=1)])
    assert not res.ok and res.remaining["v:B2"] > 0
    assert res.adjustments[0].delta_w == -1_000


def test_bad_resource() -> None:
    with pytest.raises(RedispatchError, match="max_w > 0"):
        redispatch([V], [Resource("x", "B1", "load", 0, 1, 1)])


@settings(max_examples=300, deadline=None)
@given(
    st.floats(1.0, 1.2),
    st.floats(1e-7, 5e-6),
    st.floats(1e-7, 5e-6),
    st.lists(
        st.tuples(st.sampled_from(["B1", "B2"]), st.integers(1, 50_000), st.integers(0, 40_000)),
        min_size=1,
        max_size=6,
    ),
)
def test_properties(v: float, s1: float, s2: float, res_spec: list[tuple[str, int, int]]) -> None:
    c = Constraint("v", v, 1.05, {"B1": s1, "B2": s2})
    rs = [Resource(f"r{i}", bus, "pv_limit", w, -1, cost) for i, (bus, w, cost) in enumerate(res_spec)]
    res = redispatch([c], rs)
    for a in res.adjustments:  # within each resource's range, in its direction
        r = next(r for r in rs if r.board == a.board)
        assert -r.max_w <= a.delta_w < 0 and a.reason
    after = v + sum(
        c.sens[next(r.bus for r in rs if r.board == a.board)] * a.delta_w for a in res.adjustments
    )
    if res.ok:
        assert after <= 1.05 + 1e-9
    else:  # only when every resource was used up
        assert sum(-a.delta_w for a in res.adjustments) == sum(r.max_w for r in rs)
    if v <= 1.05:
        assert res.ok and not res.adjustments  # nothing to do: nothing changed


def test_a_battery_offers_both_directions_and_the_helpful_one_is_used() -> None:
    """Over-voltage from export: the battery charges more (direction -1), never discharges."""
    res = redispatch(
        [V],
        [
            Resource("bat-b2", "B2", "battery", 10_000, 1, cost=1_000),  # discharge more: makes it worse
            Resource("bat-b2", "B2", "battery", 40_000, -1, cost=1_000),  # charge more
        ],
    )
    assert res.ok and [(a.kind, a.delta_w < 0) for a in res.adjustments] == [("battery", True)]
    with pytest.raises(RedispatchError, match="listed twice"):
        redispatch([V], [Resource("b", "B1", "ev", 1, 1, 1), Resource("b", "B1", "ev", 2, 1, 1)])
