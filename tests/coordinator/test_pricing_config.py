"""The tariff options and bill presentation in the coordinator's TOML: parsed into the site the
composition root builds (time of use, fee matrix, platform fee, assets) and the bills' terms
(fixed charge's payee, currency); a bad value names its key."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from coordinator import config
from coordinator.config import ConfigError
from coordinator.market import PLATFORM, SUPPLIER
from coordinator.service.app import site_of, terms_of

HEAD = '[coordinator]\ngrid = "g1"\nledger = "l.db"\n'
OPTIONS = """
[market]
scheme = "net_metering"
fixed_per_day = 10
fixed_to = "supplier"
platform_fee = 500
[[market.tou]]
days = "mon-fri"
from = "17:00"
to = "21:00"
retail = 28000
[[market.fees]]
zones = ["f1", "f2"]
fee = 1000
[billing]
timezone = "Europe/Zurich"
currency = "EUR"
minor_unit = "ct"
invoice_prefix = "INV"
[[community.assets]]
member = "battery"
shares = { alice = 2, bob = 1 }
"""


def load(tmp: Path, text: str) -> config.Config:
    p = tmp / "c.toml"
    p.write_text(HEAD + text)
    return config.load(p)


def test_every_option_reaches_the_site_and_the_terms(tmp_path: Path) -> None:
    cfg = load(tmp_path, OPTIONS)
    site = site_of(cfg)
    assert site.platform_fee == 500 and site.tariff.fee("f2", "f1") == 1_000
    assert [(a.member, a.shares) for a in site.assets] == [("battery", (("alice", 2), ("bob", 1)))]
    zurich = datetime.datetime(2026, 3, 2, 18, 0, tzinfo=__import__("zoneinfo").ZoneInfo("Europe/Zurich"))
    assert site.tariff_at(int(zurich.timestamp())).retail == 28_000  # Monday 18:00 local
    assert site.tariff_at(int(zurich.timestamp()) + 5 * 86_400).retail == 20_750  # Saturday
    terms = terms_of(cfg)
    assert terms.fixed_to == SUPPLIER and terms.net_metering is not None
    assert terms.currency.code == "EUR" and terms.currency.amount(-1234) == "-12.34"
    assert cfg.invoice_prefix == "INV"
    assert terms_of(load(tmp_path, "")).fixed_to == PLATFORM


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[market]\nfixed_to = "me"\n', "market.fixed_to"),
        ("[market]\nplatform_fee = -1\n", "market.platform_fee"),
        ('[[market.tou]]\nfrom = "21:00"\nto = "17:00"\nretail = 1\n', "market.tou\\[0\\]"),
        ('[[market.tou]]\ndays = "mon-fry"\nfrom = "01:00"\nto = "02:00"\nretail = 1\n', "mon-fry"),
        ('[[market.tou]]\nfrom = "01:00"\nto = "02:00"\nfeed_in = 30000\n', "above retail"),
        ('[[market.fees]]\nzones = ["f1", "f1"]\nfee = 4000\n', "grid_fee_local"),
        ('[[community.assets]]\nmember = "b"\nshares = { b = 1 }\n', "cannot hold shares"),
        ('[billing]\ncurrency = "euro"\n', "ISO 4217"),
        ('[billing]\ninvoice_prefix = "a b"\n', "billing.invoice_prefix"),
        (
            '[market]\nscheme = "bilateral"\n[[market.contracts]]\nid = "c"\nconsumer = "a"\nproducer = "b"\n'
            'start = "2026-01-01"\nend = "2027-01-01"\nprice = 9000\nsubscription_to = "supplier"\n',
            "subscription_to",
        ),
    ],
)
def test_bad_options_name_their_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, text)
