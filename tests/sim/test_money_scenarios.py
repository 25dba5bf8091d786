"""Scenario files hold the market's options and bilateral contracts, checked at load (a contract
naming no member fails there, not hours into the run); a run with them settles with every party's
statement summing to zero, and the report shows what each member would have paid without the
community, the flexibility and redispatch lines and, with a grid, the voltages."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sim import brokers, metrics, report, scenario
from sim.run import run

BILATERAL = {
    "name": "contracts",
    "duration_h": 1,
    "date": "2025-06-21",
    "start_h": 10,
    "market": {
        "scheme": "bilateral",
        "platform_fee": 200,
        "fixed_per_day": 10**10,
        "contracts": [
            {"id": "c1", "consumer": "home", "producer": "roof", "price": 9_000, "subscription": 10**11},
        ],
        "tou": [{"from": "10:00", "to": "11:00", "retail": 25_000}],
    },
    "billing": {"currency": "EUR", "minor_unit": "ct"},
    "community": {"assets": [{"member": "roof", "shares": {"home": 1, "flat": 1}}]},
    "group": [
        {"prefix": "roof", "count": 1, "annual_kwh": 0, "pv_kwp": 10},
        {"prefix": "home", "count": 1, "annual_kwh": 5000},
        {"prefix": "flat", "count": 1, "annual_kwh": 3000},
    ],
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"contracts": [{"consumer": "nobody", "producer": "roof", "price": 9_000}]}, "no member"),
        ({"contracts": [{"consumer": "home", "producer": "roof"}]}, "exactly one of price"),
        ({"contracts": []}, "needs \\[\\[market.contracts\\]\\]"),
        ({"scheme": "pairwise"}, 'bilateral" only'),
        ({"tou": [{"from": "11:00", "to": "10:00", "retail": 1}]}, "market.tou\\[0\\]"),
        ({"fixed_to": "me"}, "fixed_to"),
    ],
)
def test_bad_market_options_fail_at_load(change: dict[str, object], message: str) -> None:
    data = {**BILATERAL, "market": {**BILATERAL["market"], **change}}  # type: ignore[dict-item]
    with pytest.raises(scenario.ScenarioError, match=message):
        scenario.parse(data)


def test_a_bilateral_run_with_every_option_sums_to_zero(tmp_path: Path) -> None:
    sc = scenario.parse(BILATERAL)
    assert sc.market.contracts[0].consumer == "home" and sc.market.currency == ("EUR", "ct", 100)
    r = asyncio.run(asyncio.wait_for(run(sc, brokers.Embedded(), tmp_path), 120))
    assert r.invariants.ok, "\n".join(r.invariants.lines())
    assert sum(b.total for b in r.bills) == 0
    bills = {b.party: b for b in r.bills}
    assert bills["platform"].total > 0  # the subscription, the fixed charges and the platform fee
    assert bills["roof"].total == sum(0 for _ in ()) or bills["roof"].total < 0  # passed on: only its charges
    assert bills["home"].alone < 0
    lines = "\n".join(report.bill_lines(r))
    assert "EUR" in lines and "alone" in lines and "CHF" not in lines
    files = report.write(tmp_path / "out", r, metrics.summarize(r), [])
    html = (tmp_path / "out" / "report.html").read_text()
    assert "without the community" in html and "white-space:pre-wrap" in html
    assert {p.name for p in files} >= {"bills_alone.svg", "report.html"}
