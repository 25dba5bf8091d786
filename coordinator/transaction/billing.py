"""Bills: a member's postings over a period, summed per account, plus fixed charges.

Amounts are nano-cent in the ledger (mWh x mc/kWh) and are shown in currency units with the
remainder kept exact until the final rounding to cents. The total is rounded half away from zero;
each line is rounded once, down or up, the lines with the largest remainders up first, so that
the lines a member reads add up to the total (``line_cents``).

Periods are days of the community's billing time zone (``[billing] timezone``, UTC by default): a
local day starts at local midnight, so it lasts 23 or 25 hours across a daylight-saving change.
Fixed charges and subscriptions are charged per started local day of the member's membership
within the period (``fee_days``). See docs/billing.md.
"""

from __future__ import annotations

import csv
import datetime
import io
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass

from coordinator.errors import CoordinatorError
from coordinator.ledger import Ledger, LedgerError, journal
from coordinator.ledger.queries import billing as q
from coordinator.market import Contract, subscription_charges
from coordinator.members import Member

NC_PER_CENT = 1_000_000_000  # nano-cent in a cent
ACCOUNTS = {
    journal.ENERGY_BOUGHT_LOCAL: "Energy bought from community members",
    journal.ENERGY_SOLD_LOCAL: "Energy sold to community members",
    journal.ENERGY_BOUGHT_SUPPLIER: "Energy bought from the supplier",
    journal.ENERGY_SOLD_SUPPLIER: "Energy sold to the supplier (feed-in)",
    journal.ENERGY_BOUGHT_IMBALANCE: "Imbalance bought from the supplier",
    journal.ENERGY_SOLD_IMBALANCE: "Imbalance sold to the supplier",
    journal.GRID_FEE: "Grid fees received",
    journal.FLEXIBILITY: "Flexibility delivered to the grid operator",
    journal.REDISPATCH_COMPENSATION: "Compensation for export limited by the grid operator",
    journal.RECONCILIATION_IMPORT: "Utility meter reconciliation (losses)",
    journal.RECONCILIATION_EXPORT: "Utility meter reconciliation (feed-in)",
    journal.FIXED: "Fixed charge",
    journal.SUBSCRIPTION: "Subscription",
    journal.CONTRACT_SUBSCRIPTION: "Subscription of the chosen-producer contract",
}
PER_DAY = (journal.FIXED, journal.SUBSCRIPTION)  # charged per day of membership (``fee_days``)


UTC = "UTC"
QUARTER_HOUR = 900
ZONE_CHECK_YEARS = (2000, 2100)  # check_zone: the offsets a zone has in these years


class BillingError(CoordinatorError):
    """A billing time zone that does not exist or whose local days are not whole intervals."""


def zone(name: str) -> datetime.tzinfo:
    """The time zone called ``name`` (IANA, e.g. ``Europe/Zurich``); ``UTC`` needs no time zone
    database."""
    if name == UTC:
        return datetime.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise BillingError(
            f"no time zone {name!r} (an IANA name such as 'Europe/Zurich'; without a system time zone "
            "database, pip install tzdata)"
        ) from None


def check_zone(name: str, interval_s: int = QUARTER_HOUR) -> None:
    """Refuse a zone whose local midnight is not always an interval boundary: intervals are
    UTC-aligned, so a local day is whole intervals only while the zone's offset from UTC is a
    multiple of the interval (a whole quarter hour for 15-minute intervals). Offsets are looked at
    weekly over ``ZONE_CHECK_YEARS``; ``day_start`` checks every day it converts as well."""
    tz = zone(name)
    day = datetime.datetime(ZONE_CHECK_YEARS[0], 1, 1)
    last = datetime.datetime(ZONE_CHECK_YEARS[1], 1, 1)
    while day < last:
        off = tz.utcoffset(day)
        if off is not None and off.total_seconds() % interval_s:
            raise BillingError(
                f"{name!r} is {_hhmm(off)} from UTC on {day.date()}: its local midnight is not an "
                f"interval boundary ({interval_s} s intervals, UTC-aligned); bills are made of whole "
                "intervals, so only zones whose offset is a multiple of the interval can be used"
            )
        day += datetime.timedelta(days=7)


def _hhmm(off: datetime.timedelta) -> str:
    s = int(off.total_seconds())
    sign, s = ("-", -s) if s < 0 else ("+", s)
    return f"{sign}{s // 3600:02d}:{s % 3600 // 60:02d}" + (f":{s % 60:02d}" if s % 60 else "")


def day_start(day: datetime.date, zone_name: str = UTC) -> int:
    """The instant (Unix s) the local calendar ``day`` starts in ``zone_name``: its local midnight,
    or the first instant of the day when a daylight-saving change skips midnight. Refused when it
    is not a whole quarter hour (a zone or an era with an odd offset)."""
    try:
        t = datetime.datetime(day.year, day.month, day.day, tzinfo=zone(zone_name)).timestamp()
    except (OverflowError, ValueError):
        raise BillingError(f"day {day} is out of range") from None
    if t % QUARTER_HOUR:
        raise BillingError(
            f"the day {day} starts at {datetime.datetime.fromtimestamp(t, datetime.UTC):%H:%M:%S} UTC in "
            f"{zone_name}, not on a quarter hour: its intervals are not whole"
        )
    return int(t)


def local_day(t: int, zone_name: str = UTC) -> datetime.date:
    """The local calendar day in ``zone_name`` that the instant ``t`` (Unix s) falls in."""
    return datetime.datetime.fromtimestamp(t, zone(zone_name)).date()


def fee_days(
    start: int, end: int, zone_name: str = UTC, joined: int | None = None, left: int | None = None
) -> int:
    """The days a member pays fixed charges and subscriptions for in ``[start, end)``: every local
    day of ``zone_name`` in which some instant of the period is also in the membership
    ``[joined, left)`` (None: no bound), i.e. each started local day of membership in the period.
    For a period of whole local days and a member all along, its number of local days."""
    lo = start if joined is None else max(start, joined)
    hi = end if left is None else min(end, left)
    if lo >= hi:
        return 0
    return (local_day(hi - 1, zone_name) - local_day(lo, zone_name)).days + 1


def membership(ledger: Ledger, member: str) -> tuple[int | None, int | None]:
    """``(joined, left)`` of a member (Unix s; ``left`` None while a member), ``(None, None)`` for a
    party that is no member (the supplier, the grid operator): no bound."""
    m = q.membership(ledger, member)
    return (None, None) if m is None else m


def record_leave(ledger: Ledger, member: str, left: int, zone_name: str = UTC) -> datetime.date:
    """Record that ``member`` left at ``left`` (Unix s) and return its last day charged (the
    local day of the instant before). Refused when an invoice already issued for the member
    covers days after it: that invoice charged them, and it stays as issued (checked in the
    transaction that records the leave, so no invoice is issued in between)."""
    with ledger.transaction() as tx:
        for period in q.invoice_periods(tx, member):
            _, _, until = period.partition("..")
            try:
                end = day_start(datetime.date.fromisoformat(until), zone_name)
            except (ValueError, BillingError):  # not a period this version writes
                continue
            if end > left:
                raise LedgerError(
                    f"an invoice for {member} over {period} (end exclusive) was already issued and charged "
                    f"its days: the member can leave at the end of that period ({until}) at the earliest"
                )
        ledger.leave_member(member, left)
    return local_day(left - 1, zone_name)


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
    zone: str = UTC  # the billing time zone the period's days are in
    days: int = 0  # the days the fixed charge and subscription were charged for (``fee_days``)

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


def subscription_per_day(member: Member | None) -> int:
    """The subscription fee (nano-cent per day) of a member from ``Ledger.members()``; 0
    without one (or for no member)."""
    return member.prefs.subscription_per_day if member else 0


def contract_subscriptions(
    contracts: Iterable[Contract],
    member: str,
    start: int,
    end: int,
    joined: int | None = None,
    left: int | None = None,
) -> int:
    """What ``member`` owes for the subscriptions of its chosen-producer contracts (as consumer)
    in force during ``[start, end)`` while a member (``[joined, left)``, None: no bound): each
    contract's ``subscription`` once per billing period (``market.subscription_charges``),
    nano-cent, not pro-rated."""
    mine = [c for c in contracts if c.consumer == member]
    lo = start if joined is None else max(start, joined)
    hi = end if left is None else min(end, left)
    if not mine or lo >= hi:
        return 0
    return sum(c.amount for c in subscription_charges(mine, lo, hi))


def statement(
    ledger: Ledger,
    member: str,
    start: int,
    end: int,
    *,
    fixed_per_day: int = 0,
    subscription_per_day: int = 0,
    contracts: Iterable[Contract] = (),
    zone: str = UTC,
) -> Statement:
    """Postings of ``member`` for intervals starting in ``[start, end)``, plus the fixed charge and
    the member's subscription (nano-cent per day, paid to the supplier) for each started local day
    of ``zone`` on which it was a member (``fee_days``), and the subscriptions of its
    chosen-producer contracts (``[[market.contracts]]``: each once per billing period in which it
    is in force while a member, ``contract_subscription``)."""
    lines = [Line(a, e, m) for a, e, m in q.account_totals(ledger, member, start, end)]
    n = q.posted_intervals(ledger, member, start, end)
    joined, left = membership(ledger, member)
    days = fee_days(start, end, zone, joined, left)
    if fixed_per_day and days:
        lines.append(Line(journal.FIXED, 0, -fixed_per_day * days))
    if subscription_per_day and days:
        lines.append(Line(journal.SUBSCRIPTION, 0, -subscription_per_day * days))
    owed = contract_subscriptions(contracts, member, start, end, joined, left)
    if owed:
        lines.append(Line(journal.CONTRACT_SUBSCRIPTION, 0, -owed))
    return Statement(member, start, end, tuple(lines), int(n), zone, days)


def issue(ledger: Ledger, s: Statement, *, now: int) -> str:
    """Record the statement as an invoice (once per member and period); returns the period key.

    Refused while the intervals up to the period's end are not all settled: the invoice would leave
    the rest out for good (intervals are settled in order, so the last settled end tells)."""
    import time

    period = f"{local_day(s.start, s.zone)}..{local_day(s.end, s.zone)}"
    with ledger.transaction() as tx:
        settled = q.settled_until(tx)
        if settled is None or settled < s.end:
            upto = (
                "nothing"
                if settled is None
                else f"up to {time.strftime('%Y-%m-%d %H:%M', time.gmtime(settled))} UTC"
            )
            raise LedgerError(
                f"cannot issue an invoice for {s.member} over {period}: the period is not settled to its end "
                f"yet (settled {upto})"
            )
        if not q.add_invoice(tx, s.member, period, s.total, now):
            raise LedgerError(f"an invoice for {s.member} over {period} was already issued")
    return period


def render(s: Statement, currency: str = "CHF") -> str:
    """A statement a member can read."""
    where = "" if s.zone == UTC else f" ({s.zone})"
    out = [
        f"peergrid statement for {s.member}",
        f"period {local_day(s.start, s.zone)} to {local_day(s.end, s.zone)}{where}, {s.intervals} intervals",
        "",
    ]
    for x, c in zip(s.lines, line_cents(s), strict=True):
        label = ACCOUNTS.get(x.account, x.account)
        if x.account in PER_DAY:
            label += f", {s.days} day{'' if s.days == 1 else 's'}"
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
