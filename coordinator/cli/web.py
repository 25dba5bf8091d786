"""The ``dashboard``, ``audit``, ``export`` and ``dispute`` commands, and the dashboard / Home
Assistant services that ``coordinator run`` starts when the config asks for them."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from coordinator.errors import CoordinatorError
from coordinator.market import Contract, Tariff

if TYPE_CHECKING:
    from coordinator.ledger import Ledger
    from coordinator.web.api import Site

DEFAULT_TARIFF = (4_000, 20_750, 6_000, 3_000)


@dataclass(frozen=True)
class Source:
    """Where a command reads from: a coordinator config, or a bare ledger file."""

    ledger: Path
    grid: str
    tariff: Tariff
    fixed_per_day: int
    key_file: Path | None
    web_listen: str | None = None  # the config's [web] listen, if any
    contracts: tuple[Contract, ...] = ()  # chosen-producer subscriptions on bills
    timezone: str = "UTC"  # [billing] timezone: periods are its local days


def _source(args: argparse.Namespace) -> Source:
    from coordinator import config

    if getattr(args, "config", None):
        if getattr(args, "timezone", None):
            raise CoordinatorError("--timezone goes with --ledger: with --config, [billing] timezone applies")
        cfg = config.load(args.config)
        return Source(
            cfg.ledger,
            cfg.grid,
            Tariff(*cfg.tariff),
            cfg.fixed_per_day,
            cfg.key,
            cfg.web_listen,
            cfg.contracts or (),
            cfg.timezone,
        )
    if getattr(args, "ledger", None):
        from coordinator.transaction.billing import check_zone

        p = Path(args.ledger)
        if not p.exists():
            raise CoordinatorError(f"{p}: no such ledger")
        tz = getattr(args, "timezone", None) or "UTC"
        check_zone(tz)
        return Source(p, args.grid, Tariff(*DEFAULT_TARIFF), 0, None, timezone=tz)
    raise CoordinatorError("give --config FILE (or --ledger FILE --grid ID)")


def _coordinator_key(src: Source) -> bytes | None:
    if src.key_file is None or not src.key_file.exists():
        return None
    from coordinator import config
    from protocol import crypto

    return crypto.SigningKey(config.load_key(src.key_file)).public


def _site(src: Source, ledger: Ledger, live: bool) -> Site:
    from coordinator.transaction.audit.bundle import Charges
    from coordinator.web.api import Site

    charges = Charges(src.tariff, src.fixed_per_day, contracts=src.contracts, timezone=src.timezone)
    return Site(ledger, src.grid, charges, _coordinator_key(src), live=live)


def _dashboard_serve(args: argparse.Namespace) -> int:
    import signal

    from coordinator.ledger import Ledger
    from coordinator.web.server import serve

    src = _source(args)
    listen = args.listen or src.web_listen or "127.0.0.1:8080"

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with Ledger.open(src.ledger) as ledger:
            await serve(_site(src, ledger, args.live), listen, stop)

    asyncio.run(main())
    return 0


def _dashboard_token(args: argparse.Namespace) -> int:
    from coordinator.ledger import Ledger
    from coordinator.web import auth

    src = _source(args)
    with Ledger.open(src.ledger) as ledger:
        now = int(time.time())
        if args.revoke:
            if not auth.revoke(ledger, args.revoke, now=now):
                raise CoordinatorError("no such active token")
            print("token revoked")
            return 0
        if not args.operator and not args.member:
            raise CoordinatorError("give --member ID or --operator")
        token = auth.issue(ledger, None if args.operator else args.member, now=now, label=args.label)
    who = "an operator" if args.operator else f"member {args.member}"
    print(token)
    print(f"(a token for {who}; shown once, only its hash is stored)", file=sys.stderr)
    return 0


def _audit_export(args: argparse.Namespace) -> int:
    from coordinator.ledger import Ledger
    from coordinator.transaction import billing
    from coordinator.transaction.audit import AuditError
    from coordinator.transaction.audit.bundle import Charges, bundle, dumps
    from coordinator.transaction.export import parse_period

    src = _source(args)
    key = _coordinator_key(src)
    if key is None:
        raise AuditError("the coordinator key is needed to name the key its results are signed with")
    start, end = parse_period(args.period, src.timezone)
    with Ledger.open(src.ledger) as ledger:
        known = {m.id: m for m in ledger.members()}
        sub = billing.subscription_per_day(known.get(args.member))
        charges = Charges(src.tariff, src.fixed_per_day, sub, src.contracts, src.timezone)
        b = bundle(ledger, src.grid, args.member, start, end, charges, key)
    out = Path(args.out or f"audit-{args.member}-{args.period.replace('..', '_')}.json")
    out.write_text(dumps(b))
    print(
        f"audit bundle {out}: member {args.member}, {len(b['intervals'])} intervals, "
        f"{len(b['readings'])} signed readings"
    )
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from coordinator.transaction.audit.verify import hexbytes, load, verify_bundle
    from coordinator.transaction.billing import ACCOUNTS, cents

    b = load(args.bundle)
    pinned = hexbytes(args.coordinator_key, "--coordinator-key") if args.coordinator_key else None
    rep = verify_bundle(b, pinned)
    for w in rep.warnings:
        print(f"note     {w}")
    for p in rep.problems:
        print(f"PROBLEM  {p}")
    print(f"coordinator key {rep.coordinator_key}{' (pinned)' if pinned else ' (from the bundle)'}")
    print(
        f"bill of {rep.member}, recomputed from {rep.readings} signed readings and "
        f"{rep.intervals} signed results (fixed charges for {rep.days} day{'' if rep.days == 1 else 's'} "
        f"of {rep.zone}):"
    )
    for account, (energy, amount) in rep.lines.items():
        kwh = f"{abs(energy) / 1e6:10.3f} kWh" if energy else " " * 14
        print(f"  {ACCOUNTS.get(account, account):<52} {kwh} {cents(amount) / 100:>10.2f}")
    print(f"  {'Total (+ credit, - to pay)':<52} {'':>14} {cents(rep.total) / 100:>10.2f}")
    print("audit verify: OK" if rep.ok else f"audit verify: FAILED, {len(rep.problems)} problems")
    return 0 if rep.ok else 1


def _export(args: argparse.Namespace) -> int:
    from coordinator.ledger import Ledger
    from coordinator.transaction.export import export_csv, parse_period

    src = _source(args)
    start, end = parse_period(args.period, src.timezone)
    with Ledger.open(src.ledger) as ledger:
        text = export_csv(
            ledger, args.kind, start, end, args.member, src.fixed_per_day, src.contracts, src.timezone
        )
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _dispute(args: argparse.Namespace) -> int:
    from coordinator.ledger import Ledger
    from coordinator.transaction.audit import dispute

    src = _source(args)
    with Ledger.open(src.ledger) as ledger:
        if args.action == "flag":
            d = dispute.flag(ledger, args.member, args.interval, args.reason, now=int(time.time()))
            ev = d.evidence
            print(
                f"dispute #{d.id}: member {d.member}, interval {d.interval}: {d.reason}\n"
                f"evidence: measured {ev['measured']}, {len(ev['spans'])} board spans, "
                f"{len(ev['trades'])} trades, {len(ev['postings'])} postings, "
                f"signed result {'present' if ev['result_frame'] else 'missing'}"
            )
        else:
            for d in dispute.disputes(ledger, args.member):
                print(f"#{d.id:<4} {d.member:<16} {d.interval} {d.status:<8} {d.reason}")
    return 0


def _source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="coordinator TOML file")
    p.add_argument("--ledger", help="a ledger file instead of --config")
    p.add_argument("--grid", default="demo", help="grid id with --ledger")
    p.add_argument("--timezone", help="billing time zone with --ledger (default UTC; a config's [billing])")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the commands to ``peergrid``'s subparsers."""
    d = sub.add_parser("dashboard", help="the web dashboard and its access tokens")
    dsub = d.add_subparsers(dest="action", required=True)
    s = dsub.add_parser(
        "serve", help="serve the dashboard over an existing ledger (no ingest, no settlement)"
    )
    _source_args(s)
    s.add_argument("--listen", help="host:port (default: [web] listen, else 127.0.0.1:8080)")
    s.add_argument("--live", action="store_true", help="'now' is the clock, not the newest reading")
    s.set_defaults(func=_dashboard_serve)
    t = dsub.add_parser("token", help="issue (or revoke) an access token")
    _source_args(t)
    t.add_argument("--member", help="a token that reads this member's data only")
    t.add_argument("--operator", action="store_true", help="a token that reads everything")
    t.add_argument("--label", default="", help="a note kept with the token")
    t.add_argument("--revoke", metavar="TOKEN", help="revoke this token")
    t.set_defaults(func=_dashboard_token)

    a = sub.add_parser("audit", help="audit bundles a member can check offline")
    asub = a.add_subparsers(dest="action", required=True)
    ae = asub.add_parser("export", help="write a member's audit bundle for a period")
    _source_args(ae)
    ae.add_argument("--member", required=True)
    ae.add_argument(
        "--period", required=True, help="YYYY-MM, YYYY-MM-DD or FROM..TO (local days of [billing] timezone)"
    )
    ae.add_argument("--out", help="file to write (default audit-MEMBER-PERIOD.json)")
    ae.set_defaults(func=_audit_export)
    av = asub.add_parser("verify", help="check every signature in a bundle and recompute the bill")
    av.add_argument("bundle")
    av.add_argument("--coordinator-key", help="hex public key the results must be signed with")
    av.set_defaults(func=_audit_verify)

    e = sub.add_parser("export", help="CSV of readings, trades or bills")
    e.add_argument("kind", choices=["readings", "trades", "bills"])
    _source_args(e)
    e.add_argument(
        "--period", required=True, help="YYYY-MM, YYYY-MM-DD or FROM..TO (local days of [billing] timezone)"
    )
    e.add_argument("--member", help="one member (default: all)")
    e.add_argument("--out", help="file (default: standard output)")
    e.set_defaults(func=_export)

    ds = sub.add_parser("dispute", help="members' disputes of settled intervals")
    dss = ds.add_subparsers(dest="action", required=True)
    df = dss.add_parser("flag", help="flag an interval; the record keeps the evidence")
    _source_args(df)
    df.add_argument("--member", required=True)
    df.add_argument("--interval", type=int, required=True, help="the interval's start, Unix seconds")
    df.add_argument("--reason", required=True)
    dl = dss.add_parser("list")
    _source_args(dl)
    dl.add_argument("--member")
    for x in (df, dl):
        x.set_defaults(func=_dispute)


