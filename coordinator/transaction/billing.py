"""Bills: a member's postings over a period, summed per account, plus fixed charges.

Amounts are nano-cent in the ledger (mWh x mc/kWh) and are shown in currency units with the
remainder kept exact until the final rounding to cents. The total is rounded half away from zero;
each line is rounded once, down or up, the lines with the largest remainders up first, so that
the lines a member reads add up to the total (``line_cents``).

Periods are days of the community's billing time zone (``[billing] timezone``, UTC by default): a
local day starts at local midnight, so it lasts 23 or 25 hours across a daylight-saving change.
Fixed charges and subscriptions are charged per started local day of the member's membership
within the period (``fee_days``). See docs/billing.md.

Charges of a period (``charges``: the fixed charge, to the platform operator or whom ``[market]
fixed_to`` names; the member's subscription, to the supplier; the subscriptions of its
chosen-producer contracts, to the platform or the producer; the net-metering credit, from the
supplier) are double entry like everything else: each debit has its payee's credit. They are
*pending* until the member's invoice for the period is issued, which posts them (source
``charges``, dated at the period's last interval, so they land on that period's bills); a
statement shows its party's postings plus its pending charges, payer's and payee's side alike, so
the statements of every party (members, ``supplier``, ``dso``, ``platform``) sum to zero, issued
or not, and once issued a member's statement lines are its postings.
"""

from __future__ import annotations

import csv
import datetime
import io
import sqlite3
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from coordinator.errors import CoordinatorError
from coordinator.ledger import Ledger, LedgerError, journal
from coordinator.ledger.journal import Posting
from coordinator.ledger.queries import billing as q
from coordinator.market import DSO, PLATFORM, SUPPLIER, Contract, Tariff, subscription_charges
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
    journal.PLATFORM_FEE: "Platform fee on local trades",
    journal.ASSET_SHARE: "Share of the community asset's revenue",
    journal.NET_METERING: "Net metering: export set against import at retail",
    journal.FIXED: "Fixed charge",
    journal.SUBSCRIPTION: "Subscription",
    journal.CONTRACT_SUBSCRIPTION: "Subscription of the chosen-producer contract",
}
ORDER = {a: k for k, a in enumerate(ACCOUNTS)}  # the order of a statement's lines
PAYEES = (PLATFORM, SUPPLIER, DSO)  # whom ``[market] fixed_to`` may name
PER_DAY = (journal.FIXED, journal.SUBSCRIPTION)  # charged per day of membership (``fee_days``)


UTC = "UTC"
QUARTER_HOUR = 900
ZONE_CHECK_YEARS = (2000, 2100)  # check_zone: the offsets a zone has in these years


class BillingError(CoordinatorError):
    """A billing time zone that does not exist or whose local days are not whole intervals, or a
    currency that cannot be shown."""


@dataclass(frozen=True)
class Currency:
    """How amounts are shown: ``code`` (ISO 4217, e.g. ``EUR``), the minor unit's name (``ct``) and
    how many make one (100; 1 for a currency without one). The ledger's nano-cent are
    nano-minor-units of it: prices in mc/kWh are milli-minor-units per kWh."""

    code: str = "CHF"
    minor: str = "Rp"
    per_unit: int = 100

    def __post_init__(self) -> None:
        if not (self.code.isascii() and self.code.isalpha() and self.code.isupper() and len(self.code) == 3):
            raise BillingError(f"currency {self.code!r} is not an ISO 4217 code such as 'EUR'")
        if not self.minor or len(self.minor) > 8:
            raise BillingError(f"minor unit {self.minor!r} must be a short name such as 'ct'")
        if self.per_unit not in (1, 10, 100, 1000):
            raise BillingError(f"minor units per {self.code} must be 1, 10, 100 or 1000, got {self.per_unit}")

    def amount(self, minor_units: int) -> str:
        """``minor_units`` in the currency, e.g. ``-12.34``."""
        digits = len(str(self.per_unit)) - 1
        if not digits:
            return str(minor_units)
        sign = "-" if minor_units < 0 else ""
        q, r = divmod(abs(minor_units), self.per_unit)
        return f"{sign}{q}.{r:0{digits}d}"

    def price(self, mc_per_kwh: int | float) -> str:
        """A price in mc/kWh as minor units per kWh, e.g. ``20.75 Rp/kWh``."""
        return f"{mc_per_kwh / 1000:.2f} {self.minor}/kWh"


@dataclass(frozen=True)
class Terms:
    """What a bill charges besides the postings, and how it is shown: the fixed charge (nano-cent
    per member and local day) and its payee, the chosen-producer contracts, the billing time zone,
    net metering (the tariff whose retail and feed-in prices value an exported kWh set against an
    imported one), the market interval (charges are dated at a period's last) and the currency."""

    fixed_per_day: int = 0
    fixed_to: str = PLATFORM
    contracts: tuple[Contract, ...] = ()
    zone: str = "UTC"
    net_metering: Tariff | None = None
    interval_s: int = 900
    currency: Currency = Currency()

    def __post_init__(self) -> None:
        if self.fixed_to not in PAYEES:
            raise BillingError(
                f"the fixed charge is paid to one of {', '.join(PAYEES)}, not {self.fixed_to!r}"
            )


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
    return sum(c.amount for c in _contract_charges(contracts, member, start, end, joined, left))


def _contract_charges(
    contracts: Iterable[Contract], member: str, start: int, end: int, joined: int | None, left: int | None
) -> tuple[Any, ...]:
    mine = [c for c in contracts if c.consumer == member]
    lo = start if joined is None else max(start, joined)
    hi = end if left is None else min(end, left)
    if not mine or lo >= hi:
        return ()
    return subscription_charges(mine, lo, hi)


def charges(
    ledger: Ledger, member: str, start: int, end: int, terms: Terms, subscription: int | None = None
) -> list[Posting]:
    """The charges of ``member``'s bill over ``[start, end)``, double entry (each debit with its
    payee's credit): the fixed charge and the member's own subscription (``subscription`` nano-cent
    per day; None: its preferences') per started local day of membership (``fee_days``), its
    chosen-producer contracts' subscriptions once per period, and with net metering the credit for
    its export set against its import (``min`` of the two, valued at retail less feed-in)."""
    joined, left = membership(ledger, member)
    days = fee_days(start, end, terms.zone, joined, left)
    if subscription is None:
        known = q.subscription(ledger, member)
        subscription = 0 if known is None else known
    out: list[Posting] = []

    def pay(account: str, payee: str, amount: int, memo: str) -> None:
        if amount:
            out.append(Posting(member, account, -amount, 0, memo))
            out.append(Posting(payee, account, amount, 0, member))

    if days:
        pay(journal.FIXED, terms.fixed_to, terms.fixed_per_day * days, f"{days} days")
        pay(journal.SUBSCRIPTION, SUPPLIER, subscription * days, f"{days} days")
    for c in _contract_charges(terms.contracts, member, start, end, joined, left):
        pay(journal.CONTRACT_SUBSCRIPTION, c.payee, c.amount, c.reason)
    t = terms.net_metering
    if t is not None:
        bought, sold = q.supplier_energy(ledger, member, start, end)
        netted = min(bought, sold)
        credit = netted * (t.retail - t.feed_in)
        if credit:
            out.append(Posting(member, journal.NET_METERING, credit, 0, f"{netted} mWh netted"))
            out.append(Posting(SUPPLIER, journal.NET_METERING, -credit, 0, member))
    return out


def pending(
    ledger: Ledger, party: str, start: int, end: int, terms: Terms, own: int | None = None
) -> list[Posting]:
    """The charges of ``[start, end)`` not posted yet that concern ``party``, as payer or payee:
    those of every member with no invoice posted over the period (``own``: the party's own
    subscription per day, None: its preferences')."""
    if party in (SUPPLIER, DSO, PLATFORM):
        payers = [m.id for m in ledger.members()]
    else:
        payers = [party] + sorted({c.consumer for c in terms.contracts if c.payee == party})
    out: list[Posting] = []
    for m in payers:
        if q.charges_posted(ledger, m, start, end):
            continue
        rows = charges(ledger, m, start, end, terms, own if m == party else None)
        out.extend(r for r in rows if r.party == party)
    return out


def statement(
    ledger: Ledger,
    member: str,
    start: int,
    end: int,
    *,
    fixed_per_day: int = 0,
    subscription_per_day: int | None = None,
    contracts: Iterable[Contract] = (),
    zone: str = UTC,
    terms: Terms | None = None,
) -> Statement:
    """Postings of ``member`` (or of ``supplier``, ``dso``, ``platform``) for intervals starting in
    ``[start, end)``, with its pending charges (``charges``, ``pending``): the fixed charge and the
    member's subscription (nano-cent per day; None: its preferences') per started local day of
    ``zone`` on which it was a member (``fee_days``), the subscriptions of its chosen-producer
    contracts (``[[market.contracts]]``: each once per billing period in which it is in force while
    a member), and the payees' side of them. ``terms`` carries all of these at once (and the options
    the keywords do not: the fixed charge's payee, net metering)."""
    t = terms or Terms(fixed_per_day=fixed_per_day, contracts=tuple(contracts), zone=zone)
    acc: dict[str, list[int]] = {}
    for a, e, m in q.account_totals(ledger, member, start, end):
        acc[a] = [e, m]
    for p in pending(ledger, member, start, end, t, subscription_per_day):
        x = acc.setdefault(p.account, [0, 0])
        x[0] += p.energy
        x[1] += p.amount
    lines = tuple(
        Line(a, e, m)
        for a, (e, m) in sorted(acc.items(), key=lambda kv: (ORDER.get(kv[0], len(ORDER)), kv[0]))
    )
    n = q.posted_intervals(ledger, member, start, end)
    joined, left = membership(ledger, member)
    return Statement(member, start, end, lines, int(n), t.zone, fee_days(start, end, t.zone, joined, left))


def issue(ledger: Ledger, s: Statement, *, now: int, terms: Terms | None = None) -> str:
    """Record the statement as an invoice (once per member and period) and post its pending
    charges; returns the period key. Refused while the intervals up to the period's end are not
    all settled (the invoice would leave the rest out for good: intervals are settled in order, so
    the last settled end tells), and when an invoice of the member already covers part of it."""
    with ledger.transaction() as tx:
        return issue_in(tx, ledger, s, now=now, terms=terms)


def issue_in(
    ledger_tx: sqlite3.Connection, ledger: Ledger, s: Statement, *, now: int, terms: Terms | None = None
) -> str:
    """``issue`` inside the caller's transaction ``ledger_tx`` (``ledger.transaction()``)."""
    import time

    t = terms or Terms(zone=s.zone)
    period = period_key(s)
    settled = q.settled_until(ledger_tx)
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
    if q.charges_posted(ledger, s.member, s.start, s.end):
        raise LedgerError(
            f"an invoice for {s.member} covering part of {period} was already issued: its charges are posted"
        )
    if not q.add_invoice(ledger_tx, s.member, period, s.total, now, s.start, s.end):
        raise LedgerError(f"an invoice for {s.member} over {period} was already issued")
    rows = [p for p in charges(ledger, s.member, s.start, s.end, t) if p.amount]
    if rows:  # dated at the period's last interval: on its bills, never the next period's
        journal.post(ledger_tx, max(s.start, s.end - t.interval_s), journal.CHARGES, rows)
    return period


def period_key(s: Statement) -> str:
    """The invoice's period as its local days: ``YYYY-MM-DD..YYYY-MM-DD`` (end exclusive)."""
    return f"{local_day(s.start, s.zone)}..{local_day(s.end, s.zone)}"


def render(s: Statement, currency: Currency | str = "CHF") -> str:
    """A statement a member can read."""
    cur = currency if isinstance(currency, Currency) else Currency(currency)
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
        out.append(f"{label:<42} {kwh} {cur.amount(c):>12} {cur.code}")
    out.append("")
    out.append(f"{'Total (+ credit, - to pay)':<42} {'':>14} {cur.amount(cents(s.total)):>12} {cur.code}")
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
