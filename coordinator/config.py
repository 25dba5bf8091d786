"""Coordinator configuration: one TOML file, checked on load with errors that name the key.

[coordinator]
grid = "walenstadt"            # identifier used in MQTT topics
ledger = "/var/lib/peergrid/ledger.db"
auto_enrol = false             # accept a board's enrolment without an operator

[broker]
host = "127.0.0.1"
port = 1883
username = "coordinator"       # optional
password = "..."               # optional
dir = "/etc/peergrid/broker"   # optional: `peergrid broker init`'s directory (retired boards lose
                               # their broker credentials there)

[ingest]
batch = 500                    # readings per SQLite transaction
flush_ms = 200                 # at most this long between a reading's arrival and its commit
group = "ingest"               # optional: MQTT shared subscription for several workers

[billing]
timezone = "Europe/Zurich"     # the community's calendar: bill days and months, contract dates
                               # (default "UTC"); see docs/billing.md
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coordinator.errors import CoordinatorError
from coordinator.market import Contract, Sharing
from coordinator.service.mqtt import BrokerAddress
from coordinator.site import Asset, TouWindow
from protocol.messages import id_ok

if TYPE_CHECKING:
    from coordinator.chargers.settings import OcppSettings


class ConfigError(CoordinatorError):
    """The configuration file is missing, malformed or has a bad value."""


def load_key(path: Path) -> bytes:
    """The coordinator's signing seed; created (mode 0600) on first use."""
    import os

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
    seed = path.read_bytes()
    if len(seed) != 32:
        raise ConfigError(f"{path}: a coordinator key is 32 bytes, found {len(seed)}")
    return seed


@dataclass(frozen=True)
class Config:
    grid: str
    ledger: Path
    broker: BrokerAddress
    auto_enrol: bool = False
    batch: int = 500
    flush_ms: int = 200
    group: str | None = None
    key: Path | None = None  # the coordinator's Ed25519 seed (created on first run, mode 0600)
    scheme: str = "pairwise"
    interval_s: int = 900
    settle_delay_s: int = 60
    dispatch_lead_s: int = 30  # [market] dispatch_lead_s: orders go out this long before their interval
    tariff: tuple[int, int, int, int] = (4_000, 20_750, 6_000, 3_000)
    fixed_per_day: int = 0
    sharing: Sharing | None = None  # self_consumption: allocation keys
    contracts: tuple[Contract, ...] | None = None  # bilateral: chosen-producer contracts
    wholesale: dict[int, int] | None = None
    wholesale_file: Path | None = None  # market.wholesale: re-read by settlement when it changes
    grid_file: Path | None = None  # pilot grid TOML: enables the delivery guard before dispatch
    web_listen: str | None = None  # [web] listen = "host:port": serve the dashboard
    hass: bool = False  # [hass] discovery = true: publish Home Assistant MQTT discovery and states
    log_format: str = "text"  # [log] format = "json": JSON lines (coordinator/service/logs.py)
    log_level: str = "info"
    health_listen: str | None = None  # [health] listen = "host:port": GET /healthz (service/health.py)
    health_max_age_s: int = 900  # [health] max_reading_age_s: older newest reading = unhealthy
    timezone: str = "UTC"  # [billing] timezone: bill days/months and contract dates are its local days
    fixed_to: str = "platform"  # [market] fixed_to: platform | supplier | dso, the fixed charge's payee
    platform_fee: int = 0  # [market] platform_fee: mc/kWh of each local trade, paid by the seller
    tou: tuple[TouWindow, ...] = ()  # [[market.tou]]: time-of-use retail and feed-in (coordinator/site.py)
    zone_fees: tuple[tuple[str, str, int], ...] = ()  # [[market.fees]]: network-fee matrix by zone
    assets: tuple[Asset, ...] = ()  # [[community.assets]]: community-owned assets and their shares
    currency: tuple[str, str, int] = ("CHF", "Rp", 100)  # [billing] currency, minor_unit, minor_per_unit
    invoice_prefix: str = "PG"  # [billing] invoice_prefix: invoice numbers are <prefix>-000001, ...
    flex_baseline: int = 4  # [flexibility] baseline_intervals: a request's baseline, intervals before it
    openadr: Any = None  # [openadr]: coordinator.openadr.config.OpenAdrConfig (poll a VTN as a VEN)
    ocpp: OcppSettings | None = None  # [ocpp] listen = "host:port": the chargers' central system
    broker_dir: Path | None = None  # [broker] dir: the broker directory of `peergrid broker init`


def _get(t: dict[str, Any], key: str, where: str, kind: type, default: Any = None) -> Any:
    v = t.get(key, default)
    if v is None:
        raise ConfigError(f"{where}.{key} is required")
    if kind is int and (type(v) is not int):
        raise ConfigError(f"{where}.{key} must be an integer, got {v!r}")
    if kind is not int and not isinstance(v, kind):
        raise ConfigError(f"{where}.{key} must be a {kind.__name__}, got {v!r}")
    return v


def load(path: str | Path) -> Config:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text: {e.reason} at byte {e.start}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    for name in ("coordinator", "broker", "ingest", "market", "delivery", "web", "hass", "log", "health"):
        if not isinstance(data.get(name, {}), dict):
            raise ConfigError(f"{p}: [{name}] must be a table, got {data[name]!r}")
    if not isinstance(data.get("billing", {}), dict):
        raise ConfigError(f"{p}: [billing] must be a table, got {data['billing']!r}")
    c = data.get("coordinator") or {}
    b = data.get("broker") or {}
    i = data.get("ingest") or {}
    grid = _get(c, "grid", "coordinator", str)
    if not id_ok(grid):
        raise ConfigError(f"coordinator.grid {grid!r} must be an identifier ([a-z0-9_-], 1-32)")
    ledger = Path(_get(c, "ledger", "coordinator", str))
    if not ledger.is_absolute():
        ledger = p.parent / ledger
    port = _get(b, "port", "broker", int, 1883)
    if not 1 <= port <= 65535:
        raise ConfigError(f"broker.port must be 1..65535, got {port}")
    batch = _get(i, "batch", "ingest", int, 500)
    flush = _get(i, "flush_ms", "ingest", int, 200)
    if not 1 <= batch <= 100_000 or not 1 <= flush <= 60_000:
        raise ConfigError("ingest.batch must be 1..100000 and ingest.flush_ms 1..60000")
    group = i.get("group")
    if group is not None and not id_ok(group):
        raise ConfigError(f"ingest.group {group!r} must be an identifier")
    m = data.get("market") or {}
    from coordinator.market import SCHEMES

    scheme = _get(m, "scheme", "market", str, "pairwise")
    if scheme not in SCHEMES:
        raise ConfigError(f"market.scheme {scheme!r} is not one of {', '.join(SCHEMES)}")
    interval_s = _get(m, "interval_s", "market", int, 900)
    if not 60 <= interval_s <= 86_400 or 86_400 % interval_s:
        raise ConfigError(f"market.interval_s must divide a day and be 60..86400, got {interval_s}")
    lead = _get(m, "dispatch_lead_s", "market", int, 30)
    if not 0 <= lead < interval_s:
        raise ConfigError(f"market.dispatch_lead_s must be 0..interval_s - 1 ({interval_s - 1}), got {lead}")
    timezone = _timezone(data.get("billing") or {}, interval_s)
    tariff = tuple(
        _get(m, k, "market", int, d)
        for k, d in (("feed_in", 4_000), ("retail", 20_750), ("grid_fee", 6_000), ("grid_fee_local", 3_000))
    )
    sharing, contracts, wholesale_file = _scheme_options(m, scheme, p.parent, timezone)
    wholesale = None if wholesale_file is None else load_wholesale(wholesale_file)
    dl = data.get("delivery") or {}
    grid_file = None
    if "grid" in dl:
        grid_file = Path(str(dl["grid"]))
        grid_file = grid_file if grid_file.is_absolute() else p.parent / grid_file
        if not grid_file.exists():
            raise ConfigError(f"delivery.grid: {grid_file} does not exist")
    key = _get(c, "key", "coordinator", str, "coordinator.key")
    key_path = Path(key) if Path(key).is_absolute() else p.parent / key
    return Config(
        key=key_path,
        scheme=scheme,
        interval_s=interval_s,
        settle_delay_s=_get(m, "settle_delay_s", "market", int, 60),
        dispatch_lead_s=lead,
        tariff=(tariff[0], tariff[1], tariff[2], tariff[3]),
        fixed_per_day=_get(m, "fixed_per_day", "market", int, 0),
        sharing=sharing,
        contracts=contracts,
        wholesale=wholesale,
        wholesale_file=wholesale_file,
        grid_file=grid_file,
        web_listen=_listen(_get(data.get("web") or {}, "listen", "web", str, "") or None, "web.listen"),
        hass=bool((data.get("hass") or {}).get("discovery", False)),
        grid=grid,
        ledger=ledger,
        broker=BrokerAddress(
            host=_get(b, "host", "broker", str, "127.0.0.1"),
            port=port,
            username=b.get("username"),
            password=_password(b, p.parent),
            tls=_tls(b, p.parent),
        ),
        **_ops(data),
        **_p2s(data, p.parent),
        **_pricing(data, m, tariff),
        broker_dir=_broker_dir(b, p.parent),
        auto_enrol=bool(c.get("auto_enrol", False)),
        batch=batch,
        flush_ms=flush,
        group=group,
        timezone=timezone,
        ocpp=_ocpp(data.get("ocpp"), p.parent),
    )


def _pricing(data: dict[str, Any], m: dict[str, Any], tariff: tuple[int, ...]) -> dict[str, Any]:
    """The tariff's options (coordinator/site.py): ``[market] fixed_to``, ``platform_fee``,
    ``[[market.tou]]``, ``[[market.fees]]``, ``[[community.assets]]``; and how bills are shown:
    ``[billing] currency``, ``minor_unit``, ``minor_per_unit``, ``invoice_prefix``."""
    from coordinator.market import MarketError, Tariff
    from coordinator.site import SiteError, parse_assets, parse_fees, parse_tou
    from coordinator.transaction.billing import PAYEES, BillingError, Currency

    fixed_to = _get(m, "fixed_to", "market", str, "platform")
    if fixed_to not in PAYEES:
        raise ConfigError(f"market.fixed_to {fixed_to!r} is not one of {', '.join(PAYEES)}")
    fee = _get(m, "platform_fee", "market", int, 0)
    if not 0 <= fee <= tariff[1]:
        raise ConfigError(f"market.platform_fee must be 0..retail ({tariff[1]}) mc/kWh, got {fee}")
    community = data.get("community") or {}
    if not isinstance(community, dict):
        raise ConfigError(f"[community] must be a table, got {community!r}")
    bl = data.get("billing") or {}
    try:
        zone_fees = parse_fees(m.get("fees"))
        base = Tariff(tariff[0], tariff[1], tariff[2], tariff[3], zone_fees)
        tou = parse_tou(m.get("tou"), base)
        assets = parse_assets(community.get("assets"))
        cur = Currency(
            _get(bl, "currency", "billing", str, "CHF"),
            _get(bl, "minor_unit", "billing", str, "Rp"),
            _get(bl, "minor_per_unit", "billing", int, 100),
        )
    except (SiteError, BillingError) as e:
        raise ConfigError(str(e)) from None
    except MarketError as e:
        raise ConfigError(f"market.fees: {e}") from None
    prefix = _get(bl, "invoice_prefix", "billing", str, "PG")
    if not (prefix.isascii() and prefix.replace("-", "").isalnum() and 0 < len(prefix) <= 12):
        raise ConfigError(f"billing.invoice_prefix {prefix!r} must be 1-12 letters, digits or '-'")
    return {
        "fixed_to": fixed_to,
        "platform_fee": fee,
        "tou": tou,
        "zone_fees": zone_fees,
        "assets": assets,
        "currency": (cur.code, cur.minor, cur.per_unit),
        "invoice_prefix": prefix,
    }


def _broker_dir(b: dict[str, Any], base: Path) -> Path | None:
    """``[broker] dir``: where `peergrid broker init` keeps the credentials (boards retired or
    replaced lose theirs there); default ``/etc/peergrid/broker`` when that directory exists."""
    if "dir" not in b:
        default = Path("/etc/peergrid/broker")
        return default if (default / "site.json").exists() else None
    d = Path(_get(b, "dir", "broker", str))
    d = d if d.is_absolute() else base / d
    if not (d / "site.json").exists():
        raise ConfigError(f"broker.dir: {d} is not a broker directory (peergrid broker init)")
    return d


def _ocpp(t: object, base: Path) -> OcppSettings | None:
    """``[ocpp]``: the OCPP central system (coordinator/chargers/settings.py); its file paths are
    relative to the config's directory."""
    from coordinator.chargers import ChargerError
    from coordinator.chargers.settings import parse

    try:
        return parse(t, base)
    except ChargerError as e:
        raise ConfigError(str(e)) from None


def _timezone(bl: dict[str, Any], interval_s: int) -> str:
    """``[billing] timezone``: an IANA zone whose local midnight is always an interval boundary."""
    from coordinator.transaction.billing import BillingError, check_zone

    name: str = _get(bl, "timezone", "billing", str, "UTC")
    try:
        check_zone(name, interval_s)
    except BillingError as e:
        raise ConfigError(f"billing.timezone: {e}") from None
    return name


def _date(v: object, where: str, timezone: str = "UTC") -> int:
    """A ``YYYY-MM-DD`` day of the billing time zone as the instant it starts (Unix s)."""
    from coordinator.transaction.billing import BillingError
    from coordinator.transaction.export import ExportError, parse_day

    if not isinstance(v, str):
        raise ConfigError(f"{where} must be a date string YYYY-MM-DD")
    try:
        return parse_day(v, timezone)
    except ExportError:
        raise ConfigError(f"{where} {v!r} is not YYYY-MM-DD") from None
    except BillingError as e:
        raise ConfigError(f"{where}: {e}") from None


def _scheme_options(m: dict[str, Any], scheme: str, base: Path, timezone: str) -> tuple[Any, Any, Any]:
    """``[market.sharing]``, ``[[market.contracts]]`` (start and end: local days of the billing
    time zone) and the ``market.wholesale`` file's path, checked by the market's own types (their
    errors name the problem)."""
    from coordinator.market import Contract, MarketError, Sharing

    sharing = contracts = wholesale = None
    try:
        if "sharing" in m:
            if scheme != "self_consumption":
                raise ConfigError('market.sharing applies to scheme = "self_consumption" only')
            sh = m["sharing"]
            sharing = Sharing(keys=sh.get("keys"), community_price=sh.get("community_price"))
        if scheme == "bilateral":
            items = m.get("contracts", [])
            contracts = tuple(
                Contract(
                    contract_id=str(x.get("id")),
                    consumer=x.get("consumer"),
                    producer=x.get("producer"),
                    start=_date(x.get("start"), f"market.contracts[{i}].start", timezone),
                    end=_date(x.get("end"), f"market.contracts[{i}].end", timezone),
                    price=x.get("price"),
                    markup=x.get("markup"),
                    floor=x.get("floor"),
                    cap=x.get("cap"),
                    subscription=x.get("subscription", 0),
                    subscription_to=x.get("subscription_to", "platform"),
                )
                for i, x in enumerate(items)
            )
            if "wholesale" in m:
                wholesale = base / str(m["wholesale"])
        elif "contracts" in m or "wholesale" in m:
            raise ConfigError('market.contracts and market.wholesale apply to scheme = "bilateral" only')
    except MarketError as e:
        raise ConfigError(f"market: {e}") from None
    return sharing, contracts, wholesale


def load_wholesale(path: Path) -> dict[int, int]:
    """The ``market.wholesale`` CSV: ``interval_start,price_mc_per_kwh`` lines ('#' comments)."""
    out: dict[int, int] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            t, price = line.split(",")
            out[int(t)] = int(price)
        except ValueError:
            raise ConfigError(f"{path}:{n}: expected interval_start,price_mc_per_kwh, got {line!r}") from None
    return out


def _password(b: dict[str, Any], base: Path) -> str | None:
    """``broker.password``, or ``broker.password_file`` (keeps the secret out of this file)."""
    if "password_file" not in b:
        pw = b.get("password")
        if pw is not None and not isinstance(pw, str):
            raise ConfigError("broker.password must be a string")
        return pw
    f = base / str(b["password_file"])
    try:
        return f.read_text().strip()
    except OSError as e:
        raise ConfigError(f"broker.password_file: cannot read {f}: {e.strerror}") from None


def _tls(b: dict[str, Any], base: Path) -> Any:
    """``broker.tls = true`` (with ``broker.ca``, the site CA's certificate): an SSL context."""
    import ssl

    if not _get(b, "tls", "broker", bool, False):
        if "ca" in b:
            raise ConfigError("broker.ca is set but broker.tls is not true")
        return None
    ca = base / str(b["ca"]) if "ca" in b else None
    if ca is not None and not ca.exists():
        raise ConfigError(f"broker.ca: {ca} does not exist")
    try:
        return ssl.create_default_context(cafile=str(ca) if ca else None)
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(f"broker.ca: {ca} is not a PEM certificate: {e}") from None


def _listen(v: object, where: str) -> str | None:
    if v is None:
        return None
    host, _, port = str(v).rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{where} must be host:port with port 1..65535, got {v!r}")
    return str(v)


def _ops(data: dict[str, Any]) -> dict[str, Any]:
    """``[log]`` and ``[health]``."""
    from coordinator.service.logs import FORMATS, LEVELS

    lg = data.get("log") or {}
    fmt = _get(lg, "format", "log", str, "text")
    level = _get(lg, "level", "log", str, "info")
    if fmt not in FORMATS:
        raise ConfigError(f"log.format {fmt!r} is not one of {', '.join(FORMATS)}")
    if level not in LEVELS:
        raise ConfigError(f"log.level {level!r} is not one of {', '.join(LEVELS)}")
    h = data.get("health") or {}
    age = _get(h, "max_reading_age_s", "health", int, 900)
    if not 10 <= age <= 7 * 86_400:
        raise ConfigError(f"health.max_reading_age_s must be 10..604800, got {age}")
    return {
        "log_format": fmt,
        "log_level": level,
        "health_listen": _listen(h.get("listen"), "health.listen"),
        "health_max_age_s": age,
    }


def _p2s(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """``[flexibility]`` and ``[openadr]`` (coordinator/openadr/config.py checks the latter)."""
    fl = data.get("flexibility") or {}
    if not isinstance(fl, dict):
        raise ConfigError(f"[flexibility] must be a table, got {fl!r}")
    n = _get(fl, "baseline_intervals", "flexibility", int, 4)
    if not 1 <= n <= 96:
        raise ConfigError(f"flexibility.baseline_intervals must be 1..96, got {n}")
    oa = None
    if "openadr" in data:
        from coordinator.openadr.config import parse

        oa = parse(data["openadr"], base)
    return {"flex_baseline": n, "openadr": oa}
