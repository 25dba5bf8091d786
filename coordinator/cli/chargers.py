"""``peergrid charger``: bind OCPP chargers to members, list them with their state, sessions,
profiles and cross-checks (coordinator/chargers)."""

from __future__ import annotations

import argparse
import time

from coordinator.errors import CoordinatorError


def _charger(args: argparse.Namespace) -> int:
    from coordinator import config
    from coordinator.chargers.service import bind
    from coordinator.ledger import Ledger
    from coordinator.ledger.queries import chargers as q

    cfg = config.load(args.config)
    with Ledger.open(cfg.ledger) as ledger:
        if args.charger_cmd == "bind":
            bind(ledger, args.id, args.member, int(time.time()))
            print(f"charger {args.id} bound to {args.member}")
        elif args.charger_cmd == "unbind":
            if not q.unbind(ledger, args.id):
                raise CoordinatorError(f"charger {args.id!r} is not bound")
            print(f"charger {args.id} unbound")
        else:
            for c in q.chargers(ledger):
                seen = (
                    "-"
                    if c.last_seen is None
                    else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(c.last_seen))
                )
                bad = sum(1 for *_, ok in q.checks(ledger, c.charger_id) if not ok)
                print(
                    f"{c.charger_id:<16} {c.member_id:<16} {c.state:<8} {c.protocol or '-':<10} "
                    f"seen {seen}  sessions {len(q.sessions(ledger, c.charger_id))}  "
                    f"disagreements {bad}  {c.reason or ''}".rstrip()
                )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ch = sub.add_parser("charger", help="OCPP chargers: bind to a member, list")
    csub = ch.add_subparsers(dest="charger_cmd", required=True)
    b = csub.add_parser("bind", help="bind a charger id to a member (an unbound charger is refused)")
    b.add_argument("--id", required=True, help="the charger's OCPP identity (the last part of its URL)")
    b.add_argument("--member", required=True)
    u = csub.add_parser("unbind", help="forget a charger's binding (it is refused from then on)")
    u.add_argument("--id", required=True)
    csub.add_parser("list", help="chargers, their member, state and reports")
    for x in csub.choices.values():
        x.add_argument("--config", required=True)
        x.set_defaults(func=_charger)
