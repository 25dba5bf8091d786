"""What the dashboard shows, read from the ledger. ``members`` limits a query to those members'
data (a member's token); None means all (an operator's)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from coordinator.ledger import Ledger, quarantine
from coordinator.ledger.queries import web as q
from coordinator.market import SUPPLIER, Contract
from coordinator.transaction import billing
from coordinator.transaction.export import boards_of, statements

ONLINE_S = 300  # a board whose last reading is older than this is shown offline
MAX_POINTS = 240


def newest_ts(ledger: Ledger) -> int | None:
    last = ledger.last_readings()
    return max((r.ts for r in last.values()), default=None)


def power(ledger: Ledger, as_of: int, hours: int, member: str | None) -> dict[str, Any]:
    """Mean power (W, + import) per time bucket over the last ``hours``: per member (or for the
    one member) and for the whole microgrid."""
    span = hours * 3600
    step = max(60, span // MAX_POINTS)
    # one mean per board and bucket (the ledger's per-board time index), then summed per member
    per: dict[str, dict[int, int]] = {}
    for b, m in boards_of(ledger, member):
        if m is None:
            continue
        sums: dict[int, list[int]] = {}
        for r, _ in ledger.readings(b, as_of - span + 1, as_of + 1):
            a = sums.setdefault(r.ts - r.ts % step, [0, 0])
            a[0] += r.p
            a[1] += 1
        d = per.setdefault(m, {})
        for t, (watts, n) in sums.items():
            d[t] = d.get(t, 0) + watts // n
    times = sorted({t for d in per.values() for t in d})
    series = {m: [d.get(t) for t in times] for m, d in sorted(per.items())}
    total = [sum(v for v in (d.get(t) for d in per.values()) if v is not None) for t in times]
    return {"as_of": as_of, "step": step, "t": times, "members": series, "microgrid": total}


def microgrid_power(ledger: Ledger, as_of: int, hours: int) -> dict[str, Any]:
    """The community's total only (no member's share): import, export and net per bucket."""
    p = power(ledger, as_of, hours, None)
    imp = [0] * len(p["t"])
    exp = [0] * len(p["t"])
    for vals in p["members"].values():
        for i, v in enumerate(vals):
            if v is None:
                continue
            if v >= 0:
                imp[i] += v
            else:
                exp[i] -= v
    return {
        "as_of": as_of,
        "step": p["step"],
        "t": p["t"],
        "net": p["microgrid"],
        "import": imp,
        "export": exp,
    }


def intervals(ledger: Ledger, limit: int) -> list[dict[str, Any]]:
    """The latest settled intervals, newest last: price and volumes (what the broadcast Result says)."""
    return [
        {
            "start": i.start,
            "length": i.length,
            "scheme": i.scheme,
            "state": i.state,
            "price": i.price,
            "traded": i.traded,
            "grid_imp": i.grid_imp,
            "grid_exp": i.grid_exp,
            "n_trades": i.n_trades,
        }
        for i in q.intervals(ledger, limit, SUPPLIER)
    ]


def bids(ledger: Ledger, interval: int, member: str | None) -> list[dict[str, Any]]:
    return [
        {"order_id": o, "party": p, "side": s, "energy": e, "limit": lim}
        for o, p, s, e, lim in q.orders(ledger, interval, member)
    ]


def trades(ledger: Ledger, limit: int, member: str | None) -> list[dict[str, Any]]:
    return [
        {"interval": i, "n": n, "buyer": b, "seller": s, "energy": e, "price": p, "fee": f}
        for i, n, b, s, e, p, f in q.recent_trades(ledger, limit, member)
    ]


def grid_state(ledger: Ledger, member: str | None, limit: int) -> dict[str, Any]:
    """Each board's latest voltage and power; the PV export limits of the PV-only guard and the device
    redispatches of the delivery check (the member's own boards for a member); and, grid-wide, how
    close each checked interval ran to the voltage and loading limits."""
    boards = []
    latest = ledger.latest_readings()
    for b, m in boards_of(ledger, member):
        r = latest.get(b)
        boards.append({"board": b, "member": m, "u": r.u if r else None, "p": r.p if r else None})
    curt = [dict(zip(_CURTAILMENT, row, strict=True)) for row in q.curtailments(ledger, member, limit)]
    redis = [dict(zip(_REDISPATCH, row, strict=True)) for row in q.redispatches(ledger, member, limit)]
    # grid-wide (no member's data): how close each interval ran to the limits
    checks = [dict(zip(q.CHECK_COLUMNS, row, strict=True)) for row in q.checks(ledger, limit)]
    return {"boards": boards, "curtailments": curt, "redispatches": redis, "checks": checks}


_CURTAILMENT = ("interval", "board", "member", "pv_limit_w", "delta_w", "reason", "compensation")
_REDISPATCH = ("interval", "board", "member", "kind", "delta_w", "setpoint", "reason", "compensation")


def health(ledger: Ledger, as_of: int, member: str | None) -> dict[str, Any]:
    last = ledger.last_readings()
    types = {b.board_id: b for b in ledger.boards()}
    boards = []
    for b, m in boards_of(ledger, member):
        lr = last.get(b)
        rec = types.get(b)
        boards.append(
            {
                "board": b,
                "member": m,
                "status": rec.status if rec else None,
                "board_type": rec.board_type if rec else None,
                "last_ts": lr.ts if lr else None,
                "last_seq": lr.seq if lr else None,
                "online": bool(lr and lr.ts >= as_of - ONLINE_S),
            }
        )
    out: dict[str, Any] = {"as_of": as_of, "boards": boards}
    if member is None:  # rejections are counted per reason, for the whole grid: an operator's view
        out["rejections"] = ledger.rejections()
        out["quarantine"] = quarantine.held_boards(ledger)  # board -> readings held for a decision
    return out


def bill(
    ledger: Ledger,
    member: str,
    start: int,
    end: int,
    fixed_per_day: int,
    contracts: Iterable[Contract] = (),
    zone: str = billing.UTC,
) -> dict[str, Any]:
    """The member's bill over ``[start, end)``; ``from`` and ``to`` name the period as local days
    of the billing time zone ``zone`` (``to`` exclusive), ``days`` the days fixed charges count."""
    (st,) = statements(ledger, start, end, [member], fixed_per_day, tuple(contracts), zone)
    running = []
    acc = 0
    for t, amount in q.running_totals(ledger, member, start, end):
        acc += int(amount)
        running.append([t, acc, billing.cents(acc)])
    return {
        "member": member,
        "start": start,
        "end": end,
        "from": billing.local_day(start, zone).isoformat(),
        "to": billing.local_day(end, zone).isoformat(),
        "timezone": zone,
        "days": st.days,
        "intervals": st.intervals,
        "lines": [  # in cents adding up to total_cents, as on the issued bill
            {
                "account": x.account,
                "label": billing.ACCOUNTS.get(x.account, x.account),
                "energy": x.energy,
                "amount": x.amount,
                "cents": c,
            }
            for x, c in zip(st.lines, billing.line_cents(st), strict=True)
        ],
        "total": st.total,
        "total_cents": billing.cents(st.total),
        "running": running,
    }
