"""Money right in every scheme and option (Hypothesis): for any community, scheme and tariff
option, once the period's invoices are issued each member's statement lines are its postings,
and the statements of the members, the supplier, the grid operator and the platform operator sum
to zero (before issue too, with the charges pending on both sides).

And the worked examples of docs/billing.md: each tariff option on one quarter hour of three
members, with the numbers the document quotes."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.ledger import Ledger
from coordinator.market import DSO, PLATFORM, SCHEMES, SUPPLIER, Contract, Sharing, Tariff
from coordinator.site import Asset, Site, TouWindow
from coordinator.transaction import billing
from coordinator.transaction.billing import Terms
from coordinator.transaction.settlement import settle
from sim.board import VirtualBoard
from tests.coordinator.readings import store

START = 1_750_032_000  # 2025-06-16 00:00 UTC, a Monday
DAY = 86_400
BASE = Tariff(4_000, 20_750, 6_000, 3_000)
FEEDERS = ("f1", "f2")


def community(tmp: Path, powers: list[tuple[int, int]]) -> Ledger:
    """Members m0.. with boards drawing (+) or feeding (-) ``powers[k]`` W in the first and
    second quarter hour of the day; readings every 5 minutes over the whole day."""
    led = Ledger.open(tmp / "l.db")
    boards = []
    for k, (a, b) in enumerate(powers):
        m = f"m{k}"
        led.add_member(m, m, "prosumer", now=START, feeder=FEEDERS[k % 2])

        def prof(t: int, a: int = a, b: int = b) -> int:
            return a if t <= START + 900 else b if t <= START + 1800 else 0

        bd = VirtualBoard("g1", f"b-{m}", bytes([k + 1]) * 32, prof)
        led.add_board(bd.board, "virtual", bd.key.public, now=START, member_id=m, status="active")
        boards.append(bd)
    store(led, boards, range(START, START + DAY + 1, 900))
    return led


def settle_day(
    led: Ledger, scheme: str, site: Site, members: list[str], contracts: tuple[Contract, ...]
) -> None:
    sharing = Sharing() if scheme == "self_consumption" else None
    prefs = {m.id: m.market_preferences() for m in led.members()}  # with their feeders, as the loop's
    for t in range(START, START + DAY, 900):
        settle(
            led, t, 900, scheme, site.tariff_at(t), prefs, now=t + 960, sharing=sharing,
            contracts=contracts if scheme == "bilateral" else None,
            platform_fee=site.platform_fee, assets=site.assets,
        )  # fmt: skip


POWER = st.integers(-5_000, 5_000)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scheme=st.sampled_from(SCHEMES),
    powers=st.lists(st.tuples(POWER, POWER), min_size=3, max_size=5),
    fixed=st.sampled_from([0, 2 * 10**10]),
    fixed_to=st.sampled_from([PLATFORM, SUPPLIER, DSO]),
    platform_fee=st.sampled_from([0, 500]),
    zone_fee=st.sampled_from([None, 1_000]),
    tou=st.booleans(),
    asset=st.booleans(),
    sub_to=st.sampled_from(["platform", "producer"]),
)
def test_statements_equal_postings_and_sum_to_zero(
    scheme: str,
    powers: list[tuple[int, int]],
    fixed: int,
    fixed_to: str,
    platform_fee: int,
    zone_fee: int | None,
    tou: bool,
    asset: bool,
    sub_to: str,
) -> None:
    members = [f"m{k}" for k in range(len(powers))]
    tariff = Tariff(4_000, 20_750, 6_000, 3_000, (("f1", "f2", zone_fee),) if zone_fee is not None else ())
    windows = (TouWindow(frozenset(range(7)), 0, 15, retail=30_000, feed_in=2_000),) if tou else ()
    assets = (Asset(members[0], tuple((m, k + 1) for k, m in enumerate(members[1:]))),) if asset else ()
    site = Site("g1", 900, tariff, "UTC", windows, platform_fee, assets)
    contracts = (
        Contract("c1", members[1], members[2], START, START + DAY, price=9_000, subscription=10**11,
                 subscription_to=sub_to),
    )  # fmt: skip
    terms = Terms(
        fixed, fixed_to, contracts if scheme == "bilateral" else (), "UTC",
        BASE if scheme == "net_metering" else None, 900,
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        led = community(Path(tmp), powers)
        settle_day(led, scheme, site, members, contracts)
        parties = [*members, SUPPLIER, DSO, PLATFORM]

        def totals() -> int:
            return sum(billing.statement(led, p, START, START + DAY, terms=terms).total for p in parties)

        assert totals() == 0
        for m in members:
            billing.issue(
                led, billing.statement(led, m, START, START + DAY, terms=terms), now=START + DAY, terms=terms
            )
        q = "SELECT account, sum(amount) FROM postings WHERE party=? GROUP BY account"
        for p in parties:
            lines = {
                x.account: x.amount for x in billing.statement(led, p, START, START + DAY, terms=terms).lines
            }
            assert lines == {a: int(v) for a, v in led._conn.execute(q, (p,))}, p
        assert totals() == 0
        assert led._conn.execute("SELECT coalesce(sum(amount), 0) FROM postings").fetchone() == (0,)
        if asset:  # the asset keeps nothing: all of it passed on
            assert billing.statement(led, members[0], START, START + DAY, terms=terms).total == sum(
                x.amount
                for x in billing.statement(led, members[0], START, START + DAY, terms=terms).lines
                if x.account in ("fixed", "subscription", "contract_subscription", "net_metering")
            )
        led.close()


# -- the worked examples of docs/billing.md ---------------------------------------------------------
# One quarter hour (00:00-00:15 of Monday 2025-06-16, UTC): "sun" on feeder f1 feeds in 4 kW
# (1 kWh), "home" on f2 draws 2 kW (0.5 kWh), "flat" on f1 draws 1.2 kW (0.3 kWh); pairwise market,
# tariff feed-in 4.00, retail 20.75, grid fee 6.00, on the same feeder 3.00 (Rp/kWh).
EXAMPLE = [(-4_000, 0), (2_000, 0), (1_200, 0)]
NAMES = ("sun", "home", "flat")


def example(tmp: Path, site: Site, scheme: str = "pairwise") -> Callable[[str], dict[str, int]]:
    led = community(tmp, EXAMPLE)
    prefs = {m.id: m.market_preferences() for m in led.members()}
    settle(led, START, 900, scheme, site.tariff_at(START), prefs, now=START + 960,
           platform_fee=site.platform_fee, assets=site.assets)  # fmt: skip

    def lines(k: str) -> dict[str, int]:
        party = f"m{NAMES.index(k)}" if k in NAMES else k
        q = "SELECT account, sum(amount) FROM postings WHERE party=? GROUP BY account"
        return {a: int(v) for a, v in led._conn.execute(q, (party,))}

    return lines


def test_example_base_tariff(tmp_path: Path) -> None:
    got = example(tmp_path, Site("g1", 900, BASE))
    # home buys 0.5 kWh from sun across feeders at 15.375 (fee 6.00), flat 0.3 kWh on sun's
    # feeder at 13.875 (fee 3.00); sun's last 0.2 kWh goes to the supplier at 4.00
    assert got("sun") == {"energy_sold_local": 7_950_000_000, "energy_sold_supplier": 800_000_000}
    assert got("home") == {"energy_bought_local": -7_687_500_000}
    assert got("flat") == {"energy_bought_local": -4_162_500_000}
    assert got(DSO) == {"grid_fee": 3_900_000_000}


def test_example_network_fee_matrix(tmp_path: Path) -> None:
    # [[market.fees]] zones = ["f1", "f2"], fee = 1000: the trade between feeders pays 1.00 instead of 6.00
    got = example(tmp_path, Site("g1", 900, Tariff(4_000, 20_750, 6_000, 3_000, (("f1", "f2", 1_000),))))
    assert got("home") == {"energy_bought_local": -7_687_500_000}  # the buyer pays the same price
    assert got("sun")["energy_sold_local"] == 10_450_000_000  # the seller gets the 5.00 saved on 0.5 kWh
    assert got(DSO) == {"grid_fee": 1_400_000_000}


def test_example_platform_fee(tmp_path: Path) -> None:
    # [market] platform_fee = 500: 0.50 Rp per kWh traded locally, paid by the seller
    got = example(tmp_path, Site("g1", 900, BASE, platform_fee=500))
    assert got("sun")["platform_fee"] == -400_000_000 and got(PLATFORM) == {"platform_fee": 400_000_000}


def test_example_time_of_use(tmp_path: Path) -> None:
    # [[market.tou]] days = "mon-fri", from = "00:00", to = "06:00", retail = 15000, feed_in = 3000
    window = TouWindow(frozenset(range(5)), 0, 360, retail=15_000, feed_in=3_000)
    got = example(tmp_path, Site("g1", 900, BASE, "UTC", (window,)))
    assert got("sun")["energy_sold_supplier"] == 600_000_000  # 0.2 kWh at 3.00
    assert got("home") == {"energy_bought_local": -6_000_000_000}  # 0.5 kWh at 12.00 (was 15.375)
    assert got("flat") == {"energy_bought_local": -3_150_000_000}


def test_example_community_asset(tmp_path: Path) -> None:
    # [[community.assets]] member = "sun", shares = { home = 3, flat = 1 }
    got = example(tmp_path, Site("g1", 900, BASE, assets=(Asset("m0", (("m1", 3), ("m2", 1))),)))
    assert got("sun")["asset_share"] == -8_750_000_000  # all it earned: 7.95 + 0.80 Rp
    assert got("home")["asset_share"] == 6_562_500_000 and got("flat")["asset_share"] == 2_187_500_000


def test_example_net_metering(tmp_path: Path) -> None:
    # scheme = "net_metering": no local trade; over the period, what a member fed in up to what it
    # drew is credited retail less feed-in. One member feeding 1 kW in the first quarter hour and
    # drawing 2 kW in the second: 0.25 kWh netted
    led = community(tmp_path, [(-1_000, 2_000), (0, 0), (0, 0)])
    for t in (START, START + 900):
        settle(led, t, 900, "net_metering", BASE, {}, now=t + 960)
    terms = Terms(net_metering=BASE)
    lines = {
        x.account: x.amount for x in billing.statement(led, "m0", START, START + 1800, terms=terms).lines
    }
    assert lines == {
        "energy_bought_supplier": -10_375_000_000,
        "energy_sold_supplier": 1_000_000_000,
        "net_metering": 4_187_500_000,
    }
    led.close()
