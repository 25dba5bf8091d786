"""Bills in the community's time zone (``[billing] timezone``): a day or month is a local calendar
day or month (23 or 25 hours across a daylight-saving change), and fixed charges and subscriptions
are charged per started local day of the member's membership within the period."""

from __future__ import annotations

import calendar
import datetime
from pathlib import Path

import pytest

from coordinator import config
from coordinator.cli import main
from coordinator.ledger import Ledger, LedgerError
from coordinator.market import Contract
from coordinator.transaction import billing
from coordinator.transaction.billing import BillingError, Line
from coordinator.transaction.export import parse_day, parse_period

Z = "Europe/Zurich"
FIXED = 3_000_000_000  # 3 cents a day
SUB = 1_000_000_000  # 1 cent a day
LONG_AGO = calendar.timegm((2025, 1, 1, 0, 0, 0, 0, 0, 0))


def utc(*ymdh: int) -> int:
    y, m, d, h = (*ymdh, 0)[:4]
    return calendar.timegm((y, m, d, h, 0, 0, 0, 0, 0))


def test_a_local_day_or_month_runs_from_local_midnight_to_local_midnight() -> None:
    march = parse_period("2026-03", Z)
    assert march == (utc(2026, 2, 28, 23), utc(2026, 3, 31, 22))  # CET, then CEST from the 29th
    assert (march[1] - march[0]) // 900 == 31 * 96 - 4
    assert parse_period("2026-03-29", Z) == (utc(2026, 3, 28, 23), utc(2026, 3, 29, 22))  # 23 h
    assert parse_period("2026-10-25", Z) == (utc(2026, 10, 24, 22), utc(2026, 10, 25, 23))  # 25 h
    assert parse_period("2026-03-28..2026-03-30", Z) == (utc(2026, 3, 27, 23), utc(2026, 3, 29, 22))
    assert parse_day("2026-03-10", Z) == utc(2026, 3, 9, 23)
    # UTC stays the default: the days and months bills had before
    assert parse_period("2026-03") == (utc(2026, 3, 1), utc(2026, 4, 1))
    assert parse_period("2026-03-29") == (utc(2026, 3, 29), utc(2026, 3, 30))
    # a skipped local midnight (Havana springs forward at 00:00): the day starts at 01:00
    assert parse_day("2026-03-08", "America/Havana") == utc(2026, 3, 8, 5)
    assert billing.local_day(utc(2026, 3, 8, 5), "America/Havana") == datetime.date(2026, 3, 8)


def test_a_local_midnight_off_the_quarter_hour_is_refused() -> None:
    # Zurich kept local mean time (+00:34:08) until 1894: its days were not whole intervals
    with pytest.raises(BillingError, match="not on a quarter hour"):
        parse_period("1890-01", Z)
    with pytest.raises(BillingError, match="no time zone 'Mars/Olympus'"):
        parse_day("2026-03-01", "Mars/Olympus")


def ledger_with_march(tmp: Path) -> Ledger:
    """A ledger with one posting of -1 nano-cent for "ann" in every 15-minute interval from
    2026-02-27 to 2026-04-02 UTC (the local March and a margin around it)."""
    led = Ledger.open(tmp / "l.db")
    led.add_member("ann", "Ann", "consumer", now=LONG_AGO)
    rows = [
        (t, 0, "ann", "energy_bought_supplier", -1, 1) for t in range(utc(2026, 2, 27), utc(2026, 4, 2), 900)
    ]
    led._conn.executemany(
        "INSERT INTO postings (interval, n, party, account, amount, energy) VALUES (?,?,?,?,?,?)", rows
    )
    return led


def test_a_local_march_across_the_dst_change_has_its_intervals_and_fee_days(tmp_path: Path) -> None:
    led = ledger_with_march(tmp_path)
    st = billing.statement(
        led, "ann", *parse_period("2026-03", Z), fixed_per_day=FIXED, subscription_per_day=SUB, zone=Z
    )
    assert st.intervals == 2972 and st.days == 31  # 31 local days, one of them 23 h
    assert st.lines == (
        Line("energy_bought_supplier", 2972, -2972),
        Line("fixed", 0, -31 * FIXED),
        Line("subscription", 0, -31 * SUB),
    )
    day = billing.statement(led, "ann", *parse_period("2026-03-29", Z), fixed_per_day=FIXED, zone=Z)
    assert day.intervals == 92 and day.days == 1 and day.lines[-1] == Line("fixed", 0, -FIXED)
    text = billing.render(st)
    assert "period 2026-03-01 to 2026-04-01 (Europe/Zurich), 2972 intervals" in text
    assert "Fixed charge, 31 days" in text
    # in UTC (the default) the month is 31 x 24 h
    plain = billing.statement(led, "ann", *parse_period("2026-03"), fixed_per_day=FIXED)
    assert plain.intervals == 2976 and plain.days == 31 and plain.zone == "UTC"
    assert "period 2026-03-01 to 2026-04-01, 2976 intervals" in billing.render(plain)
    led.close()


def test_a_member_joining_on_the_10th_pays_fees_from_the_10th(tmp_path: Path) -> None:
    led = ledger_with_march(tmp_path)
    led.add_member("joe", "Joe", "consumer", now=parse_day("2026-03-10", Z) + 15 * 3600)
    led.add_member("kim", "Kim", "consumer", now=parse_day("2026-03-10", Z))  # at local midnight
    march = parse_period("2026-03", Z)
    for m in ("joe", "kim"):
        st = billing.statement(led, m, *march, fixed_per_day=FIXED, subscription_per_day=SUB, zone=Z)
        assert st.days == 22
        assert st.lines == (Line("fixed", 0, -22 * FIXED), Line("subscription", 0, -22 * SUB))
    assert "Fixed charge, 22 days" in billing.render(st)
    feb = billing.statement(led, "joe", *parse_period("2026-02", Z), fixed_per_day=FIXED, zone=Z)
    assert feb.days == 0 and feb.lines == ()  # not a member yet
    day = billing.statement(led, "joe", *parse_period("2026-03-10", Z), fixed_per_day=FIXED, zone=Z)
    assert day.lines == (Line("fixed", 0, -FIXED),)  # the day it joined is a started day
    # the 10th in UTC starts an hour after the local 10th: the local day counts in Zurich only
    assert billing.fee_days(*parse_period("2026-03-09", Z), Z, parse_day("2026-03-10", Z)) == 0
    assert billing.fee_days(*parse_period("2026-03-09"), "UTC", parse_day("2026-03-10", Z)) == 1
    led.close()


def test_a_member_who_left_pays_no_fees_after_its_last_day(tmp_path: Path) -> None:
    led = ledger_with_march(tmp_path)
    contract = Contract("c-ann", "ann", "farm", LONG_AGO, utc(2027, 1, 1), price=9_000, subscription=7 * SUB)
    left = parse_period("2026-03-20", Z)[1]  # the 20th is its last day
    assert billing.record_leave(led, "ann", left, Z) == datetime.date(2026, 3, 20)
    assert billing.membership(led, "ann") == (LONG_AGO, left)

    def bill(period: str) -> billing.Statement:
        return billing.statement(
            led,
            "ann",
            *parse_period(period, Z),
            fixed_per_day=FIXED,
            subscription_per_day=SUB,
            contracts=(contract,),
            zone=Z,
        )

    march = bill("2026-03")
    assert march.days == 20
    assert march.lines[1:] == (
        Line("fixed", 0, -20 * FIXED),
        Line("subscription", 0, -20 * SUB),
        Line("contract_subscription", 0, -7 * SUB),
    )
    april = bill("2026-04")
    assert april.days == 0
    # no fixed charge, subscription or contract subscription; energy its boards still metered is
    # billed (retire them when they are removed)
    assert [x.account for x in april.lines] == ["energy_bought_supplier"]
    after = bill("2026-03-21")
    assert after.days == 0 and [x.account for x in after.lines] == ["energy_bought_supplier"]
    with pytest.raises(LedgerError, match="already left"):
        billing.record_leave(led, "ann", left + 86_400, Z)
    with pytest.raises(LedgerError, match="no member 'zed'"):
        led.leave_member("zed", left)
    led.add_member("bo", "Bo", "consumer", now=utc(2026, 3, 15))
    with pytest.raises(LedgerError, match="cannot leave"):
        led.leave_member("bo", utc(2026, 3, 14))
    led.close()


def test_leaving_inside_an_invoiced_period_is_refused(tmp_path: Path) -> None:
    led = ledger_with_march(tmp_path)
    start, end = parse_period("2026-03", Z)
    led._conn.execute(
        "INSERT INTO intervals (start, length, scheme, state) VALUES (?, 900, 'pairwise', 'settled')",
        (end - 900,),
    )
    st = billing.statement(led, "ann", start, end, fixed_per_day=FIXED, zone=Z)
    assert billing.issue(led, st, now=end) == "2026-03-01..2026-04-01"  # the local days
    with pytest.raises(LedgerError, match=r"2026-03-01\.\.2026-04-01 .* already issued"):
        billing.record_leave(led, "ann", parse_period("2026-03-20", Z)[1], Z)
    assert billing.record_leave(led, "ann", end, Z) == datetime.date(2026, 3, 31)
    led.close()


def site(tmp: Path, extra: str = "") -> Path:
    p = tmp / "c.toml"
    p.write_text(
        '[coordinator]\ngrid = "g1"\nledger = "l.db"\n'
        f'[market]\nfixed_per_day = {FIXED}\n[billing]\ntimezone = "{Z}"\n{extra}'
    )
    return p


def test_members_join_and_leave_commands_bound_the_fees(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = site(tmp_path)
    add = ["members", "add", "--config", str(cfg), "--name", "X", "--role", "consumer"]
    assert main([*add, "--id", "joe", "--joined", "2026-03-10", "--subscription-per-day", str(SUB)]) == 0
    assert "a member from 2026-03-10" in capsys.readouterr().out
    assert main(["members", "leave", "--config", str(cfg), "--id", "joe", "--at", "2026-03-20"]) == 0
    assert "up to 2026-03-20 included" in capsys.readouterr().out
    with Ledger.open(tmp_path / "l.db") as led:
        assert billing.membership(led, "joe") == (utc(2026, 3, 9, 23), utc(2026, 3, 20, 23))
    assert main(["members", "list", "--config", str(cfg)]) == 0
    assert "(from 2026-03-10 to 2026-03-20)" in capsys.readouterr().out
    assert main(["bill", "--config", str(cfg), "--period", "2026-03", "--csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert f"joe,{utc(2026, 2, 28, 23)},{utc(2026, 3, 31, 22)},fixed,0,{-11 * FIXED},-33" in rows
    assert f"joe,{utc(2026, 2, 28, 23)},{utc(2026, 3, 31, 22)},subscription,0,{-11 * SUB},-11" in rows
    assert main(["bill", "--config", str(cfg), "--from", "2026-03-01", "--to", "2026-04-01"]) == 0
    assert "Fixed charge, 11 days" in capsys.readouterr().out
    assert main(["bill", "--config", str(cfg), "--period", "2026-04"]) == 0
    out = capsys.readouterr().out
    assert "period 2026-04-01 to 2026-05-01 (Europe/Zurich)" in out and "Fixed charge" not in out
    assert main(["bill", "--config", str(cfg), "--period", "2026-04", "--from", "2026-04-01"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["bill", "--config", str(cfg), "--from", "2026-04-01"]) == 2
    assert main(["members", "leave", "--config", str(cfg), "--id", "joe"]) == 2
    assert "already left" in capsys.readouterr().err


def test_the_billing_time_zone_is_checked_on_load(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    base = '[coordinator]\ngrid = "g1"\nledger = "l.db"\n'
    p.write_text(base)
    assert config.load(p).timezone == "UTC"
    p.write_text(base + f'[billing]\ntimezone = "{Z}"\n')
    assert config.load(p).timezone == Z
    for zone, interval, error in (
        ("Mars/Olympus", 900, "billing.timezone: no time zone 'Mars/Olympus'"),
        ("../../etc/passwd", 900, "billing.timezone: no time zone"),
        ("Asia/Kolkata", 3600, r"billing.timezone: 'Asia/Kolkata' is \+05:30 from UTC"),
        ("Asia/Kathmandu", 1800, r"billing.timezone: 'Asia/Kathmandu' is \+05:45 from UTC"),
        (5, 900, "billing.timezone must be a str"),
    ):
        tz = f'"{zone}"' if isinstance(zone, str) else zone
        p.write_text(base + f"[market]\ninterval_s = {interval}\n[billing]\ntimezone = {tz}\n")
        with pytest.raises(config.ConfigError, match=error):
            config.load(p)
    for zone in ("Asia/Kolkata", "Asia/Kathmandu", "Australia/Eucla"):  # whole quarter hours
        p.write_text(base + f'[billing]\ntimezone = "{zone}"\n')
        assert config.load(p).timezone == zone
    p.write_text('billing = "Europe/Zurich"\n' + base)
    with pytest.raises(config.ConfigError, match=r"\[billing\] must be a table"):
        config.load(p)


def test_contract_dates_are_local_days_of_the_billing_zone(tmp_path: Path) -> None:
    contract = (
        '[[market.contracts]]\nid = "c1"\nconsumer = "ann"\nproducer = "farm"\n'
        'start = "2026-01-01"\nend = "2026-07-01"\nprice = 9000\n'
    )
    p = tmp_path / "c.toml"
    p.write_text('[coordinator]\ngrid = "g1"\nledger = "l.db"\n[market]\nscheme = "bilateral"\n' + contract)
    (c,) = config.load(p).contracts or ()
    assert (c.start, c.end) == (utc(2026, 1, 1), utc(2026, 7, 1))
    p.write_text(
        '[coordinator]\ngrid = "g1"\nledger = "l.db"\n[billing]\ntimezone = "Europe/Zurich"\n'
        '[market]\nscheme = "bilateral"\n' + contract
    )
    (c,) = config.load(p).contracts or ()
    assert (c.start, c.end) == (utc(2025, 12, 31, 23), utc(2026, 6, 30, 22))
