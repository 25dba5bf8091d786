"""Reconciliation with the utility meter: the difference is apportioned pro rata, priced at
retail / feed-in, posted against the supplier (money still sums to zero) and shown on the bill."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.cli import main
from coordinator.ledger import Ledger
from coordinator.market import SUPPLIER
from coordinator.transaction import billing, reconcile
from coordinator.transaction.reconcile import ReconcileError
from coordinator.transaction.settlement import settle
from tests.coordinator.test_settlement import START, TARIFF, ledger_with_readings


def settled(tmp: Path) -> Ledger:
    led, _ = ledger_with_readings(tmp)
    for q in range(4):
        settle(led, START + 900 * q, 900, "pairwise", TARIFF, {}, now=START + 3600)
    return led


def test_losses_apportioned_and_billed(tmp_path: Path) -> None:
    led = settled(tmp_path)
    q = "SELECT coalesce(sum(energy), 0) FROM trades WHERE {}=?"
    sold = led._conn.execute(q.format("seller"), (SUPPLIER,)).fetchone()[0]
    bought = led._conn.execute(q.format("buyer"), (SUPPLIER,)).fetchone()[0]
    assert bought > 0
    # the utility meter saw 150 Wh more import than settled (losses) and 1 % less export
    rows = reconcile.parse_csv(
        f"period_start,period_end,import_wh,export_wh\n"
        f"{START},{START + 3600},{sold // 1000 + 150},{bought * 99 // 100 // 1000}\n"
    )
    reconcile.store(led, rows)
    r = reconcile.reconcile(led, START, TARIFF)
    assert r.diff_imp > 0 and sum(r.shares_imp.values()) == r.diff_imp
    assert r.diff_exp > 0 and sum(r.shares_exp.values()) == r.diff_exp
    drew = dict(led._conn.execute("SELECT party, sum(e_imp) FROM deliveries GROUP BY party").fetchall())
    big, small = sorted((p for p in r.shares_imp), key=lambda p: -drew[p])[:2]
    assert r.shares_imp[big] >= r.shares_imp[small]  # pro rata to what each drew
    total = led._conn.execute("SELECT sum(amount) FROM postings").fetchone()[0]
    assert total == 0
    carol = billing.statement(led, "carol", START, START + 3601)
    assert "Utility meter reconciliation (losses)" in billing.render(carol)
    with pytest.raises(ReconcileError, match="already reconciled"):
        reconcile.reconcile(led, START, TARIFF)
    with pytest.raises(ReconcileError, match="overlaps"):
        reconcile.store(led, [(START + 1800, START + 7200, 0, 0)])
    led.close()


@pytest.mark.parametrize(
    ("text", "message"),
    [("1,2,3\n", "expected period_start"), ("5,4,1,1\n", "must end after"), ("1,2,-1,0\n", ">= 0")],
)
def test_bad_csv(text: str, message: str) -> None:
    with pytest.raises(ReconcileError, match=message):
        reconcile.parse_csv(text)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settled(tmp_path).close()
    cfg = tmp_path / "c.toml"
    cfg.write_text('[coordinator]\ngrid = "g1"\nledger = "l.db"\n')
    csv = tmp_path / "u.csv"
    csv.write_text(f"{START},{START + 3600},5000,1000\n")
    assert main(["reconcile", "--config", str(cfg), "--file", str(csv)]) == 0
    assert "utility import 5.000 kWh" in capsys.readouterr().out
    assert main(["reconcile", "--config", str(cfg), "--file", str(csv)]) == 2  # stored already
    assert "overlaps" in capsys.readouterr().err
    assert main(["ledger", "verify", "--config", str(cfg)]) == 0


def test_a_period_reconciles_after_later_intervals_are_settled(tmp_path: Path) -> None:
    # the utility's data for a period arrives days later: by then the intervals after the period
    # are settled too, and they must not count as straddling its end
    led, _ = ledger_with_readings(tmp_path, hours=2)
    for q in range(8):
        settle(led, START + 900 * q, 900, "pairwise", TARIFF, {}, now=START + 7200)
    sold = led._conn.execute(
        "SELECT coalesce(sum(energy), 0) FROM trades WHERE seller=? AND interval<?", (SUPPLIER, START + 3600)
    ).fetchone()[0]
    reconcile.store(led, [(START, START + 3600, sold + 150_000, 0)])
    r = reconcile.reconcile(led, START, TARIFF)
    assert r.settled_imp == sold and r.diff_imp == 150_000
    assert sum(r.shares_imp.values()) == 150_000
    assert led._conn.execute("SELECT sum(amount) FROM postings").fetchone()[0] == 0
    led.close()


def test_a_period_not_fully_settled_is_refused(tmp_path: Path) -> None:
    # reconciling before settlement caught up would bill the unsettled energy as losses, and the
    # settlement would then bill it a second time
    led, _ = ledger_with_readings(tmp_path, hours=2)
    for q in range(4):
        settle(led, START + 900 * q, 900, "pairwise", TARIFF, {}, now=START + 7200)
    reconcile.store(led, [(START, START + 7200, 10_000_000, 0), (START - 3600, START, 1_000_000, 0)])
    with pytest.raises(ReconcileError, match="not settled"):
        reconcile.reconcile(led, START, TARIFF)
    with pytest.raises(ReconcileError, match="not settled"):  # before the first settled interval
        reconcile.reconcile(led, START - 3600, TARIFF)
    assert led._conn.execute("SELECT count(*) FROM postings WHERE account LIKE 'reconc%'").fetchone()[0] == 0
    led.close()


def test_a_period_starting_inside_an_interval_is_refused(tmp_path: Path) -> None:
    led = settled(tmp_path)
    reconcile.store(led, [(START + 300, START + 1800, 1_000_000, 0)])
    with pytest.raises(ReconcileError, match="straddles the start"):
        reconcile.reconcile(led, START + 300, TARIFF)
    led.close()


def test_both_adjustments_carry_their_energy_on_the_bill(tmp_path: Path) -> None:
    # the export adjustment is energy too (fed in less than credited): its bill line shows the kWh,
    # as the import adjustment's does, with the supplier's opposite entry
    led = settled(tmp_path)
    q = "SELECT coalesce(sum(energy), 0) FROM trades WHERE {}=?"
    sold = led._conn.execute(q.format("seller"), (SUPPLIER,)).fetchone()[0]
    bought = led._conn.execute(q.format("buyer"), (SUPPLIER,)).fetchone()[0]
    reconcile.store(led, [(START, START + 3600, sold + 150_000, bought - 40_000)])
    r = reconcile.reconcile(led, START, TARIFF)
    assert r.diff_exp == 40_000 and r.shares_exp
    for account, shares, price in (
        ("reconciliation_import", r.shares_imp, TARIFF.retail),
        ("reconciliation_export", r.shares_exp, TARIFF.feed_in),
    ):
        for party, e in shares.items():
            line = {x.account: x for x in billing.statement(led, party, START, START + 3601).lines}[account]
            assert (line.energy, line.amount) == (e, -e * price), (party, account)
        sup = {x.account: x for x in billing.statement(led, SUPPLIER, START, START + 3601).lines}[account]
        assert sup.energy == -sum(shares.values())
    exporter = max(r.shares_exp, key=lambda p: r.shares_exp[p])
    text = billing.render(billing.statement(led, exporter, START, START + 3601))
    line = next(x for x in text.splitlines() if x.startswith("Utility meter reconciliation (feed-in)"))
    assert f"{r.shares_exp[exporter] / 1e6:.3f} kWh" in line
    led.close()


def test_reconciliation_lands_on_the_periods_own_bill(tmp_path: Path) -> None:
    # dated at the period's last interval: the statement of exactly the period carries it, the
    # next period's does not
    led = settled(tmp_path)
    bought = led._conn.execute("SELECT sum(energy) FROM trades WHERE buyer=?", (SUPPLIER,)).fetchone()[0]
    reconcile.store(led, [(START, START + 3600, 0, bought - 40_000)])
    r = reconcile.reconcile(led, START, TARIFF)
    assert r.shares_exp
    for party, e in r.shares_exp.items():
        lines = {x.account: x for x in billing.statement(led, party, START, START + 3600).lines}
        assert lines["reconciliation_export"].energy == e
        after = {x.account for x in billing.statement(led, party, START + 3600, START + 7200).lines}
        assert "reconciliation_export" not in after
    (n,) = led._conn.execute("SELECT DISTINCT interval FROM postings WHERE account LIKE 'reconc%'").fetchall()
    assert n == (START + 2700,)
    led.close()


def test_a_battery_schedule_undone_by_imbalance_is_not_counted_twice(tmp_path: Path) -> None:
    # the battery was scheduled to buy 750 Wh from the supplier and never charged: its imbalance
    # sells them back in the same interval. Nothing crossed the connection for it: the settled
    # exchange is the neighbour's import alone, and a utility meter that saw exactly that posts no
    # losses
    from coordinator.ledger.queries import dispatch as dq
    from protocol import crypto, frame, messages, topics
    from sim.board import VirtualBoard
    from tests.coordinator.readings import store

    coord = crypto.SigningKey(bytes(range(32)))
    led = Ledger.open(tmp_path / "l.db")
    led.add_member("bat", "Battery", "storage", now=START, feeder="f1")
    led.add_member("load", "Load", "consumer", now=START, feeder="f1")
    bat = VirtualBoard("g1", "m-bat", bytes([1]) * 32, lambda t: 0, bat_soc=400, bat_p=0)
    load = VirtualBoard("g1", "m-load", bytes([2]) * 32, lambda t: 2_000)
    for b, m in ((bat, "bat"), (load, "load")):
        led.add_board(b.board, "virtual", b.key.public, now=START, member_id=m, status="active")
    order = messages.Order(
        board="m-bat", oseq=1, interval=START, valid_from=START, valid_until=START + 900, bat_w=3_000,
        ev_ma=None, pv_limit_w=None, relay_mask=0, relay_state=0,
    )  # fmt: skip
    with led.transaction() as tx:
        dq.add_schedule(tx, START, [("bat", SUPPLIER, 750_000, TARIFF.retail, TARIFF.grid_fee)])
        dq.add_orders(
            tx, START, [("m-bat", 1, frame.seal(order, topics.board_topic("g1", "m-bat", "order"), coord))]
        )
    store(led, [bat, load], range(START, START + 901, 300))
    settle(led, START, 900, "pairwise", TARIFF, {}, now=START + 960)
    imb = led._conn.execute(
        "SELECT energy FROM trades WHERE buyer=? AND seller='bat'", (SUPPLIER,)
    ).fetchall()
    assert imb == [(750_000,)]  # the schedule undone
    reconcile.store(led, [(START, START + 900, 500_000 // 1000 * 1000, 0)])
    r = reconcile.reconcile(led, START, TARIFF)
    assert (r.settled_imp, r.settled_exp) == (500_000, 0)
    assert r.diff_imp == r.diff_exp == 0 and r.members == 0
    assert led._conn.execute("SELECT count(*) FROM postings WHERE account LIKE 'reconc%'").fetchone() == (0,)
    led.close()


def test_a_member_who_drew_and_fed_in_is_counted_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sim.board import VirtualBoard
    from tests.coordinator.readings import store

    led = Ledger.open(tmp_path / "l.db")
    for i, (m, prof) in enumerate(
        (
            ("eve", lambda t: 1_000 if (t // 900) % 2 else -1_000),
            ("dan", lambda t: 500),
            ("sol", lambda t: -700),
        )
    ):
        led.add_member(m, m, "prosumer", now=START, feeder="f1")
        b = VirtualBoard("g1", f"b-{m}", bytes([i + 1]) * 32, prof)
        led.add_board(b.board, "virtual", b.key.public, now=START, member_id=m, status="active")
        store(led, [b], range(START, START + 1801, 300))
    for q in range(2):
        settle(led, START + 900 * q, 900, "pairwise", TARIFF, {}, now=START + 1900)
    led.close()
    cfg = tmp_path / "c.toml"
    cfg.write_text('[coordinator]\ngrid = "g1"\nledger = "l.db"\n')
    csv = tmp_path / "u.csv"
    csv.write_text(f"{START},{START + 1800},900,100\n")  # more import, less export than settled
    assert main(["reconcile", "--config", str(cfg), "--file", str(csv)]) == 0
    out = capsys.readouterr().out
    with Ledger.open(tmp_path / "l.db") as led:
        parties = {p for (p,) in led._conn.execute("SELECT party FROM postings WHERE account LIKE 'reconc%'")}
    parties.discard(SUPPLIER)
    assert "eve" in parties and f"apportioned to {len(parties)} members" in out, out
