"""Integrator mode: the plan is optimal (checked against brute force), keeps the battery within
its limits, gets the EV its energy by departure, and stacks arbitrage and flexibility."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.delivery.devices import Devices
from coordinator.delivery.integrator import Home, PlanError, Slot, ev_schedule, first_step, plan, slot_cost
from coordinator.members import MemberPrefs

L = 900
E = 1000 * L * 10 // 36  # mWh of 1 kW for one slot


def home(prefs: dict[str, object]) -> Devices:
    """An integrator home's devices from its preferences."""
    return Devices.from_prefs("h", MemberPrefs.parse("h", {"integrator": {}, **prefs}), feed_in=4_000)


slots_st = st.lists(
    st.builds(
        Slot,
        st.integers(0, 3000),
        st.integers(0, 4000),
        st.integers(10_000, 30_000),
        st.integers(0, 10_000),
        st.sampled_from([0, 500]),
        st.sampled_from([0, 40_000]),
    ),
    min_size=1,
    max_size=4,
)


def brute(home: Home, slots: list[Slot], levels: int) -> int:
    step_w = home.max_w // levels
    step_e = step_w * L * 10 // 36
    ev = ev_schedule(home, slots, L)
    base = [(s.load_w - s.pv_w + e) * L * 10 // 36 for s, e in zip(slots, ev, strict=True)]
    best = None
    for moves in itertools.product(range(-levels, levels + 1), repeat=len(slots)):
        soc, ok, cost = home.soc, True, 0
        for m, s, b in zip(moves, slots, base, strict=True):
            soc += m * step_e
            if not min(home.floor, home.soc) <= soc <= home.capacity:
                ok = False
                break
            cost += slot_cost(b + m * step_e, s, b)
        if ok and (best is None or cost < best):
            best = cost
    assert best is not None
    return best


@settings(max_examples=300, deadline=None)
@given(slots_st, st.integers(0, 4), st.integers(0, 4 * E))
def test_plan_is_optimal_and_within_limits(slots: list[Slot], soc_steps: int, floor: int) -> None:
    home = Home(capacity=4 * E, soc=soc_steps * E, max_w=2000, floor=floor)
    p = plan(home, slots, L, levels=2)
    assert p.cost == brute(home, slots, 2)
    # never below the reserve; a battery that starts under it only charges
    assert all(min(floor, home.soc) <= s <= home.capacity for s in p.soc)
    assert all(abs(w) <= home.max_w for w in p.battery_w)


def test_arbitrage_and_flexibility_stack() -> None:
    cheap = Slot(500, 0, 10_000, 4_000)
    dear = Slot(500, 0, 30_000, 4_000)
    flex = Slot(500, 0, 20_000, 4_000, flex_w=2000 * L * 10 // 36, flex_price=50_000)
    p = plan(Home(capacity=4 * E, soc=0, max_w=2000), [cheap, cheap, dear, flex], L, levels=2)
    assert p.battery_w[0] > 0 and p.battery_w[1] > 0  # charge when cheap
    assert p.battery_w[3] < 0  # discharge into the flexibility request, which pays most
    assert p.cost < plan(Home(capacity=0, soc=0, max_w=0), [cheap, cheap, dear, flex], L).cost


def test_ev_gets_its_energy_by_departure_in_the_cheapest_slots() -> None:
    slots = [Slot(0, 0, price, 4_000) for price in (30_000, 12_000, 25_000, 11_000, 40_000)]
    home = Home(capacity=0, soc=0, max_w=0, ev_need=3 * E, ev_max_w=2000, ev_from=0, ev_until=4)
    ev = plan(home, slots, L).ev_w
    assert sum(w * L * 10 // 36 for w in ev) >= 3 * E
    assert ev[4] == 0 and ev[3] == 2000 and ev[1] == 1000  # cheapest plugged-in slots first
    with pytest.raises(PlanError, match="cannot get"):
        plan(Home(0, 0, 0, ev_need=100 * E, ev_max_w=2000, ev_from=0, ev_until=2), slots, L)


def test_bad_input() -> None:
    with pytest.raises(PlanError, match="no slots"):
        plan(Home(1, 0, 1), [])
    with pytest.raises(PlanError, match="within 0..capacity"):
        plan(Home(1, 5, 1), [Slot(0, 0, 1, 1)])
    with pytest.raises(PlanError, match="reserve 5 mWh"):
        plan(Home(1, 0, 1, floor=5), [Slot(0, 0, 1, 1)])


def test_first_step_keeps_the_members_reserve() -> None:
    """A home importing at a dear price discharges only down to its ``min_soc``: at the reserve
    the battery stays idle, above it it covers the import only with what lies above the reserve."""
    dev = home(
        {"storage": {"capacity_mwh": 4 * E, "max_charge_w": 2_000, "max_discharge_w": 2_000, "min_soc": 500}}
    )
    kw = {"horizon": 4, "length": L, "buy": 20_000, "sell": 4_000}
    assert dev.battery is not None and dev.battery[3] == 2 * E  # 500 per mille of 4 kWh
    assert first_step(-2_000, dev, 2 * E, 0, 0, **kw)[0] == 0  # at the reserve: no discharge
    # the plan steps by 500 W (a quarter of the battery's power): less than a step's energy above the
    # reserve is kept; exactly a step is used up, no more
    assert first_step(-2_000, dev, 2 * E + E // 4, 0, 0, **kw)[0] == 0
    assert first_step(-2_000, dev, 2 * E + E // 2, 0, 0, **kw)[0] == -500
    for soc in (3 * E, 4 * E):
        w = first_step(-2_000, dev, soc, 0, 0, **kw)[0]
        assert -2_000 <= w < 0 and soc + w * L * 10 // 36 >= 2 * E
    storage = {"capacity_mwh": 4 * E, "max_charge_w": 2_000, "max_discharge_w": 2_000}
    no_reserve = home({"storage": storage})
    assert first_step(-2_000, no_reserve, 2 * E, 0, 0, **kw)[0] == -2_000  # the same home without one


def test_first_step_for_the_dispatcher() -> None:
    """The first interval of a home's plan: the battery covers the home's own import (energy left at
    the end is worth the sell price, so it is not exported for nothing), discharges fully into a
    flexibility order that pays more, and the EV charges now when all prices are equal."""
    dev = home({"storage": {"capacity_mwh": 4 * E, "max_charge_w": 2_000, "max_discharge_w": 2_000}})
    kw = {"horizon": 4, "length": L, "buy": 20_000, "sell": 4_000}
    assert first_step(-1_000, dev, 2 * E, 0, 0, **kw) == (-1_000, 0)  # imports 1 kW: covered
    assert first_step(-1_000, dev, 2 * E, 0, 0, flex=(2_000, 50_000), **kw)[0] == -2_000
    # surplus: the battery fills (energy kept is worth at least its export)
    assert first_step(3_000, dev, 0, 0, 0, **(kw | {"horizon": 2}))[0] == 2_000
    ev = home({"ev": {"max_charge_w": 4_000, "phases": 1}})
    assert first_step(0, ev, None, 2 * E, 8, **kw) == (0, 2_000)  # 2 kWh over 8 slots: now first
    assert first_step(0, ev, None, 0, 8, **kw) == (0, 0)
    with pytest.raises(PlanError, match="horizon"):
        first_step(0, ev, None, 0, 8, horizon=0, length=L, buy=1, sell=1)
