"""Settlement on measured energy: register differences telescope (no mWh lost or counted twice),
money sums to zero in every interval and across bills, and an interval settles once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from coordinator.ledger import Ledger, LedgerError, journal
from coordinator.market import DSO, SUPPLIER, Preferences, Tariff
from coordinator.transaction import billing
from coordinator.transaction.settlement import measure, settle
from sim.board import VirtualBoard
from tests.coordinator.readings import store

START = 1_750_000_000 - 1_750_000_000 % 900
TARIFF = Tariff(feed_in=4_000, retail=20_750, grid_fee=6_000, grid_fee_local=3_000)
PROFILES = {  # W: + import, - export
    "alice": lambda t: -2500 + (t % 300),  # PV surplus
    "bob": lambda t: -800,
    "carol": lambda t: 1200 + (t % 500),
    "dave": lambda t: 600,
}


def ledger_with_readings(tmp: Path, hours: int = 1, step: int = 60) -> tuple[Ledger, dict[str, VirtualBoard]]:
    led = Ledger.open(tmp / "l.db")
    boards = {}
    for i, (m, prof) in enumerate(PROFILES.items()):
        led.add_member(m, m.title(), "prosumer", now=START, feeder="f1" if i < 3 else "f2")
        b = VirtualBoard("g1", f"b-{m}", bytes([i + 1]) * 32, prof)
        led.add_board(b.board, "virtual", b.key.public, now=START, member_id=m, status="active")
        boards[m] = b
    store(led, boards.values(), range(START, START + hours * 3600 + 1, step))
    return led, boards


@pytest.mark.parametrize("scheme", ["pairwise", "uniform", "pay_as_bid"])
def test_settled_energy_telescopes_and_money_sums_to_zero(tmp_path: Path, scheme: str) -> None:
    led, boards = ledger_with_readings(tmp_path)
    prefs = {
        "carol": Preferences("carol", feeder="f1", max_buy=18_000),
        "alice": Preferences("alice", feeder="f1"),
    }
    total = {m: [0, 0] for m in PROFILES}
    for q in range(4):
        c = settle(led, START + 900 * q, 900, scheme, TARIFF, prefs, now=START + 3600)
        assert c.traded > 0  # alice and bob export while carol and dave import
        assert journal.interval_total(led, START + 900 * q) == 0
        for m, imp, exp in led._conn.execute(
            "SELECT party, e_imp, e_exp FROM deliveries WHERE interval=?", (START + 900 * q,)
        ):
            total[m][0] += imp
            total[m][1] += exp
    for m, b in boards.items():  # the hour's settled energy is the registers' advance, to the mWh
        r0 = led.register_at(b.board, START)
        r1 = led.register_at(b.board, START + 3600)
        assert r0 is not None and r1 is not None
        assert total[m] == [r1.e_imp - r0.e_imp, r1.e_exp - r0.e_exp]
    with pytest.raises(LedgerError, match="already settled"):
        settle(led, START, 900, scheme, TARIFF, prefs, now=START + 3600)
    bills = [billing.statement(led, p, START, START + 3600) for p in [*PROFILES, SUPPLIER, DSO]]
    assert sum(s.total for s in bills) == 0
    carol = billing.statement(led, "carol", START, START + 3600)
    assert carol.total < 0 and carol.intervals == 4
    text = billing.render(carol)
    assert "Energy bought from community members" in text and "Total" in text
    csv_text = billing.to_csv(bills)
    assert csv_text.splitlines()[0].startswith("member,period_start")
    # individual rationality: carol never paid more than her limit for local energy
    for buyer, price in led._conn.execute("SELECT buyer, price FROM trades WHERE seller != ?", (SUPPLIER,)):
        if buyer == "carol":
            assert price <= 18_000
    led.close()


def test_missing_boundary_reading_is_reported_not_guessed(tmp_path: Path) -> None:
    led, _ = ledger_with_readings(tmp_path)
    m, ends = measure(led, START - 900, START)
    assert all(x.missing and x.boards == 0 for x in m.values()) and not ends
    led.close()


def test_cents_rounding() -> None:
    assert billing.cents(1_499_999_999) == 1 and billing.cents(1_500_000_000) == 2
    assert billing.cents(-1_500_000_000) == -2


def test_late_readings_count_in_the_next_interval(tmp_path: Path) -> None:
    led = Ledger.open(tmp_path / "l.db")
    led.add_member("alice", "Alice", "prosumer", now=START)
    led.add_member("carol", "Carol", "consumer", now=START)
    boards = {
        m: VirtualBoard("g1", f"b-{m}", bytes([i + 1]) * 32, PROFILES[m])
        for i, m in enumerate(("alice", "carol"))
    }
    for m, b in boards.items():
        led.add_board(b.board, "virtual", b.key.public, now=START, member_id=m, status="active")

    store(led, [boards["alice"]], range(START, START + 901, 60))
    store(led, [boards["carol"]], range(START, START + 400, 60))  # carol's board is offline from START+360
    settle(led, START, 900, "pairwise", TARIFF, {}, now=START + 960)
    store(
        led, [boards["carol"]], range(START + 420, START + 1801, 60)
    )  # ... and replays its spool afterwards
    store(led, [boards["alice"]], range(START + 960, START + 1801, 60))
    settle(led, START + 900, 900, "pairwise", TARIFF, {}, now=START + 1860)
    got = dict(led._conn.execute("SELECT party, sum(e_imp) FROM deliveries GROUP BY party").fetchall())
    r0 = led.register_at("b-carol", START)
    r1 = led.register_at("b-carol", START + 1800)
    assert r0 is not None and r1 is not None
    assert got["carol"] == r1.e_imp - r0.e_imp  # nothing lost: the late part moved to interval 2
    first = led._conn.execute("SELECT e_imp FROM deliveries WHERE party='carol' ORDER BY interval").fetchall()
    assert first[0][0] < first[1][0]
    led.close()


def test_self_consumption_and_bilateral_settle_through_the_same_path(tmp_path: Path) -> None:
    from coordinator.market import Contract, Sharing

    for scheme, opts in (
        (
            "self_consumption",
            {"sharing": Sharing(keys={"carol": 6000, "dave": 4000}, community_price=12_000)},
        ),
        (
            "bilateral",
            {
                "contracts": [Contract("c1", "carol", "alice", START - 86_400, START + 86_400, price=12_000)],
                "wholesale": {},
            },
        ),
    ):
        d = tmp_path / scheme
        d.mkdir()
        led, _ = ledger_with_readings(d)
        for q in range(4):
            c = settle(led, START + 900 * q, 900, scheme, TARIFF, {}, now=START + 3600, **opts)  # type: ignore[arg-type]
            assert c.traded > 0, scheme
            assert journal.interval_total(led, START + 900 * q) == 0
        led.close()


def test_another_settlement_cannot_slip_in_between_the_check_and_the_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two coordinators settling the same interval: the second cannot write while the first is
    between its "already settled?" check and its records, and then finds the interval settled."""
    from coordinator.transaction import settlement

    led, _ = ledger_with_readings(tmp_path)
    other = Ledger.open(led.path)
    other._conn.execute("PRAGMA busy_timeout=0")  # refused at once rather than after a wait
    real = settlement.measure
    refused: list[str] = []

    def measure_while_another_settles(ledger: Ledger, start: int, end: int) -> tuple[object, ...]:
        if not refused:  # the first settlement has checked the interval and is measuring it
            refused.append("trying")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                settle(other, START, 900, "pairwise", TARIFF, {}, now=START + 3600)
            refused[0] = "refused"
        return real(ledger, start, end)

    monkeypatch.setattr(settlement, "measure", measure_while_another_settles)
    settle(led, START, 900, "pairwise", TARIFF, {}, now=START + 3600)
    assert refused == ["refused"]
    with pytest.raises(LedgerError, match="already settled"):
        settle(other, START, 900, "pairwise", TARIFF, {}, now=START + 3600)
    assert led._conn.execute("SELECT count(*) FROM intervals").fetchone() == (1,)
    other.close()
    led.close()


def test_settlement_postings_keep_their_numbers_and_a_failed_seal_leaves_nothing(tmp_path: Path) -> None:
    led, _ = ledger_with_readings(tmp_path)

    def broken_seal(c: object) -> bytes:
        raise RuntimeError("no key")

    with pytest.raises(RuntimeError, match="no key"):
        settle(led, START, 900, "pairwise", TARIFF, {}, now=START + 3600, seal=broken_seal)
    assert led._conn.execute("SELECT count(*) FROM postings").fetchone() == (0,)
    assert led._conn.execute("SELECT count(*) FROM intervals").fetchone() == (0,)
    settle(led, START, 900, "pairwise", TARIFF, {}, now=START + 3600, seal=lambda c: b"result")
    ns = [n for (n,) in led._conn.execute("SELECT n FROM postings WHERE interval=? ORDER BY n", (START,))]
    # no schedules or imbalance here: the market's postings, numbered from its base as ever
    assert ns == list(range(20_000_000, 20_000_000 + len(ns))) and len(ns) > 0
    assert led._conn.execute("SELECT result_frame FROM intervals").fetchone() == (b"result",)
    led.close()
