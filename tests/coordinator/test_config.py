"""Coordinator configuration: defaults, relative paths, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator import config
from coordinator.config import ConfigError


def write(tmp: Path, text: str) -> Path:
    p = tmp / "c.toml"
    p.write_text(text)
    return p


def test_minimal_config_and_defaults(tmp_path: Path) -> None:
    c = config.load(write(tmp_path, '[coordinator]\ngrid = "walenstadt"\nledger = "l.db"\n'))
    assert c.grid == "walenstadt" and c.ledger == tmp_path / "l.db"
    assert (c.broker.host, c.broker.port, c.batch, c.flush_ms, c.group) == ("127.0.0.1", 1883, 500, 200, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[coordinator]\nledger = 'x'\n", "coordinator.grid is required"),
        ("[coordinator]\ngrid = 'Bad Grid'\nledger = 'x'\n", "must be an identifier"),
        ("[coordinator]\ngrid = 'g'\nledger = 'x'\n[broker]\nport = 'x'\n", "broker.port must be an integer"),
        ("[coordinator]\ngrid = 'g'\nledger = 'x'\n[broker]\nport = 70000\n", "broker.port must be 1..65535"),
        ("[coordinator]\ngrid = 'g'\nledger = 'x'\n[ingest]\nbatch = 0\n", "ingest.batch must be"),
        ("[coordinator\n", "not valid TOML"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path / "nope.toml")


def test_shipped_example_loads() -> None:
    c = config.load(Path(config.__file__).parent / "example.toml")
    assert (c.grid, c.scheme, c.interval_s, c.tariff) == (
        "walenstadt",
        "pairwise",
        900,
        (4000, 20750, 6000, 3000),
    )
    assert (c.settle_delay_s, c.dispatch_lead_s) == (60, 30)


def test_scheme_options(tmp_path: Path) -> None:
    (tmp_path / "wholesale.csv").write_text("# start,price\n1767225600,9000\n1767226500,9500\n")
    c = config.load(
        write(
            tmp_path,
            """
[coordinator]
grid = "g"
ledger = "l.db"
[market]
scheme = "bilateral"
wholesale = "wholesale.csv"
[[market.contracts]]
id = "c1"
consumer = "carol"
producer = "alice"
start = "2026-01-01"
end = "2028-01-01"
markup = 2000
""",
        )
    )
    assert c.contracts is not None and c.contracts[0].producer == "alice"
    assert c.wholesale == {1767225600: 9000, 1767226500: 9500}
    c = config.load(
        write(
            tmp_path,
            """
[coordinator]
grid = "g"
ledger = "l.db"
[market]
scheme = "self_consumption"
[market.sharing]
keys = { alice = 6000, bob = 4000 }
community_price = 12000
""",
        )
    )
    assert c.sharing is not None and dict(c.sharing.keys) == {"alice": 6000, "bob": 4000}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[market]\nscheme = 'pairwise'\n[market.sharing]\nkeys = { a = 10000 }\n", "applies to scheme"),
        ("[market]\nscheme = 'self_consumption'\n[market.sharing]\nkeys = { a = 20000 }\n", "market: "),
        (
            "[market]\nscheme = 'bilateral'\n[[market.contracts]]\nid = 'c'\nconsumer = 'a'\nproducer = 'b'\n"
            "start = '2026-13-01'\nend = '2027-01-01'\nprice = 1\n",
            "is not YYYY-MM-DD",
        ),
        ("[market]\nscheme = 'bilateral'\nwholesale = 'missing.csv'\n", "cannot read"),
        ("[web]\nlisten = 'localhost'\n", "web.listen must be host:port"),
        ("[web]\nlisten = '127.0.0.1:99999'\n", "web.listen must be host:port"),
        ("[health]\nlisten = ':80'\n", "health.listen must be host:port"),
        ("[market]\ndispatch_lead_s = 900\n", "market.dispatch_lead_s must be 0..interval_s - 1"),
        ("[market]\ndispatch_lead_s = -1\n", "market.dispatch_lead_s must be 0..interval_s - 1"),
    ],
)
def test_scheme_option_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load(write(tmp_path, "[coordinator]\ngrid = 'g'\nledger = 'l.db'\n" + text))


def test_delivery_grid(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(
            write(tmp_path, "[coordinator]\ngrid = 'g'\nledger = 'l.db'\n[delivery]\ngrid = 'nope.toml'\n")
        )
    (tmp_path / "pilot.toml").write_text((Path(__file__).parents[1] / "delivery" / "pilot.toml").read_text())
    c = config.load(
        write(tmp_path, "[coordinator]\ngrid = 'g'\nledger = 'l.db'\n[delivery]\ngrid = 'pilot.toml'\n")
    )
    assert c.grid_file == tmp_path / "pilot.toml"
    pytest.importorskip("pandapower", reason="the delivery check needs the sim extra (pandapower)")
    from coordinator.delivery.assets import Assets
    from coordinator.service.app import grid_check

    check = grid_check(c)
    noon = {"house-01": 10_000, "house-02": 4_600, "school": 50_000, "farm": 30_000, "house-04": 8_000}
    changes = check(noon, {b: Assets(b, pv_w=w) for b, w in noon.items()}).changes
    assert changes and all(x.kind == "pv_limit" and x.delta_w < 0 for x in changes)
