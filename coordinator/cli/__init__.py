"""The ``peergrid`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from coordinator import __version__
from coordinator.cli import board as cli_board
from coordinator.cli import chargers as cli_chargers
from coordinator.cli import p2s as cli_p2s
from coordinator.cli import web as cli_web
from coordinator.errors import CoordinatorError
from coordinator.service.mqtt import BrokerAddress


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sim import demo

    broker = BrokerAddress.parse(args.broker) if args.broker else None
    result = asyncio.run(
        demo.run(
            broker=broker,
            scenario=args.scenario,
            hours=args.hours,
            homes=args.homes,
            step_s=args.step,
            speedup=args.speedup,
            out_dir=Path(args.out),
            mosquitto=args.mosquitto,
            boards=args.boards,
            faults=args.faults,
        )
    )
    return 0 if result.ok else 1


def _coordinator_run(args: argparse.Namespace) -> int:
    import signal

    from coordinator import config
    from coordinator.service import app, logs

    cfg = config.load(args.config)
    logs.setup(cfg.log_format, cfg.log_level)
    svc = app.build(cfg, app.Runtime(client_id=args.client_id, ingest_only=args.ingest_only))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(
            f"peergrid coordinator: grid {cfg.grid!r}, ledger {cfg.ledger}, "
            f"broker {cfg.broker.host}:{cfg.broker.port}, key {svc.key.public.hex()}",
            flush=True,
        )
        try:
            await svc.run(stop)
        finally:
            await svc.close()

    asyncio.run(main())
    return 0


def _ledger_verify(args: argparse.Namespace) -> int:
    from coordinator import config
    from coordinator.ledger import Ledger
    from coordinator.ledger.verify import verify

    cfg = config.load(args.config)
    with Ledger.open(cfg.ledger) as ledger:
        rep = verify(ledger, cfg.grid)
    for w in rep.warnings:
        print(f"note    {w}")
    for p in rep.problems:
        print(f"PROBLEM {p}")
    print(
        f"ledger verify: {rep.readings} readings, {rep.intervals} intervals, "
        f"{len(rep.problems)} problems{'' if rep.ok else ' (first 50 shown)'}, {len(rep.warnings)} warnings"
    )
    return 0 if rep.ok else 1


def _members(args: argparse.Namespace) -> int:
    import datetime
    import time

    from coordinator import config
    from coordinator.ledger import Ledger
    from coordinator.members import MemberPrefs
    from coordinator.transaction import billing
    from coordinator.transaction.export import parse_day

    cfg = config.load(args.config)
    tz = cfg.timezone
    with Ledger.open(cfg.ledger) as ledger:
        if args.action == "add":
            given = {
                k: v
                for k, v in (
                    ("min_sell", args.min_sell),
                    ("max_buy", args.max_buy),
                    ("subscription_per_day", args.subscription_per_day),
                )
                if v is not None
            }
            prefs = MemberPrefs.parse(args.id, given)  # a bad value names the member and the field
            joined = int(time.time()) if args.joined is None else parse_day(args.joined, tz)
            ledger.add_member(
                args.id,
                args.name,
                args.role,
                now=joined,
                feeder=args.feeder,
                bus=args.bus,
                prefs=prefs,
            )
            print(f"member {args.id} added, a member from {billing.local_day(joined, tz)}")
        elif args.action == "approve":
            ledger.activate_board(args.board, args.member)
            print(f"board {args.board} enrolled for member {args.member}")
        elif args.action == "leave":
            if args.at is None:
                left = int(time.time())
            else:  # the member's last day: it leaves as the next local day starts
                last_day = billing.local_day(parse_day(args.at, tz), tz)
                left = billing.day_start(last_day + datetime.timedelta(days=1), tz)
            last = billing.record_leave(ledger, args.id, left, tz)
            boards = [b.board_id for b in ledger.boards("active") if b.member_id == args.id]
            print(f"member {args.id} left: fixed charges and subscriptions up to {last} included")
            if boards:
                print(
                    f"its boards are still active and settled: {', '.join(boards)} "
                    "(peergrid board retire --board ID when they are removed)"
                )
        else:
            for m in ledger.members():
                since = f"from {billing.local_day(m.created, tz)}"
                if m.left_at is not None:
                    since += f" to {billing.local_day(m.left_at - 1, tz)}"
                print(f"{m.id:<16} {m.role:<9} feeder {m.feeder or '-':<8} {m.name} ({since})")
            for b in ledger.boards():
                print(
                    f"  board {b.board_id:<16} {b.status:<8} member {b.member_id or '-':<16} {b.board_type}"
                )
    return 0


def _bill(args: argparse.Namespace) -> int:
    from pathlib import Path

    from coordinator import config
    from coordinator.ledger import Ledger
    from coordinator.market import Tariff
    from coordinator.service.app import terms_of
    from coordinator.transaction import billing, invoice
    from coordinator.transaction.export import parse_day, parse_period

    cfg = config.load(args.config)
    if args.period is not None:
        if args.start is not None or args.end is not None:
            raise CoordinatorError("give --period or --from and --to, not both")
        start, end = parse_period(args.period, cfg.timezone)
    elif args.start is None or args.end is None:
        raise CoordinatorError("give --period YYYY-MM (or a day, or FROM..TO), or --from and --to")
    else:
        start, end = parse_day(args.start, cfg.timezone), parse_day(args.end, cfg.timezone)
    terms = terms_of(cfg)
    with Ledger.open(cfg.ledger) as ledger:
        known = {m.id: m for m in ledger.members()}
        if args.member and args.member not in known:
            raise CoordinatorError(f"no member {args.member!r}")
        sts = [
            billing.statement(ledger, m, start, end, terms=terms)
            for m in ([args.member] if args.member else list(known))
        ]
        if args.issue:
            key = None
            if cfg.key is not None and cfg.key.exists():
                from protocol import crypto

                key = crypto.SigningKey(config.load_key(cfg.key)).public
            issuer = invoice.Issuer(cfg.grid, Tariff(*cfg.tariff), key, cfg.invoice_prefix)
            out = Path(args.out) if args.out else None
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
            for st in sts:
                d = invoice.issue(ledger, st, terms, issuer, name=known[st.member].name)
                where = ""
                if out is not None:
                    (out / f"{d.number}.html").write_bytes(d.html)
                    where = f", {out / (d.number + '.html')}"
                total = terms.currency.amount(billing.cents(d.total))
                print(f"invoice {d.number}: {d.member} {d.period}, total {total} {d.currency}{where}")
    if args.csv:
        print(billing.to_csv(sts), end="")
    else:
        for s in sts:
            print(billing.render(s, terms.currency))
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    from pathlib import Path

    from coordinator import config
    from coordinator.ledger import Ledger
    from coordinator.market import Tariff
    from coordinator.transaction import reconcile

    cfg = config.load(args.config)
    try:
        rows = reconcile.parse_csv(Path(args.file).read_text())
    except OSError as e:
        raise CoordinatorError(f"{args.file}: cannot read: {e.strerror}") from None
    with Ledger.open(cfg.ledger) as ledger:
        reconcile.store(ledger, rows)
        for a, *_ in rows:
            r = reconcile.reconcile(ledger, a, Tariff(*cfg.tariff))
            print(
                f"period {a}..{r.period_end}: utility import {r.utility_imp / 1e6:.3f} kWh vs settled "
                f"{r.settled_imp / 1e6:.3f} kWh ({r.diff_imp / 1e6:+.3f}); "
                f"export {r.utility_exp / 1e6:.3f} vs "
                f"{r.settled_exp / 1e6:.3f} kWh ({-r.diff_exp / 1e6:+.3f}); apportioned to "
                f"{r.members} member{'' if r.members == 1 else 's'}"
            )
    return 0


def _quarantine(args: argparse.Namespace) -> int:
    import getpass
    import time

    from coordinator import config
    from coordinator.ledger import Ledger, quarantine

    cfg = config.load(args.config)
    with Ledger.open(cfg.ledger) as ledger:
        if args.action == "list":
            rows = quarantine.listing(ledger, state=None if args.all else "held", board=args.board)
            for h in rows:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(h.ts))
                decided = f" by {h.decided_by} at {h.decided_at}" if h.decided_by else ""
                print(
                    f"{h.board_id:<16} seq {h.seq:<8} {when} UTC  import {h.e_imp / 1e6:.3f} kWh "
                    f"export {h.e_exp / 1e6:.3f} kWh  {h.state}{decided}: {h.reason}"
                )
            print(f"{len(rows)} readings {'in quarantine' if args.all else 'held'}")
            return 0
        who = f"cli:{args.by or getpass.getuser()}"
        if args.action == "release":
            n = quarantine.release(ledger, args.board, by=who, now=int(time.time()))
            print(f"board {args.board}: {n} held readings stored as readings (settled in the next interval)")
        else:
            n = quarantine.reject(ledger, args.board, by=who, now=int(time.time()))
            print(
                f"board {args.board}: {n} held readings rejected; its readings are refused until it is "
                "retired or replaced (peergrid board retire / replace)"
            )
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="peergrid", description=__doc__)
    p.add_argument("--version", action="version", version=f"peergrid {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="simulate a community for a day on the embedded broker, with a report")
    d.add_argument("--scenario", default="quartierstrom", metavar="NAME|FILE", help="name or TOML file")
    d.add_argument("--out", default="peergrid-demo", help="directory for the plots and the HTML report")
    d.add_argument("--broker", metavar="HOST[:PORT]", help="use this MQTT broker (e.g. Mosquitto)")
    d.add_argument("--mosquitto", action="store_true", help="start a local Mosquitto")
    d.add_argument("--hours", type=float, help="simulated hours (default: the scenario's)")
    d.add_argument("--homes", type=int, help="simulate only N of the scenario's homes")
    d.add_argument("--step", type=int, help="simulated seconds between readings (divides the interval)")
    d.add_argument("--speedup", type=float, help="simulated/real time (default: max)")
    d.add_argument("--boards", choices=["virtual", "firmware", "micropython"], help="board kind")
    d.add_argument("--faults", action="store_true", help="inject every fault (needs --mosquitto or --broker)")
    d.set_defaults(func=_demo)

    c = sub.add_parser("coordinator", help="the coordinator service")
    csub = c.add_subparsers(dest="action", required=True)
    run = csub.add_parser("run", help="ingest readings into the ledger (until SIGTERM)")
    run.add_argument("--config", required=True, help="coordinator TOML file")
    run.add_argument("--client-id", help="MQTT client id (one per worker process)")
    run.add_argument("--ingest-only", action="store_true", help="an extra ingest worker: no settlement")
    run.set_defaults(func=_coordinator_run)

    led = sub.add_parser("ledger", help="ledger tools")
    lsub = led.add_subparsers(dest="action", required=True)
    v = lsub.add_parser("verify", help="re-check every signature, register and posting")
    v.add_argument("--config", required=True)
    v.set_defaults(func=_ledger_verify)

    mem = sub.add_parser("members", help="members and their boards")
    msub = mem.add_subparsers(dest="action", required=True)
    ml = msub.add_parser("list")
    ml.add_argument("--config", required=True)
    ma = msub.add_parser("add")
    ma.add_argument("--config", required=True)
    ma.add_argument("--id", required=True)
    ma.add_argument("--name", required=True)
    ma.add_argument(
        "--role", default="prosumer", choices=["consumer", "prosumer", "storage", "ev", "producer"]
    )
    ma.add_argument("--feeder")
    ma.add_argument("--bus")
    ma.add_argument("--min-sell", type=int, help="lowest price to sell at, mc/kWh (default: feed-in)")
    ma.add_argument("--max-buy", type=int, help="highest price to buy at, mc/kWh (default: retail)")
    ma.add_argument("--subscription-per-day", type=int, help="subscription fee, nano-cent per day")
    ma.add_argument(
        "--joined", metavar="YYYY-MM-DD", help="first day of membership, local (default: now); fees from it"
    )
    mp = msub.add_parser("approve", help="enrol a board that asked to join, for a member")
    mp.add_argument("--config", required=True)
    mp.add_argument("--board", required=True)
    mp.add_argument("--member", required=True)
    mv = msub.add_parser("leave", help="record that a member left: no fixed charges after its last day")
    mv.add_argument("--config", required=True)
    mv.add_argument("--id", required=True)
    mv.add_argument(
        "--at", metavar="YYYY-MM-DD", help="its last day of membership, local, charged (default: now)"
    )
    for x in (ml, ma, mp, mv):
        x.set_defaults(func=_members)

    b = sub.add_parser("bill", help="members' statements for a period")
    b.add_argument("--config", required=True)
    b.add_argument("--member", help="one member (default: all)")
    b.add_argument("--period", help="YYYY-MM, YYYY-MM-DD or FROM..TO (local days of [billing] timezone)")
    b.add_argument("--from", dest="start", help="YYYY-MM-DD (local day of [billing] timezone, inclusive)")
    b.add_argument("--to", dest="end", help="YYYY-MM-DD (local day, exclusive)")
    b.add_argument("--csv", action="store_true")
    b.add_argument(
        "--issue", action="store_true", help="issue the statements as numbered invoices (once per period)"
    )
    b.add_argument("--out", help="with --issue: write each invoice's HTML document into this directory")
    b.set_defaults(func=_bill)

    rc = sub.add_parser("reconcile", help="import utility meter readings and apportion the differences")
    rc.add_argument("--config", required=True)
    rc.add_argument("--file", required=True, help="CSV: period_start,period_end,import_wh,export_wh")
    rc.set_defaults(func=_reconcile)
    qu = sub.add_parser("quarantine", help="readings held for implausible energy: list, release, reject")
    qsub = qu.add_subparsers(dest="action", required=True)
    ql = qsub.add_parser("list", help="held readings (all decisions too with --all)")
    ql.add_argument("--board")
    ql.add_argument("--all", action="store_true")
    for name, text in (
        ("release", "store a board's held readings as readings (they were right)"),
        ("reject", "reject them for good: the board is refused until retired or replaced"),
    ):
        qx = qsub.add_parser(name, help=text)
        qx.add_argument("--board", required=True)
        qx.add_argument("--by", help="who decides (recorded; default: the login name)")
    for x in qsub.choices.values():
        x.add_argument("--config", required=True)
        x.set_defaults(func=_quarantine)
    cli_web.register(sub)
    cli_board.register(sub)
    cli_p2s.register(sub, msub)
    cli_chargers.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args)
    except CoordinatorError as e:
        print(f"peergrid: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
