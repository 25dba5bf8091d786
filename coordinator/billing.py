"""Bills: a member's postings over a period, summed per account, plus fixed charges.

Amounts are nano-cent in the ledger (mWh x mc/kWh) and are shown in currency units with the
remainder kept exact until the final rounding to cents. The total is rounded half away from zero;
each line is rounded once, down or up, the lines with the largest remainders up first, so that
the lines a member reads add up to the total (``line_cents``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from coordinator.ledger import Ledger, LedgerError
from coordinator.market import Contract, subscription_charges

NC_PER_CENT = 1_000_000_000  # nano-cent in a cent
ACCOUNTS = {
    "energy_bought_local": "Energy bought from community members",
    "energy_sold_local": "Energy sold to community members",
    "energy_bought_supplier": "Energy bought from the supplier",
    "energy_sold_supplier": "Energy sold to the supplier (feed-in)",
    "energy_bought_imbalance": "Imbalance bought from the supplier",
    "energy_sold_imbalance": "Imbalance sold to the supplier",
    "grid_fee": "Grid fees received",
    "flexibility": "Flexibility delivered to the grid operator",
    "redispatch_compensation": "Compensation for export limited by the grid operator",
    "reconciliation_import": "Utility meter reconciliation (losses)",
    "reconciliation_export": "Utility meter reconciliation (feed-in)",
    "fixed": "Fixed charge",
    "subscription": "Subscription",
    "contract_subscription": "Subscription of the chosen-producer contract",
}


@dataclass(frozen=True)
class Line:
    account: str
    energy: int  # mWh (+ received, - delivered)
    amount: int  # nano-cent (+ credit, - debit)


@dataclass(frozen=True)
class Statement:
    member: str
    start: int
    end: int
    lines: tuple[Line, ...]
    intervals: int

    @property
    def total(self) -> int:
        return sum(x.amount for x in self.lines)


def cents(nc: int) -> int:
    """Round nano-cent to whole cents, half away from zero."""
    q, r = divmod(abs(nc), NC_PER_CENT)
    if 2 * r >= NC_PER_CENT:
        q += 1
    return q if nc >= 0 else -q


def line_cents(s: Statement) -> list[int]:
    """Each line of ``s`` in whole cents, adding up to ``cents(s.total)`` exactly.

    Every line is its amount rounded down or up (a whole-cent amount stays as it is); the cents
    the floors leave short of the rounded total go one each to the largest remainders (on a tie, the
    earlier line). A statement of one line gets ``cents`` of it.
    """
    floors = [x.amount // NC_PER_CENT for x in s.lines]
    short = cents(s.total) - sum(floors)  # 0 <= short <= number of lines with a remainder
    order = sorted(range(len(floors)), key=lambda k: (-(s.lines[k].amount % NC_PER_CENT), k))
    for k in order[:short]:
        floors[k] += 1
    return floors


def subscription_per_day(member: dict[str, Any] | None) -> int:
    """The subscription fee (nano-cent per day) of a member record from ``Ledger.members()``; 0
    without one (or for no record)."""
    return int(member["prefs"].get("subscription_per_day", 0)) if member else 0


def contract_subscriptions(contracts: Iterable[Contract], member: str, start: int, end: int) -> int:
    """What ``member`` owes for the subscriptions of its chosen-producer contracts (as consumer)
    in force during ``[start, end)``: each contract's ``subscription`` once per billing period
    (``market.subscription_charges``), nano-cent."""
    mine = [c for c in contracts if c.consumer == member]
    if not mine or start >= end:
        return 0
    return sum(c.amount for c in subscription_charges(mine, start, end))


def statement(
    ledger: Ledger,
    member: str,
    start: int,
    end: int,
    *,
    fixed_per_day: int = 0,
    subscription_per_day: int = 0,
    contracts: Iterable[Contract] = (),
) -> Statement:
    """Postings of ``member`` for intervals starting in ``[start, end)``, plus the fixed charge,
    the member's subscription (nano-cent per started day of the period, paid to the supplier) and
    the subscriptions of its chosen-producer contracts (``[[market.contracts]]``: each once per
    billing period in which it is in force, ``contract_subscription``)."""
    rows = ledger.conn.execute(
        "SELECT account, sum(energy), sum(amount) FROM postings WHERE party=? AND interval>=? AND interval<? "
        "GROUP BY account ORDER BY account",
        (member, start, end),
    ).fetchall()
    n = ledger.conn.execute(
        "SELECT count(DISTINCT interval) FROM postings WHERE party=? AND interval>=? AND interval<?",
        (member, start, end),
    ).fetchone()[0]
    lines = [Line(a, int(e), int(m)) for a, e, m in rows]
    days = -(-(end - start) // 86_400)
    if fixed_per_day:
        lines.append(Line("fixed", 0, -fixed_per_day * days))
    if subscription_per_day:
        lines.append(Line("subscription", 0, -subscription_per_day * days))
    owed = contract_subscriptions(contracts, member, start, end)
    if owed:
        lines.append(Line("contract_subscription", 0, -owed))
    return Statement(member, start, end, tuple(lines), int(n))


def issue(ledger: Ledger, s: Statement, *, now: int) -> str:
    """Record the statement as an invoice (once per member and period); returns the period key.

    Refused while the intervals up to the period's end are not all settled: the invoice would leave
    the rest out for good (intervals are settled in order, so the last settled end tells)."""
    import sqlite3
    import time

    period = (
        time.strftime("%Y-%m-%d", time.gmtime(s.start)) + ".." + time.strftime("%Y-%m-%d", time.gmtime(s.end))
    )
    settled = ledger.conn.execute(
        "SELECT max(start + length) FROM intervals WHERE state='settled'"
    ).fetchone()
    if settled[0] is None or settled[0] < s.end:
        upto = (
            "nothing"
            if settled[0] is None
            else f"up to {time.strftime('%Y-%m-%d %H:%M', time.gmtime(settled[0]))} UTC"
        )
        raise LedgerError(
            f"cannot issue an invoice for {s.member} over {period}: the period is not settled to its end "
            f"yet (settled {upto})"
        )
    try:
        with ledger.transaction() as tx:
            tx.execute("INSERT INTO invoices VALUES (?,?,?,?)", (s.member, period, s.total, now))
    except sqlite3.IntegrityError:
        raise LedgerError(f"an invoice for {s.member} over {period} was already issued") from None
    return period


def render(s: Statement, currency: str = "CHF") -> str:
    """A statement a member can read."""
    import time

    def day(t: int) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(t))

    out = [
        f"peergrid statement for {s.member}",
        f"period {day(s.start)} to {day(s.end)}, {s.intervals} intervals",
        "",
    ]
    for x, c in zip(s.lines, line_cents(s), strict=True):
        label = ACCOUNTS.get(x.account, x.account)
        kwh = f"{abs(x.energy) / 1e6:10.3f} kWh" if x.energy else " " * 14
        out.append(f"{label:<42} {kwh} {c / 100:>12.2f} {currency}")
    out.append("")
    out.append(f"{'Total (+ credit, - to pay)':<42} {'':>14} {cents(s.total) / 100:>12.2f} {currency}")
    return "\n".join(out) + "\n"


def to_csv(statements: list[Statement]) -> str:
    """One row per member and account; amounts in nano-cent (exact) and in cents (rounded as on the
    bill: a member's cents add up to its total)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        ["member", "period_start", "period_end", "account", "energy_mwh", "amount_nanocent", "amount_cents"]
    )
    for s in statements:
        for x, c in zip(s.lines, line_cents(s), strict=True):
            w.writerow([s.member, s.start, s.end, x.account, x.energy, x.amount, c])
    return buf.getvalue()
