"""The simulator's queries: what its invariants check after a run, the delivery check's record and
the orders the coordinator sent."""

from __future__ import annotations

from collections.abc import Sequence

from coordinator.ledger.store import Ledger

# interval, seq0, seq1, e_imp0, e_exp0, e_imp1, e_exp1
SettledSpan = tuple[int, int, int, int, int, int, int]


def last_end(ledger: Ledger) -> int:
    """The end of the last stored interval (Unix s), 0 before the first."""
    row = ledger._conn.execute("SELECT max(start + length) FROM intervals").fetchone()
    return int(row[0] or 0)


def interval_starts(ledger: Ledger) -> list[int]:
    return [int(r[0]) for r in ledger._conn.execute("SELECT start FROM intervals ORDER BY start")]


def settled_spans(ledger: Ledger, board_id: str) -> list[SettledSpan]:
    """Every settled span of the board, in interval order."""
    rows = ledger._conn.execute(
        "SELECT interval, seq0, seq1, e_imp0, e_exp0, e_imp1, e_exp1 FROM board_deliveries "
        "WHERE board_id=? ORDER BY interval",
        (board_id,),
    )
    return [(int(a), int(b), int(c), int(d), int(e), int(f), int(g)) for a, b, c, d, e, f, g in rows]


def deliveries(ledger: Ledger, interval: int) -> list[tuple[str, int, int]]:
    """``(party, mWh imported, mWh exported)`` settled in ``interval``."""
    rows = ledger._conn.execute("SELECT party, e_imp, e_exp FROM deliveries WHERE interval=?", (interval,))
    return [(str(p), int(i), int(x)) for p, i, x in rows]


def posted_energy(ledger: Ledger, interval: int) -> dict[str, int]:
    """mWh per party over the interval's postings (+ received, - delivered)."""
    q = "SELECT party, sum(energy) FROM postings WHERE interval=? GROUP BY party"
    return {str(p): int(e) for p, e in ledger._conn.execute(q, (interval,))}


def trade_energy(ledger: Ledger, interval: int) -> list[tuple[str, str, int]]:
    """``(buyer, seller, mWh)`` of the interval's trades."""
    rows = ledger._conn.execute("SELECT buyer, seller, energy FROM trades WHERE interval=?", (interval,))
    return [(str(b), str(s), int(e)) for b, s, e in rows]


def account_energy(ledger: Ledger, interval: int, accounts: Sequence[str]) -> dict[str, int]:
    """mWh per account of the interval's postings, for ``accounts`` (those with postings)."""
    marks = ",".join("?" * len(accounts))
    q = f"SELECT account, sum(energy) FROM postings WHERE interval=? AND account IN ({marks}) "
    q += "GROUP BY account"
    return {str(a): int(e) for a, e in ledger._conn.execute(q, (interval, *accounts))}


def money_sum(ledger: Ledger) -> int:
    """All postings' amounts summed (nano-cent): 0 in a sound ledger."""
    return int(ledger._conn.execute("SELECT coalesce(sum(amount), 0) FROM postings").fetchone()[0])


def grid_checks(ledger: Ledger, start: int, end: int) -> tuple[int, int, int]:
    """For intervals in ``[start, end)``: how many the delivery check checked, how many broke a
    limit before redispatch (changed something or left violations) and how many after."""
    row = ledger._conn.execute(
        "SELECT count(*), coalesce(sum(changes > 0 OR violations > 0), 0), coalesce(sum(violations > 0), 0) "
        "FROM grid_checks WHERE interval >= ? AND interval < ?",
        (start, end),
    ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def redispatch_totals(ledger: Ledger, start: int, end: int) -> tuple[int, int, int]:
    """For intervals in ``[start, end)``: device changes, intervals with one, compensation paid."""
    row = ledger._conn.execute(
        "SELECT count(*), count(DISTINCT interval), coalesce(sum(compensation), 0) FROM redispatches "
        "WHERE interval >= ? AND interval < ?",
        (start, end),
    ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


def orders_sent(ledger: Ledger, interval: int) -> int:
    """How many board orders were stored for ``interval``."""
    q = "SELECT count(*) FROM board_orders WHERE interval=?"
    return int(ledger._conn.execute(q, (interval,)).fetchone()[0])


def deliveries_between(ledger: Ledger, start: int, end: int) -> list[tuple[int, str, int, int]]:
    """``(interval, party, mWh imported, mWh exported)`` settled for intervals in ``[start, end)``."""
    q = (
        "SELECT interval, party, e_imp, e_exp FROM deliveries WHERE interval>=? AND interval<? "
        "ORDER BY interval"
    )
    return [(int(t), str(p), int(i), int(x)) for t, p, i, x in ledger._conn.execute(q, (start, end))]
