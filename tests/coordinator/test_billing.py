"""Bills as a member reads them: the lines, rounded to cents, add up to the total shown, and the
CSV export's cents are the bill's; an invoice covers its whole period."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.ledger import LedgerError
from coordinator.transaction import billing
from coordinator.transaction.billing import NC_PER_CENT, Line, Statement
from coordinator.transaction.settlement import settle
from tests.coordinator.test_settlement import START, TARIFF, ledger_with_readings


def _shown(text: str) -> tuple[list[int], int]:
    """Cents of every line and of the total of a rendered statement."""
    amounts = [round(float(m) * 100) for m in re.findall(r"(-?\d+\.\d\d) CHF$", text, re.M)]
    return amounts[:-1], amounts[-1]


def test_rendered_lines_add_up_to_the_rendered_total() -> None:
    half = NC_PER_CENT // 2  # three lines of half a cent each: 1.5 cents in all
    s = Statement("alice", 0, 86_400, (Line("a", 0, half), Line("b", 0, half), Line("c", 0, half)), 1)
    lines, total = _shown(billing.render(s))
    assert total == billing.cents(s.total) == 2
    assert sum(lines) == total, (lines, total)


def test_csv_cents_add_up_to_the_total() -> None:
    s = Statement("bob", 0, 86_400, (Line("a", 1, -1_400_000_001), Line("b", 1, -1_400_000_001)), 1)
    rows = list(csv.DictReader(io.StringIO(billing.to_csv([s]))))
    assert sum(int(r["amount_nanocent"]) for r in rows) == s.total
    assert sum(int(r["amount_cents"]) for r in rows) == billing.cents(s.total) == -3


AMOUNTS = st.integers(-(10**15), 10**15) | st.integers(-3 * NC_PER_CENT, 3 * NC_PER_CENT)


@settings(max_examples=500, deadline=None)
@given(amounts=st.lists(AMOUNTS, max_size=12))
def test_line_cents_sum_to_the_total_and_stay_within_a_cent(amounts: list[int]) -> None:
    s = Statement("m", 0, 86_400, tuple(Line(f"a{k}", 0, a) for k, a in enumerate(amounts)), 0)
    got = billing.line_cents(s)
    assert sum(got) == billing.cents(s.total)
    for c, a in zip(got, amounts, strict=True):
        assert abs(c * NC_PER_CENT - a) < NC_PER_CENT  # each line is its amount rounded down or up
        if a % NC_PER_CENT == 0:
            assert c * NC_PER_CENT == a  # whole cents stay as they are
    if len(amounts) == 1:
        assert got == [billing.cents(amounts[0])]


def test_an_invoice_waits_for_the_whole_period_to_be_settled(tmp_path: Path) -> None:
    # an invoice is issued once per member and period: issued before the period's last intervals
    # are settled (the coordinator was down, or is catching up), it would leave them out for good
    led, _ = ledger_with_readings(tmp_path)
    for q in range(2):
        settle(led, START + 900 * q, 900, "pairwise", TARIFF, {}, now=START + 3600)
    early = billing.statement(led, "carol", START, START + 3600)
    with pytest.raises(LedgerError, match="not settled"):
        billing.issue(led, early, now=START + 3600)
    assert led._conn.execute("SELECT count(*) FROM invoices").fetchone()[0] == 0
    for q in range(2, 4):
        settle(led, START + 900 * q, 900, "pairwise", TARIFF, {}, now=START + 3600)
    s = billing.statement(led, "carol", START, START + 3600)
    assert s.intervals == 4 and s.total < early.total
    billing.issue(led, s, now=START + 3600)
    assert led._conn.execute("SELECT total FROM invoices").fetchall() == [(s.total,)]
    led.close()


SUB = 150 * NC_PER_CENT  # CHF 1.50 per billing period


def test_contract_subscriptions_are_billed_to_the_consumer_once_per_period(tmp_path: Path) -> None:
    # a chosen-producer contract (Vandebron / Bolt): the consumer pays its subscription once per
    # billing period in which the contract is in force, to the supplier
    from coordinator.market import Contract

    led, _ = ledger_with_readings(tmp_path)
    for q in range(4):
        settle(led, START + 900 * q, 900, "pairwise", TARIFF, {}, now=START + 3600)
    contracts = (
        Contract(
            "c-carol", "carol", "alice", START - 86_400, START + 365 * 86_400, price=9_000, subscription=SUB
        ),
        Contract("c-dave", "dave", "bob", START + 3600, START + 7200, markup=500, subscription=SUB),
        Contract("c-none", "bob", "alice", START, START + 86_400, price=9_000),
    )
    plain = billing.statement(led, "carol", START, START + 3600)
    s = billing.statement(led, "carol", START, START + 3600, contracts=contracts)
    assert s.lines == (*plain.lines, Line("contract_subscription", 0, -SUB))
    assert s.total == plain.total - SUB
    assert "Subscription" in billing.render(s)
    # dave's contract starts when the period ends; bob's has no subscription; alice is the producer
    for m in ("dave", "bob", "alice"):
        assert billing.statement(led, m, START, START + 3600, contracts=contracts) == billing.statement(
            led, m, START, START + 3600
        )
    assert billing.statement(led, "dave", START, START + 7200, contracts=contracts).lines[-1] == Line(
        "contract_subscription", 0, -SUB
    )
    led.close()


def test_bill_command_bills_the_contract_subscriptions_of_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    from coordinator.cli import main

    led, _ = ledger_with_readings(tmp_path)
    for q in range(4):
        settle(led, START + 900 * q, 900, "pairwise", TARIFF, {}, now=START + 3600)
    led.close()
    day = time.strftime("%Y-%m-%d", time.gmtime(START))
    nxt = time.strftime("%Y-%m-%d", time.gmtime(START + 86_400))
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[coordinator]\ngrid = "g1"\nledger = "l.db"\n[market]\nscheme = "bilateral"\n'
        f'[[market.contracts]]\nid = "c1"\nconsumer = "carol"\nproducer = "alice"\nstart = "{day}"\n'
        f'end = "{nxt}"\nprice = 9000\nsubscription = {SUB}\n'
    )
    assert main(["bill", "--config", str(cfg), "--from", day, "--to", nxt, "--member", "carol", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    sub = [r for r in rows if r["account"] == "contract_subscription"]
    assert [(r["amount_nanocent"], r["amount_cents"]) for r in sub] == [(str(-SUB), "-150")]
    assert main(["export", "bills", "--config", str(cfg), "--period", day, "--member", "carol"]) == 0
    assert f"contract_subscription,0,{-SUB},-150" in capsys.readouterr().out
