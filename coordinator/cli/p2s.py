"""Peer-to-system commands (:mod:`coordinator.p2s`) on a running coordinator's ledger:

    peergrid members set --config C --id alice --storage '{"kind": "ev", ...}' [--remove pv]
    peergrid members apply --config C alice.toml       # the member's whole preferences, declared
    peergrid members devices --config C [--id alice]   # in force, and pending changes
    peergrid members history --config C [--id alice]   # who changed what, when
    peergrid flex request --config C --point f1 --direction reduce --power-w 5000 \\
        --start 2025-06-01T17:00Z --intervals 4 --price-cap 30000
    peergrid flex list --config C [--state settled]
    peergrid flex limit --config C --resource f1 --direction import --limit-w 40000 --start ... --until ...

A change is in force from the next interval; the running coordinator reads the ledger, so no
restart is needed. Errors name the member and field (or the request's field); nothing is stored.
"""

from __future__ import annotations

import argparse
import getpass
import json
import time
import tomllib
from pathlib import Path
from typing import Any

from coordinator.errors import CoordinatorError

DEVICE_KEYS = ("storage", "ev", "deferrable", "pv", "flex", "integrator")


def _who(args: argparse.Namespace) -> str:
    return f"cli:{args.by or getpass.getuser()}"


def _json_arg(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise CoordinatorError(f"--{name} is not JSON: {e}") from None


def _apply_file(path: str) -> dict[str, dict[str, Any]]:
    """Member id -> its whole preferences, from a TOML file: one member (``id = "alice"`` and its
    keys) or several (``[members.alice]`` tables)."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as e:
        raise CoordinatorError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise CoordinatorError(f"{path}: not valid TOML: {e}") from None
    if "members" in data:
        ms = data["members"]
        if not isinstance(ms, dict) or not all(isinstance(v, dict) for v in ms.values()):
            raise CoordinatorError(f"{path}: [members.<id>] must be tables")
        return {str(k): dict(v) for k, v in ms.items()}
    mid = data.pop("id", None)
    if not isinstance(mid, str):
        raise CoordinatorError(f'{path}: give id = "<member>" or [members.<id>] tables')
    return {mid: data}


def _members(args: argparse.Namespace) -> int:
    from coordinator import config
    from coordinator.ledger import Ledger, member_changes
    from coordinator.p2s import devices
    from coordinator.service.app import board_limits

    cfg = config.load(args.config)
    now = int(time.time())
    with Ledger.open(cfg.ledger) as ledger:
        if args.action in ("set", "apply"):
            if args.action == "set":
                given: dict[str, Any] = {
                    k: _json_arg(k, getattr(args, k)) for k in DEVICE_KEYS if getattr(args, k)
                }
                for k in ("min_sell", "max_buy"):
                    if getattr(args, k) is not None:
                        given[k] = getattr(args, k)
                for k in args.remove or ():
                    given[k] = None
                if not given:
                    raise CoordinatorError("nothing to set: give --storage, --ev, ... or --remove KEY")
                todo = {args.id: given}
            else:
                todo = _apply_file(args.file)
            for mid, prefs in todo.items():  # each checked and recorded on its own
                c = devices.change(
                    ledger,
                    mid,
                    prefs,
                    by=_who(args),
                    now=now,
                    length=cfg.interval_s,
                    limits=board_limits(),
                    replace=args.action == "apply",
                )
                when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(c.effective))
                print(f"member {mid}: preferences changed (change {c.id}), in force from {when}: {c.prefs}")
        elif args.action == "devices":
            for d in devices.devices(ledger):
                if args.id and d["id"] != args.id:
                    continue
                print(f"{d['id']:<16} {json.dumps(d['prefs'], sort_keys=True)}")
                if d["prefs_error"]:
                    print(f"  unreadable: {d['prefs_error']}")
                if d["pending"]:
                    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(d["pending"]["effective"]))
                    print(f"  from {when}: {json.dumps(d['pending']['prefs'], sort_keys=True)}")
        else:
            for c in member_changes.history(ledger, args.id):
                at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(c.changed_at))
                state = "in force" if c.applied_at is not None else "pending"
                print(f"{c.id:>5} {c.member_id:<16} {at} UTC by {c.changed_by:<20} {state:<9} {c.prefs}")
    return 0


def _flex(args: argparse.Namespace) -> int:
    from coordinator import config
    from coordinator.ledger import Ledger, flex_requests
    from coordinator.p2s import limits, requests
    from coordinator.service.app import board_limits

    cfg = config.load(args.config)
    now = int(time.time())

    def t(v: str | None) -> int | str | None:
        return int(v) if v is not None and v.isdigit() else v

    with Ledger.open(cfg.ledger) as ledger:
        if args.action == "request":
            data: dict[str, Any] = {
                "congestion_point": args.point,
                "direction": args.direction,
                "power_w": args.power_w,
                "start": t(args.start),
                "price_cap": args.price_cap,
            }
            if args.id:
                data["id"] = args.id
            if args.intervals is not None:
                data["intervals"] = args.intervals
            if args.end is not None:
                data["end"] = t(args.end)
            r = requests.post(
                ledger,
                data,
                grid=cfg.grid,
                now=now,
                length=cfg.interval_s,
                source=_who(args),
                limits=board_limits(),
            )
            print(
                f"request {r.request_id} accepted: {r.direction} {r.power_w} W at {r.congestion_point} for "
                f"{r.intervals} intervals from {r.start}, at most {r.price_cap} mc/kWh"
            )
        elif args.action == "limit":
            body = {
                "resource": args.resource,
                "direction": args.direction,
                "limit_w": args.limit_w,
                "start": t(args.start),
                "until": t(args.until),
            }
            lim, new = limits.add(ledger, body, grid=cfg.grid, now=now, source=_who(args))
            print(f"capacity limit {lim.limit_id} {'stored' if new else 'exists already'}")
        else:
            for r in flex_requests.requests(ledger, args.state):
                print(
                    f"{r.request_id:<32} {r.state:<8} {r.congestion_point:<10} {r.direction:<8} "
                    f"{r.power_w:>8} W from {r.start} x{r.intervals}  ordered {r.ordered_w} W  "
                    f"delivered {r.delivered_mwh} mWh  paid {r.paid} nc  ({r.source}) {r.note}"
                )
    return 0


def register(sub: Any, msub: Any) -> None:
    """The ``members set/apply/devices/history`` actions (under ``members``) and ``flex``."""
    ms = msub.add_parser("set", help="change a member's devices and preferences (in force next interval)")
    ms.add_argument("--id", required=True)
    for k in DEVICE_KEYS:
        ms.add_argument(f"--{k}", metavar="JSON", help=f"the member's {k} (JSON object)")
    ms.add_argument("--min-sell", type=int)
    ms.add_argument("--max-buy", type=int)
    ms.add_argument("--remove", action="append", metavar="KEY", help="remove a preference key")
    ma = msub.add_parser("apply", help="declare members' whole preferences from a TOML file")
    ma.add_argument("file")
    md = msub.add_parser("devices", help="members' devices in force and pending")
    md.add_argument("--id")
    mh = msub.add_parser("history", help="recorded changes: who, when, what")
    mh.add_argument("--id")
    for x in (ms, ma, md, mh):
        x.add_argument("--config", required=True)
        x.set_defaults(func=_members)
    for x in (ms, ma):
        x.add_argument("--by", help="who makes the change (recorded; default: the login name)")

    f = sub.add_parser("flex", help="grid operators' flexibility requests and capacity limits")
    fsub = f.add_subparsers(dest="action", required=True)
    fr = fsub.add_parser("request", help="post a flexibility request")
    fr.add_argument("--id")
    fr.add_argument("--point", required=True, help="congestion point: a feeder or bus, or the grid id")
    fr.add_argument("--direction", required=True, choices=["reduce", "increase"])
    fr.add_argument("--power-w", type=int, required=True)
    fr.add_argument("--start", required=True, help="an interval start: Unix s or ISO 8601 with a zone")
    fr.add_argument("--intervals", type=int)
    fr.add_argument("--end")
    fr.add_argument("--price-cap", type=int, required=True, help="mc/kWh delivered, at most")
    fl = fsub.add_parser("list", help="flexibility requests, newest first")
    fl.add_argument("--state", choices=["posted", "cleared", "settled", "failed"])
    fc = fsub.add_parser("limit", help="a capacity limit on a congestion point or the connection")
    fc.add_argument("--resource", required=True)
    fc.add_argument("--direction", required=True, choices=["import", "export"])
    fc.add_argument("--limit-w", type=int, required=True)
    fc.add_argument("--start", required=True)
    fc.add_argument("--until", required=True)
    for x in (fr, fl, fc):
        x.add_argument("--config", required=True)
        x.set_defaults(func=_flex)
    for x in (fr, fc):
        x.add_argument("--by", help="who posts it (recorded; default: the login name)")
