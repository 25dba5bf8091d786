"""Properties every scheme must have, on random intervals (Hypothesis).

- energy balance: per order, local + supplier + unfilled (ex-ante only) = its energy; bought
  locally = sold locally; no order fills beyond its energy; no order pair fills twice;
- money: the flows of members, supplier and dso sum to exactly zero in every interval;
- individual rationality: no buyer pays above its limit, no seller gets below its limit;
- prices within [feed_in, retail] when member limits are within them, or under "clamp";
- determinism: any permutation of the orders gives the same clearing.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.market import LimitOutOfBounds, clear
from tests.market.invariants import check_bounds, check_clearing
from tests.market.strategies import ALL_SCHEMES, INTERVAL, Case, cases

MANY = settings(max_examples=300, deadline=None)


def run(case: Case, orders: list | None = None):  # type: ignore[no-untyped-def,type-arg]
    return clear(
        case.scheme,
        INTERVAL,
        case.orders if orders is None else orders,
        case.tariff,
        limits=case.limits,
        **case.options,
    )


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
@MANY
@given(data=st.data())
def test_conservation_and_rationality(scheme: str, data: st.DataObject) -> None:
    case = data.draw(cases(scheme))
    c = run(case)
    assert c.scheme == scheme and c.interval == INTERVAL
    check_clearing(c, case.orders, case.tariff, case.limits)


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
@MANY
@given(data=st.data())
def test_prices_within_bounds_when_limits_are(scheme: str, data: st.DataObject) -> None:
    case = data.draw(cases(scheme, within=True, limits=["allow", "reject"]))
    c = run(case)
    check_clearing(c, case.orders, case.tariff, case.limits)
    check_bounds(c, case.tariff)


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
@MANY
@given(data=st.data())
def test_clamp_keeps_prices_within_bounds_whatever_the_limits(scheme: str, data: st.DataObject) -> None:
    case = data.draw(cases(scheme, limits=["clamp"]))
    c = run(case)
    check_clearing(c, case.orders, case.tariff, "clamp")
    check_bounds(c, case.tariff)


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
@MANY
@given(data=st.data())
def test_reject_refuses_limits_past_the_bounds(scheme: str, data: st.DataObject) -> None:
    case = data.draw(cases(scheme, limits=["reject"]))
    t = case.tariff
    past = [o for o in case.orders if (o.limit > t.retail if o.side == "buy" else o.limit < t.feed_in)]
    if past:
        with pytest.raises(LimitOutOfBounds, match="limit policy 'reject'"):
            run(case)
    else:
        check_clearing(run(case), case.orders, t, "reject")


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
@MANY
@given(data=st.data())
def test_same_result_for_any_order_permutation(scheme: str, data: st.DataObject) -> None:
    case = data.draw(cases(scheme))
    shuffled = data.draw(st.permutations(case.orders))
    a = run(case)
    b = run(case, list(shuffled))
    assert a == b
    assert a.canonical() == b.canonical()
    assert run(case, list(reversed(shuffled))).canonical() == a.canonical()
