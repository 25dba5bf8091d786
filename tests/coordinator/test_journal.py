"""The journal: posting numbers per source, allocated inside the caller's transaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.ledger import Ledger, journal
from coordinator.ledger.journal import JournalError, Posting


def pair(party: str, amount: int, account: str = journal.FLEXIBILITY) -> list[Posting]:
    return [Posting(party, account, amount, 0, "m"), Posting("dso", account, -amount, 0, "m")]


def numbers(led: Ledger, interval: int) -> list[int]:
    return [
        n for (n,) in led._conn.execute("SELECT n FROM postings WHERE interval=? ORDER BY n", (interval,))
    ]


def test_each_source_numbers_from_its_base(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as led, led.transaction() as tx:
        got = {
            s: journal.post(tx, 900, s, pair("a", 5, journal.REDISPATCH_COMPENSATION))
            for s in journal.SOURCES
        }
    assert got[journal.SCHEDULE] == range(0, 2)
    assert got[journal.IMBALANCE] == range(10_000_000, 10_000_002)
    assert got[journal.MARKET] == range(20_000_000, 20_000_002)
    assert got[journal.RECONCILE] == range(30_000_000, 30_000_002)
    assert got[journal.FLEX] == range(40_000_000, 40_000_002)
    assert got[journal.REDISPATCH] == range(50_000_000, 50_000_002)
    assert all(journal.source_of(n) == s for s, r in got.items() for n in r)


def test_two_posts_in_one_interval_do_not_collide(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as led:
        with led.transaction() as tx:
            a = journal.post(tx, 900, journal.REDISPATCH, pair("a", 5, journal.REDISPATCH_COMPENSATION))
            b = journal.post(tx, 900, journal.REDISPATCH, pair("b", 7, journal.REDISPATCH_COMPENSATION))
        with led.transaction() as tx:  # a later transaction continues the range
            c = journal.post(tx, 900, journal.REDISPATCH, pair("c", 1, journal.REDISPATCH_COMPENSATION))
            d = journal.post(tx, 1800, journal.REDISPATCH, pair("d", 1, journal.REDISPATCH_COMPENSATION))
        assert (a, b, c, d) == (
            range(50_000_000, 50_000_002),
            range(50_000_002, 50_000_004),
            range(50_000_004, 50_000_006),
            range(50_000_000, 50_000_002),
        )
        assert numbers(led, 900) == list(range(50_000_000, 50_000_006))


def test_a_failed_transaction_allocates_nothing(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as led:
        with pytest.raises(RuntimeError), led.transaction() as tx:
            journal.post(tx, 900, journal.FLEX, pair("a", 5))
            raise RuntimeError("rolled back")
        assert numbers(led, 900) == []
        with led.transaction() as tx:
            assert journal.post(tx, 900, journal.FLEX, pair("a", 5)) == range(40_000_000, 40_000_002)
        assert numbers(led, 900) == [40_000_000, 40_000_001]


def test_post_refuses_bad_rows_and_writes_nothing(tmp_path: Path) -> None:
    with Ledger.open(tmp_path / "l.db") as led:
        with pytest.raises(JournalError, match="no account 'bogus'"), led.transaction() as tx:
            journal.post(
                tx, 900, journal.FLEX, [Posting("a", journal.FLEXIBILITY, 1), Posting("b", "bogus", -1)]
            )
        with pytest.raises(JournalError, match="amount must be an integer"), led.transaction() as tx:
            journal.post(tx, 900, journal.FLEX, [Posting("a", journal.FLEXIBILITY, 1.5)])  # type: ignore[arg-type]
        with pytest.raises(JournalError, match="no posting source 'nope'"), led.transaction() as tx:
            journal.post(tx, 900, "nope", pair("a", 1))
        with pytest.raises(JournalError, match="outside a transaction"):
            journal.post(led._conn, 900, journal.FLEX, pair("a", 1))
        assert numbers(led, 900) == []


def test_accounts_by_kind() -> None:
    assert journal.bought(journal.LOCAL) == "energy_bought_local"
    assert journal.sold(journal.IMBALANCE_KIND) == "energy_sold_imbalance"
    assert journal.REDISPATCH_COMPENSATION == "redispatch_compensation"
    with pytest.raises(JournalError, match="no kind of trade 'x'"):
        journal.bought("x")
