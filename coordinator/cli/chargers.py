"""``peergrid charger``: bind OCPP chargers to members with a password, rotate it, list them with
their state, sessions, profiles and cross-checks (coordinator/chargers)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from coordinator.errors import CoordinatorError

if TYPE_CHECKING:
    from coordinator.chargers.settings import OcppSettings


def _when(t: int | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """(the password, whether it was generated): from ``--password-file`` (checked), or new."""
    from coordinator.chargers.auth import given_or_new, read_password_file

    f = args.password_file
    return given_or_new(None if f is None else read_password_file(Path(f)))


def _wallbox(ocpp: OcppSettings | None, cid: str, pw: str, generated: bool) -> None:
    """What to enter in the wallbox's OCPP settings (the password only when it was generated)."""
    if ocpp is None:
        url, profile = "ws(s)://<coordinator>:<[ocpp] listen port>/", "1 or 2"
    else:
        host, port = ocpp.host_port
        host = "<coordinator>" if host in ("", "0.0.0.0", "::") else host
        url = f"{ocpp.scheme}://{host}:{port}/"
        profile = "2 (TLS, HTTP Basic)" if ocpp.scheme == "wss" else "1 (HTTP Basic, no TLS)"
    print("in the wallbox's OCPP settings:")
    print(f"  central system URL   {url}  (the wallbox appends its id: {url}{cid})")
    print(f"  charge point id      {cid}  (also the Basic auth user)")
    print(f"  security profile     {profile}")
    if generated:
        print(f"  password             {pw}")
        print("  (AuthorizationKey in OCPP 1.6, BasicAuthPassword in 2.0.1; shown once: the ledger keeps")
        print("   only a salted hash)")
    else:
        print("  password             the one in the password file")


def _ident(args: argparse.Namespace, name: str) -> str:
    v = getattr(args, name) or getattr(args, f"{name}_opt", None)
    if not v:
        raise CoordinatorError(f"charger {args.charger_cmd}: the charger's {name} is missing")
    return str(v)


def _charger(args: argparse.Namespace) -> int:
    from coordinator import config
    from coordinator.chargers.service import bind, set_password, unbind
    from coordinator.ledger import Ledger
    from coordinator.ledger.queries import chargers as q

    cfg = config.load(args.config)
    with Ledger.open(cfg.ledger) as ledger:
        if args.charger_cmd == "bind":
            cid, member = _ident(args, "id"), _ident(args, "member")
            pw, generated = _password(args)
            bind(ledger, cid, member, int(time.time()), pw)
            print(f"charger {cid} bound to {member}, with a new password")
            _wallbox(cfg.ocpp, cid, pw, generated)
        elif args.charger_cmd == "password":
            cid = _ident(args, "id")
            pw, generated = _password(args)
            set_password(ledger, cid, pw, int(time.time()))
            print(f"charger {cid}: new password; the old one is refused from now on")
            _wallbox(cfg.ocpp, cid, pw, generated)
        elif args.charger_cmd == "unbind":
            cid = _ident(args, "id")
            unbind(ledger, cid)
            print(f"charger {cid} unbound")
        else:
            for c in q.chargers(ledger):
                bad = sum(1 for *_, ok in q.checks(ledger, c.charger_id) if not ok)
                pw = (
                    "no password (refused)" if c.password_set is None else f"password {_when(c.password_set)}"
                )
                print(
                    f"{c.charger_id:<16} {c.member_id:<16} {c.state:<8} {c.protocol or '-':<10} "
                    f"seen {_when(c.last_seen)}  {pw}  sessions {len(q.sessions(ledger, c.charger_id))}  "
                    f"disagreements {bad}  {c.reason or ''}".rstrip()
                )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ch = sub.add_parser("charger", help="OCPP chargers: bind to a member with a password, list")
    csub = ch.add_subparsers(dest="charger_cmd", required=True)
    pw_help = "the password (16..40 printable ASCII, no spaces) in this file, instead of a random one"
    b = csub.add_parser(
        "bind",
        help="bind a charger id to a member with a new password (an unbound charger, or one without"
        " a password, is refused); bound again: moved to the member, with a new password",
    )
    b.add_argument("id", nargs="?", help="the charger's OCPP identity (the last part of its URL)")
    b.add_argument("member", nargs="?")
    b.add_argument("--id", dest="id_opt", help=argparse.SUPPRESS)
    b.add_argument("--member", dest="member_opt", help=argparse.SUPPRESS)
    b.add_argument("--password-file", help=pw_help)
    p = csub.add_parser(
        "password", help="a bound charger's new password (the old one is refused from then on)"
    )
    p.add_argument("id", nargs="?")
    p.add_argument("--id", dest="id_opt", help=argparse.SUPPRESS)
    p.add_argument("--password-file", help=pw_help)
    u = csub.add_parser("unbind", help="forget a charger's binding (it is refused from then on)")
    u.add_argument("id", nargs="?")
    u.add_argument("--id", dest="id_opt", help=argparse.SUPPRESS)
    csub.add_parser("list", help="chargers, their member, state, password (set or not, when) and reports")
    for x in csub.choices.values():
        x.add_argument("--config", required=True)
        x.set_defaults(func=_charger)
