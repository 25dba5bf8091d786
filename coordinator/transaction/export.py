"""CSV exports of readings, trades and bills (``peergrid export`` and the dashboard's API).

Energy in mWh, power in W, voltage in mV, prices in milli-cent/kWh and money in nano-cent: the
ledger's exact integers, so a spreadsheet total matches the bill to the nano-cent.
"""

from __future__ import annotations

import csv
import datetime
import io
import time
from collections.abc import Iterable

from coordinator.errors import CoordinatorError
from coordinator.ledger import Ledger
from coordinator.ledger.queries import export as q
from coordinator.market import Contract
from coordinator.transaction import billing

KINDS = ("readings", "trades", "bills")


class ExportError(CoordinatorError):
    """An export was asked for something that does not exist or a malformed period."""


def _date(text: str) -> datetime.date:
    try:
        t = time.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise ExportError(f"date {text!r} is not YYYY-MM-DD") from None
    return datetime.date(t.tm_year, t.tm_mon, t.tm_mday)


def parse_day(text: str, zone: str = billing.UTC) -> int:
    """``YYYY-MM-DD``, a local calendar day of the billing time zone ``zone``, as the Unix seconds
    it starts at (its local midnight)."""
    return billing.day_start(_date(text), zone)


def parse_period(text: str, zone: str = billing.UTC) -> tuple[int, int]:
    """``YYYY-MM`` (a month), ``YYYY-MM-DD`` (a day) or ``YYYY-MM-DD..YYYY-MM-DD`` (end exclusive),
    local calendar days of the billing time zone ``zone``, as ``(start, end)`` Unix seconds: from
    the first day's local midnight to the local midnight after the last (a local day lasts 23 or
    25 hours across a daylight-saving change)."""
    if ".." in text:
        a, _, b = text.partition("..")
        first, after = _date(a), _date(b)
    elif len(text) == 7:
        try:
            t = time.strptime(text, "%Y-%m")
        except ValueError:
            raise ExportError(f"period {text!r} is not YYYY-MM, YYYY-MM-DD or FROM..TO") from None
        y, m = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
        first = datetime.date(t.tm_year, t.tm_mon, 1)
        if y > datetime.MAXYEAR:
            raise ExportError(f"period {text!r} is out of range")
        after = datetime.date(y, m, 1)
    else:
        first = _date(text)
        if first == datetime.date.max:
            raise ExportError(f"period {text!r} is out of range")
        after = first + datetime.timedelta(days=1)
    start, end = billing.day_start(first, zone), billing.day_start(after, zone)
    if end <= start:
        raise ExportError(f"period {text!r} ends before it starts")
    return start, end


def boards_of(ledger: Ledger, member: str | None = None) -> list[tuple[str, str | None]]:
    """``(board, member)`` of the member's boards (every board's for None), by board id."""
    return q.boards_of(ledger, member)


def member_boards(ledger: Ledger, member: str) -> list[str]:
    return [b for b, _ in boards_of(ledger, member)]


def check_member(ledger: Ledger, member: str) -> None:
    if not q.member_exists(ledger, member):
        raise ExportError(f"no member {member!r}")


READING_HEADER = ["member", "board", "seq", "ts", "e_imp_mwh", "e_exp_mwh", "p_w", "u_mv", "bat_soc", "flags"]


def readings_csv(ledger: Ledger, start: int, end: int, member: str | None = None) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(READING_HEADER)
    if member is not None:
        check_member(ledger, member)
    for b, m in boards_of(ledger, member):
        for r, _ in ledger.readings(b, start, end):
            opt = "" if r.bat_soc is None else r.bat_soc
            w.writerow([m or "", b, r.seq, r.ts, r.e_imp, r.e_exp, r.p, r.u, opt, r.flags])
    return buf.getvalue()


TRADE_HEADER = ["interval", "n", "buyer", "seller", "energy_mwh", "price_mc_per_kwh", "fee_mc_per_kwh"]


def trades_csv(ledger: Ledger, start: int, end: int, member: str | None = None) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(TRADE_HEADER)
    if member is not None:
        check_member(ledger, member)
    w.writerows(q.trades(ledger, start, end, member))
    return buf.getvalue()


def statements(
    ledger: Ledger,
    start: int,
    end: int,
    members: Iterable[str],
    fixed_per_day: int = 0,
    contracts: Iterable[Contract] = (),
    zone: str = billing.UTC,
) -> list[billing.Statement]:
    known = {m.id: m for m in ledger.members()}
    out = []
    for m in members:
        if m not in known:
            raise ExportError(f"no member {m!r}")
        sub = billing.subscription_per_day(known[m])
        out.append(
            billing.statement(
                ledger,
                m,
                start,
                end,
                fixed_per_day=fixed_per_day,
                subscription_per_day=sub,
                contracts=contracts,
                zone=zone,
            )
        )
    return out


def bills_csv(
    ledger: Ledger,
    start: int,
    end: int,
    member: str | None = None,
    fixed_per_day: int = 0,
    contracts: Iterable[Contract] = (),
    zone: str = billing.UTC,
) -> str:
    members = [member] if member is not None else [m.id for m in ledger.members()]
    return billing.to_csv(statements(ledger, start, end, members, fixed_per_day, tuple(contracts), zone))


def export_csv(
    ledger: Ledger,
    kind: str,
    start: int,
    end: int,
    member: str | None = None,
    fixed_per_day: int = 0,
    contracts: Iterable[Contract] = (),
    zone: str = billing.UTC,
) -> str:
    if kind == "readings":
        return readings_csv(ledger, start, end, member)
    if kind == "trades":
        return trades_csv(ledger, start, end, member)
    if kind == "bills":
        return bills_csv(ledger, start, end, member, fixed_per_day, contracts, zone)
    raise ExportError(f"no export {kind!r} (one of {', '.join(KINDS)})")
