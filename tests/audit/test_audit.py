"""Audit bundles verify offline and recompute the bill; any altered record fails, named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from coordinator.cli import main
from coordinator.ledger import Ledger
from coordinator.transaction import billing
from coordinator.transaction.audit import AuditError
from coordinator.transaction.audit.verify import load, verify_bundle
from protocol import messages
from tests.audit.community import FIXED_PER_DAY, GRID, build

PERIOD = "2025-11-20"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    tmp = tmp_path_factory.mktemp("audit")
    c = build(tmp)
    out = tmp / "alice.json"
    assert (
        main(
            [
                "audit",
                "export",
                "--config",
                str(c.config),
                "--member",
                "alice",
                "--period",
                PERIOD,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return c, out


def test_exported_bundle_verifies_and_recomputes_the_bill(
    exported: tuple[Any, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    c, out = exported
    capsys.readouterr()
    assert main(["audit", "verify", str(out), "--coordinator-key", c.key.public.hex()]) == 0
    text = capsys.readouterr().out
    assert "audit verify: OK" in text and "PROBLEM" not in text
    b = load(out)
    assert len(b["intervals"]) == 8 and all(iv["result_frame"] for iv in b["intervals"])
    assert {r["board"] for r in b["readings"]} == {"b-alice"} and len(b["readings"]) == 121
    rep = verify_bundle(b, c.key.public)
    assert rep.ok and rep.readings == 121 and rep.intervals == 8
    with Ledger.open(c.ledger) as led:
        st = billing.statement(
            led, "alice", c.start - 10 * 3600, c.start + 14 * 3600, fixed_per_day=FIXED_PER_DAY
        )
        exp_imp, exp_exp = led._conn.execute(
            "SELECT sum(e_imp), sum(e_exp) FROM deliveries WHERE party='alice'"
        ).fetchone()
    # recomputed from the signed records alone, equal to the coordinator's bill to the nano-cent
    assert rep.total == st.total and rep.total > 0  # alice sells her PV: a credit
    assert rep.lines == {x.account: (x.energy, x.amount) for x in st.lines}
    assert rep.lines["fixed"] == (0, -FIXED_PER_DAY)
    sold = sum(e for a, (e, _) in rep.lines.items() if a.startswith("energy_sold"))
    assert -sold == exp_exp - exp_imp > 0
    assert f"{billing.cents(st.total) / 100:.2f}" in text


def _altered_reading(b: dict[str, Any], index: int) -> int:
    """Raise one reading's import register by 1 kWh, keeping its signature; return its seq."""
    fr = bytes.fromhex(b["readings"][index]["frame"])
    r = messages.decode(fr[:-64])
    assert isinstance(r, messages.Reading)
    kw = {n: getattr(r, n) for n in messages.names(messages.Reading)}
    kw["e_imp"] += 1_000_000
    b["readings"][index]["frame"] = (messages.Reading(**kw).encode() + fr[-64:]).hex()
    return r.seq


def test_one_altered_reading_fails_with_a_message_naming_it(
    exported: tuple[Any, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out = exported
    b = load(out)
    seq = _altered_reading(b, 37)
    bad = tmp_path / "altered.json"
    bad.write_text(json.dumps(b))
    capsys.readouterr()
    assert main(["audit", "verify", str(bad)]) == 1
    text = capsys.readouterr().out
    assert (
        f"PROBLEM  reading of board b-alice seq {seq} (#37 in the bundle): signature does not verify" in text
    )
    assert "audit verify: FAILED" in text
    rep = verify_bundle(b)
    assert [p for p in rep.problems if "signature" in p] == [
        f"reading of board b-alice seq {seq} (#37 in the bundle): signature does not verify"
    ]


def test_altered_clearing_statement_key_or_missing_reading_fail(exported: tuple[Any, Path]) -> None:
    c, out = exported
    b = load(out)
    row = b["intervals"][2]["clearing"]["trades"][0]
    row[3] += 100  # a better price for someone
    rep = verify_bundle(b)
    start = b["intervals"][2]["start"]
    assert (
        f"interval {start}: the clearing record does not match the digest the coordinator signed"
        in rep.problems
    )

    b = load(out)
    b["statement"]["lines"][0]["amount"] -= 1
    b["statement"]["total"] -= 1
    rep = verify_bundle(b)
    assert any(p.startswith("bill line ") for p in rep.problems)
    assert any(p.startswith("bill total") for p in rep.problems)

    b = load(out)
    rep = verify_bundle(b, coordinator_key=bytes(range(32)))
    assert "the bundle's coordinator key is not the pinned one" in rep.problems
    assert any("coordinator result: signature does not verify" in p for p in rep.problems)

    b = load(out)
    del b["readings"][60]
    rep = verify_bundle(b)
    assert any("reading seq 60 is missing or does not verify" in p for p in rep.problems)

    b = load(out)
    b["intervals"][0]["result_frame"] = b["intervals"][1]["result_frame"]
    rep = verify_bundle(b)
    assert f"interval {b['intervals'][0]['start']}: the signed result is for another interval" in rep.problems

    with pytest.raises(AuditError, match="malformed"):
        verify_bundle({**load(out), "intervals": [{"start": 1}]})

    # what a person may hand the command by mistake: a clear message and exit 2, no traceback
    binary = out.parent / "bundle.bin"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(AuditError, match="not UTF-8 text"):
        load(binary)
    assert main(["audit", "verify", str(binary)]) == 2
    assert main(["audit", "verify", str(out), "--coordinator-key", "not-hex"]) == 2


def test_disputes_keep_the_evidence(exported: tuple[Any, Path], capsys: pytest.CaptureFixture[str]) -> None:
    c, _ = exported
    iv = c.start + 1800
    args = ["dispute", "flag", "--config", str(c.config), "--member", "carol", "--interval", str(iv)]
    assert main([*args, "--reason", "I was away, the bakery was closed"]) == 0
    out = capsys.readouterr().out
    assert "dispute #1: member carol" in out and "signed result present" in out
    assert main(["dispute", "list", "--config", str(c.config), "--member", "carol"]) == 0
    assert "I was away" in capsys.readouterr().out
    from coordinator.transaction.audit import dispute

    with Ledger.open(c.ledger) as led:
        (d,) = dispute.disputes(led, "carol")
        ev = d.evidence
        assert ev["interval"] == iv and ev["result_frame"] and ev["digest"]
        (span,) = ev["spans"]
        assert span["board"] == "b-carol" and span["seq1"] - span["seq0"] == 15
        assert [r["seq"] for r in span["readings"]] == [span["seq0"], span["seq1"]]
        assert span["e_imp"] == ev["measured"]["e_imp"] > 0
        assert ev["trades"] and all("carol" in (t["buyer"], t["seller"]) for t in ev["trades"])
        assert sum(p["amount"] for p in ev["postings"]) < 0
        assert dispute.disputes(led, "alice") == []
    assert main([*args[:-1], str(c.start - 900), "--reason", "x"]) == 2
    assert "has not been settled" in capsys.readouterr().err
    assert main([*args, "--reason", "   "]) == 2
    assert "needs a reason" in capsys.readouterr().err


def test_csv_exports(exported: tuple[Any, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    c, _ = exported
    capsys.readouterr()
    assert main(["export", "readings", "--config", str(c.config), "--period", PERIOD, "--member", "bob"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("member,board,seq,ts,e_imp_mwh") and len(rows) == 1 + 121
    assert all(r.startswith("bob,b-bob,") for r in rows[1:])
    out = tmp_path / "trades.csv"
    assert (
        main(["export", "trades", "--config", str(c.config), "--period", "2025-11", "--out", str(out)]) == 0
    )
    trades = out.read_text().splitlines()
    with Ledger.open(c.ledger) as led:
        assert len(trades) - 1 == led._conn.execute("SELECT count(*) FROM trades").fetchone()[0]
    assert main(["export", "bills", "--config", str(c.config), "--period", PERIOD]) == 0
    bills = capsys.readouterr().out.splitlines()
    per: dict[str, int] = {}
    for r in bills[1:]:
        per[r.split(",")[0]] = per.get(r.split(",")[0], 0) + int(r.split(",")[5])
    with Ledger.open(c.ledger) as led:
        day = c.start - 10 * 3600
        want = {
            m: billing.statement(led, m, day, day + 86_400, fixed_per_day=FIXED_PER_DAY).total
            for m in ("alice", "bob", "carol", "dave")
        }
    assert per == want
    assert main(["export", "bills", "--config", str(c.config), "--period", "2025-13"]) == 2
    assert "is not YYYY-MM" in capsys.readouterr().err
    assert main(["export", "trades", "--config", str(c.config), "--period", PERIOD, "--member", "eve"]) == 2
    assert "no member 'eve'" in capsys.readouterr().err


def test_contract_subscription_is_in_the_bundle_and_recomputed(
    exported: tuple[Any, Path], tmp_path: Path
) -> None:
    # carol chose alice as her producer (bilateral contract with a subscription per billing period):
    # the bill carries the subscription, the bundle its terms, and verify recomputes it
    c, _ = exported
    sub = 120 * billing.NC_PER_CENT
    cfg = tmp_path / "bilateral.toml"
    cfg.write_text(
        f'[coordinator]\ngrid = "{GRID}"\nledger = "{c.ledger}"\n'
        f'key = "{c.config.parent / "coordinator.key"}"\n'
        f'[market]\nscheme = "bilateral"\nfixed_per_day = {FIXED_PER_DAY}\n'
        '[[market.contracts]]\nid = "c-carol"\nconsumer = "carol"\nproducer = "alice"\n'
        f'start = "2025-11-01"\nend = "2026-11-01"\nprice = 9000\nsubscription = {sub}\n'
    )
    out = tmp_path / "carol.json"
    args = [
        "audit",
        "export",
        "--config",
        str(cfg),
        "--member",
        "carol",
        "--period",
        PERIOD,
        "--out",
        str(out),
    ]
    assert main(args) == 0
    b = load(out)
    lines = {x["account"]: (x["energy"], x["amount"]) for x in b["statement"]["lines"]}
    assert lines["contract_subscription"] == (0, -sub)
    assert [x["id"] for x in b["tariff"]["contracts"]] == ["c-carol"]
    rep = verify_bundle(b, c.key.public)
    assert rep.ok, rep.problems
    assert rep.lines["contract_subscription"] == (0, -sub) and rep.total == b["statement"]["total"]
    b["tariff"]["contracts"][0]["subscription"] = sub // 2  # the terms do not match the bill
    rep = verify_bundle(b, c.key.public)
    assert any(p.startswith("bill line contract_subscription") for p in rep.problems), rep.problems
    b = load(out)
    b["tariff"]["contracts"][0]["start"] = c.start + 86_400  # not in force in the period
    assert not verify_bundle(b, c.key.public).ok


def test_verify_agrees_with_the_bill_in_a_local_time_zone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a Swiss community bills Zurich days; alice joined at 00:30 local on the 20th (23:30 UTC on
    # the 19th): over the local 19th and 20th she pays one day's fixed charge, where UTC days
    # would count two. The bundle carries the zone and her membership, so verify counts the same.
    import calendar

    from coordinator.transaction.export import parse_period

    c = build(tmp_path, timezone="Europe/Zurich")
    joined = calendar.timegm((2025, 11, 19, 23, 30, 0, 0, 0, 0))
    with Ledger.open(c.ledger) as led:
        led._conn.execute("UPDATE members SET created=? WHERE id='alice'", (joined,))
    period = "2025-11-19..2025-11-21"
    out = tmp_path / "alice.json"
    args = ["--config", str(c.config), "--member", "alice", "--period", period]
    assert main(["audit", "export", *args, "--out", str(out)]) == 0
    assert main(["bill", *args, "--csv"]) == 0
    capsys.readouterr()
    assert main(["bill", *args]) == 0
    bill = capsys.readouterr().out
    assert "period 2025-11-19 to 2025-11-21 (Europe/Zurich), 8 intervals" in bill
    assert "Fixed charge, 1 day " in bill
    b = load(out)
    start, end = parse_period(period, "Europe/Zurich")
    assert b["period"] == [start, end] == [calendar.timegm((2025, 11, 18, 23, 0, 0, 0, 0, 0)), end]
    assert b["timezone"] == "Europe/Zurich" and b["membership"] == {"joined": joined, "left": None}
    with Ledger.open(c.ledger) as led:
        st = billing.statement(led, "alice", start, end, fixed_per_day=FIXED_PER_DAY, zone="Europe/Zurich")
    assert st.days == 1 and billing.fee_days(start, end, "UTC", joined) == 2
    rep = verify_bundle(b, c.key.public)
    assert rep.ok, rep.problems
    assert rep.total == st.total == b["statement"]["total"]
    assert rep.lines["fixed"] == (0, -FIXED_PER_DAY) and (rep.zone, rep.days) == ("Europe/Zurich", 1)
    assert main(["audit", "verify", str(out), "--coordinator-key", c.key.public.hex()]) == 0
    text = capsys.readouterr().out
    assert "fixed charges for 1 day of Europe/Zurich" in text and "audit verify: OK" in text
    assert f"{billing.cents(st.total) / 100:.2f}" in text
    b["timezone"] = "UTC"  # the days counted in another zone: the fixed charge does not match
    assert any(p.startswith("bill line fixed") for p in verify_bundle(b, c.key.public).problems)
    b["timezone"] = "Mars/Olympus"
    rep = verify_bundle(b, c.key.public)
    assert any("time zone 'Mars/Olympus'" in p for p in rep.problems), rep.problems
