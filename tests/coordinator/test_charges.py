"""A bill's charges are double entry: a chosen-producer contract's subscription is credited to the
platform operator or the producer, the fixed charge to its payee, the member's subscription to the
supplier. Pending until the member's invoice posts them, they show on the payer's and the payee's
statements alike: the statements of every party sum to zero, and once issued a member's statement
lines are its postings. Invoices are numbered, immutable HTML documents carrying the lines, the
period in the billing time zone and the audit bundle's digest."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from coordinator.cli import main
from coordinator.ledger import Ledger, LedgerError
from coordinator.market import DSO, PLATFORM, SUPPLIER, Contract
from coordinator.transaction import billing, invoice
from coordinator.transaction.audit.bundle import Charges, bundle, digest
from coordinator.transaction.billing import Currency, Terms
from coordinator.transaction.settlement import settle
from tests.coordinator.test_settlement import PROFILES, START, TARIFF, ledger_with_readings

SUB = 5 * 10**11  # 5.00 per period
FIXED = 2 * 10**10  # 0.20 per day
END = START + 3600
KEY = bytes(range(32))
PARTIES = [*PROFILES, SUPPLIER, DSO, PLATFORM]


def settled(tmp: Path) -> Ledger:
    led, _ = ledger_with_readings(tmp)
    for q in range(4):
        settle(led, START + 900 * q, 900, "pairwise", TARIFF, {}, now=END)
    return led


CONTRACTS = (
    Contract("c-carol", "carol", "alice", START - 86_400, START + 86_400, price=9_000, subscription=SUB),
    Contract(
        "c-dave", "dave", "bob", START - 86_400, START + 86_400, price=9_000, subscription=SUB,
        subscription_to="producer",
    ),
)  # fmt: skip
TERMS = Terms(fixed_per_day=FIXED, contracts=CONTRACTS, interval_s=900)


def postings(led: Ledger, party: str) -> dict[str, int]:
    q = (
        "SELECT account, sum(amount) FROM postings WHERE party=? AND interval>=? AND interval<? "
        "GROUP BY account"
    )
    return {a: int(m) for a, m in led._conn.execute(q, (party, START, END))}


def lines(led: Ledger, party: str) -> dict[str, int]:
    return {x.account: x.amount for x in billing.statement(led, party, START, END, terms=TERMS).lines}


def test_contract_subscriptions_are_credited_and_statements_sum_to_zero(tmp_path: Path) -> None:
    led = settled(tmp_path)
    # pending: carol's subscription to the platform, dave's to his producer bob, everyone's fixed
    # charge to the platform; every statement sums with the others to zero
    assert sum(billing.statement(led, p, START, END, terms=TERMS).total for p in PARTIES) == 0
    assert lines(led, PLATFORM) == {"contract_subscription": SUB, "fixed": 4 * FIXED}
    assert lines(led, "bob")["contract_subscription"] == SUB  # the producer, paid by dave
    assert lines(led, "carol")["contract_subscription"] == -SUB
    before = {p: lines(led, p) for p in PARTIES}
    for m in PROFILES:
        billing.issue(led, billing.statement(led, m, START, END, terms=TERMS), now=END + 60, terms=TERMS)
    # issued: the charges are postings, each member's lines are its postings, and nothing changed
    for p in PARTIES:
        assert lines(led, p) == postings(led, p) == before[p], p
    assert sum(billing.statement(led, p, START, END, terms=TERMS).total for p in PARTIES) == 0
    assert led._conn.execute("SELECT sum(amount) FROM postings").fetchone() == (0,)
    led.close()


def test_an_invoice_posts_its_charges_once(tmp_path: Path) -> None:
    led = settled(tmp_path)
    st = billing.statement(led, "carol", START, END, terms=TERMS)
    billing.issue(led, st, now=END + 60, terms=TERMS)
    with pytest.raises(LedgerError, match="already issued"):
        billing.issue(led, st, now=END + 60, terms=TERMS)
    half = billing.statement(led, "carol", START, START + 1800, terms=TERMS)
    with pytest.raises(LedgerError, match="covering part of"):
        billing.issue(led, half, now=END + 60, terms=TERMS)
    (n,) = led._conn.execute(
        "SELECT count(*) FROM postings WHERE party='carol' AND account='fixed'"
    ).fetchone()
    assert n == 1
    led.close()


def test_the_fixed_charge_goes_to_its_payee(tmp_path: Path) -> None:
    led = settled(tmp_path)
    terms = Terms(fixed_per_day=FIXED, fixed_to=SUPPLIER)
    sup = {x.account: x.amount for x in billing.statement(led, SUPPLIER, START, END, terms=terms).lines}
    assert sup["fixed"] == 4 * FIXED
    assert "fixed" not in {x.account for x in billing.statement(led, PLATFORM, START, END, terms=terms).lines}
    led.close()


def test_invoices_are_numbered_immutable_documents(tmp_path: Path) -> None:
    from protocol import crypto

    led = settled(tmp_path)
    key = crypto.SigningKey(KEY).public
    euro = Terms(
        fixed_per_day=FIXED, contracts=CONTRACTS, zone="Europe/Zurich", currency=Currency("EUR", "ct")
    )
    issuer = invoice.Issuer("g1", TARIFF, key, "CM")
    docs = [
        invoice.issue(led, billing.statement(led, m, START, END, terms=euro), euro, issuer, now=END + 60)
        for m in ("alice", "carol")
    ]
    assert [d.number for d in docs] == ["CM-000001", "CM-000002"]
    html = docs[1].html.decode()
    st = billing.statement(led, "carol", START, END, terms=euro)
    assert "Invoice CM-000002" in html and "carol" in html and "(Europe/Zurich)" in html
    assert "Subscription of the chosen-producer contract" in html and "EUR" in html and "CHF" not in html
    assert f"{euro.currency.amount(billing.cents(st.total))}</td></tr></tfoot>" in html
    # the digest of the member's audit bundle for the period, as `peergrid audit export` makes it
    b = bundle(led, "g1", "carol", START, END, Charges(TARIFF, FIXED, 0, CONTRACTS, "Europe/Zurich"), key)
    assert docs[1].bundle_sha256 == digest(b) and len(digest(b)) == 64 and digest(b) in html
    import hashlib

    assert docs[1].sha256 == hashlib.sha256(docs[1].html).hexdigest()
    for sql in ("UPDATE invoice_documents SET total=0", "DELETE FROM invoice_documents"):
        with pytest.raises(sqlite3.IntegrityError, match="immutable"):
            led._conn.execute(sql)
    assert [d.number for d in invoice.documents(led, "carol")] == ["CM-000002"]
    led.close()


def test_bill_issue_writes_documents_the_operator_api_lists_and_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:

    from aiohttp.test_utils import TestClient, TestServer

    from coordinator.web import auth
    from coordinator.web.api import Site
    from coordinator.web.server import app

    led, _ = ledger_with_readings(tmp_path, hours=34, step=900)
    day = START + 9 * 3600  # 2025-06-16 00:00 UTC: a whole day of readings
    for t in range(START, day + 86_400, 900):
        settle(led, t, 900, "pairwise", TARIFF, {}, now=t + 960)
    led.close()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[coordinator]\ngrid = "g1"\nledger = "l.db"\n[market]\nfixed_per_day = 20000000000\n'
        '[billing]\ncurrency = "EUR"\nminor_unit = "ct"\ninvoice_prefix = "INV"\n'
    )
    args = ["bill", "--config", str(cfg), "--issue", "--out", str(tmp_path / "inv"), "--period"]
    assert main([*args, "2025-06-17"]) == 2  # not settled yet: refused, nothing issued
    assert "not settled" in capsys.readouterr().err
    assert main([*args, "2025-06-16"]) == 0
    out = capsys.readouterr().out
    assert "invoice INV-000001: alice" in out and "EUR" in out and "CHF" not in out
    assert (tmp_path / "inv" / "INV-000004.html").read_bytes().startswith(b"<!DOCTYPE html>")

    async def go() -> None:
        with Ledger.open(tmp_path / "l.db") as led:
            op = auth.issue(led, None, now=day)
            carol = auth.issue(led, "carol", now=day)
            site = Site(led, "g1", Charges(TARIFF), None, live=False)
            async with TestClient(TestServer(app(site))) as client:
                r = await client.get("/api/invoices", headers={"Authorization": f"Bearer {op}"})
                assert [d["number"] for d in await r.json()] == [f"INV-00000{k}" for k in range(1, 5)]
                r = await client.get("/api/invoices", headers={"Authorization": f"Bearer {carol}"})
                (mine,) = await r.json()
                assert mine["member"] == "carol" and mine["currency"] == "EUR"
                r = await client.get(
                    f"/api/invoices/{mine['number']}", headers={"Authorization": f"Bearer {carol}"}
                )
                assert r.status == 200 and "Invoice " + mine["number"] in await r.text()
                r = await client.get("/api/invoices/INV-000001", headers={"Authorization": f"Bearer {carol}"})
                assert r.status == 404  # alice's

    asyncio.run(go())
