"""A Hypothesis state machine over many intervals, in the style of gsy-e's market tests.

Members place orders; each step clears an interval with a random scheme. Invariants across the
whole run: every interval's money sums to zero, so the running balances (members, supplier, dso)
do too; members bought = what they ordered (less ex-ante remainders nobody took) = local + supplier,
and the same for what they sold; no order id is ever settled twice.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from coordinator.market import Contract, Order, Sharing, Tariff, clear, energy_by_order, money_flows
from tests.market.invariants import check_clearing
from tests.market.strategies import ALL_SCHEMES, FEEDERS, PARTIES

T = Tariff(feed_in=4_000, retail=20_750, grid_fee=6_000, grid_fee_local=3_000)
LENGTH = 900


class Market(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.interval = 1_750_000_000
        self.pending: list[Order] = []
        self.balances: Counter[str] = Counter()
        self.settled: set[str] = set()
        self.bought = self.sold = self.demand = self.supply = 0
        self.contracts = [
            Contract("c1", "m0", "m1", 0, 2**40, price=9_000, subscription=1),
            Contract("c2", "m2", "m1", 0, 2**40, markup=500),
        ]

    @rule(
        party=st.sampled_from(PARTIES),
        side=st.sampled_from(["buy", "sell"]),
        energy=st.integers(1, 10_000),
        limit=st.integers(0, 30_000),
        feeder=st.sampled_from(FEEDERS),
        kind=st.sampled_from(["ex_post", "ex_ante"]),
    )
    def place(self, party: str, side: str, energy: int, limit: int, feeder: str | None, kind: str) -> None:
        oid = f"{self.interval}:{len(self.pending)}"
        self.pending.append(Order(party, side, energy, limit, feeder, oid, kind))  # type: ignore[arg-type]

    @rule(scheme=st.sampled_from(ALL_SCHEMES), policy=st.sampled_from(["allow", "clamp"]))
    def clear_interval(self, scheme: str, policy: str) -> None:
        options: dict[str, object] = {}
        if scheme == "bilateral":
            options = {"contracts": self.contracts, "wholesale": {self.interval: 8_000}}
        elif scheme == "self_consumption":
            options = {"sharing": Sharing({"m0": 4_000, "m2": 6_000}, 12_000)}
        c = clear(scheme, self.interval, self.pending, T, limits=policy, **options)  # type: ignore[arg-type]
        check_clearing(c, self.pending, T, policy)
        filled = energy_by_order(c)
        assert not (set(filled) & self.settled), "an order settled twice"
        self.settled |= set(filled)
        self.balances.update(money_flows(c))
        members_bought = sum(t.energy for t in c.all_trades() if t.buyer != "supplier")
        members_sold = sum(t.energy for t in c.all_trades() if t.seller != "supplier")
        self.bought += members_bought
        self.sold += members_sold
        self.demand += sum(o.energy for o in self.pending if o.side == "buy")
        self.demand -= sum(u.energy for u in c.unfilled if u.side == "buy")
        self.supply += sum(o.energy for o in self.pending if o.side == "sell")
        self.supply -= sum(u.energy for u in c.unfilled if u.side == "sell")
        assert members_bought - c.grid_imp == members_sold - c.grid_exp == c.traded
        self.pending = []
        self.interval += LENGTH

    @invariant()
    def money_sums_to_zero(self) -> None:
        assert sum(self.balances.values()) == 0

    @invariant()
    def every_settled_mwh_was_ordered(self) -> None:
        assert (self.bought, self.sold) == (self.demand, self.supply)


Market.TestCase.settings = settings(max_examples=300, stateful_step_count=12, deadline=None)
TestMarket = Market.TestCase
