"""``peergrid audit export``: everything a member needs to check a period's bill offline.

The bundle is one JSON document:

- ``boards``: the member's boards with every public key and its validity;
- ``readings``: the original signed frames (``body || signature``) of every reading the period's
  settlement ran between, rebuilt byte for byte from the ledger (the encoding is canonical);
- ``intervals``: per settled interval, the coordinator-signed ``Result`` frame, the full clearing
  record whose SHA-256 the Result carries, the member's other rows (ex-ante schedules, imbalance)
  and the readings each of the member's boards settled between (``spans``);
- ``tariff``: the prices and fixed charges the bill applies, with the terms of the member's
  chosen-producer contracts (their subscriptions are billed once per period in force);
- ``timezone`` and ``membership``: the billing time zone whose local days the fixed charges are
  counted in, and when the member joined and left (``billing.fee_days``);
- ``statement``: the bill as the coordinator computed it, for ``verify`` to compare.

The clearing record lists every party of the interval (the signed digest covers all of them).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from coordinator.ledger import Ledger
from coordinator.ledger.queries import audit as q
from coordinator.market import SUPPLIER, Contract, Tariff
from coordinator.transaction import billing
from coordinator.transaction.audit import FORMAT, AuditError, flexrecords
from coordinator.transaction.export import check_member, member_boards
from protocol import frame, topics


@dataclass(frozen=True)
class Charges:
    """The tariff of a bill: market prices (mc/kWh), fixed charges (nano-cent per day) and the
    chosen-producer contracts (``[[market.contracts]]``), whose subscriptions the bill carries;
    ``timezone``: the billing time zone, whose local days periods and fixed charges count in."""

    tariff: Tariff
    fixed_per_day: int = 0
    subscription_per_day: int = 0
    contracts: tuple[Contract, ...] = ()
    timezone: str = billing.UTC


def split_rows(
    ledger: Ledger, start: int
) -> tuple[list[list[Any]], list[list[Any]], list[tuple[str, str, int, int, int, str]]]:
    """The stored trades of interval ``start`` as the clearing had them: (local trades, supplier
    trades, other rows). Other rows are ex-ante schedules and imbalance, which settle outside the
    clearing; they carry their kind ("schedule" or "imbalance") last. The trades are stored in that
    order: the schedules, the imbalance, then the clearing's."""
    n_sched = q.schedule_count(ledger, start)
    n_imb = q.imbalance_count(ledger, start, SUPPLIER)
    orders = q.order_ids(ledger, start)
    local: list[list[Any]] = []
    residual: list[list[Any]] = []
    other: list[tuple[str, str, int, int, int, str]] = []
    rows = q.trades(ledger, start)
    for i, (buyer, seller, energy, price, fee) in enumerate(rows):
        if i < n_sched + n_imb:
            other.append((buyer, seller, energy, price, fee, "schedule" if i < n_sched else "imbalance"))
            continue
        bid = "" if buyer == SUPPLIER else orders.get((buyer, "buy"), "")
        sid = "" if seller == SUPPLIER else orders.get((seller, "sell"), "")
        row = [buyer, seller, energy, price, fee, bid, sid]
        (residual if SUPPLIER in (buyer, seller) else local).append(row)
    return local, residual, other


def bundle(
    ledger: Ledger, grid: str, member: str, start: int, end: int, charges: Charges, coordinator_key: bytes
) -> dict[str, Any]:
    """The audit bundle of ``member`` for intervals starting in ``[start, end)``."""
    check_member(ledger, member)
    boards = member_boards(ledger, member)
    if not boards:
        raise AuditError(f"member {member!r} has no boards")
    starts = q.member_intervals(ledger, member, boards, start, end)
    intervals = []
    seq_range: dict[str, list[int]] = {}
    for s in starts:
        iv = q.settled_interval(ledger, s)
        if iv is None:  # postings outside a market interval (e.g. compensation): in the statement only
            continue
        length, scheme, price, result = iv.length, iv.scheme, iv.price, iv.result_frame
        local, residual, other = split_rows(ledger, s)
        spans = []
        for d in q.board_deliveries(ledger, s, boards):
            b, seq0, seq1 = d.board_id, d.seq0, d.seq1
            spans.append({"board": b, "seq0": seq0, "seq1": seq1})
            lo_hi = seq_range.setdefault(b, [seq0, seq1])
            lo_hi[0], lo_hi[1] = min(lo_hi[0], seq0), max(lo_hi[1], seq1)
        intervals.append(
            {
                "start": s,
                "length": length,
                "result_frame": result.hex() if result else None,
                "clearing": {"scheme": scheme, "price": price, "trades": local, "residual": residual},
                "other_rows": [list(r) for r in other if member in (r[0], r[1])],
                "spans": spans,
            }
        )
    readings = []
    for b, (lo, hi) in sorted(seq_range.items()):
        topic = topics.board_topic(grid, b, "reading")
        for r, sig in ledger.readings_by_seq(b, lo, hi):
            fr = r.encode() + sig
            frame.split(fr)  # size check: a stored reading always fits a frame
            readings.append({"board": b, "topic": topic, "frame": fr.hex()})
    types = q.board_types(ledger, boards)
    board_list = [
        {
            "board": b,
            "board_type": types[b],
            "keys": [
                {"pubkey": k.hex(), "valid_from": lo, "valid_to": hi} for k, lo, hi in ledger.keys_of(b)
            ],
        }
        for b in boards
    ]
    st = billing.statement(
        ledger,
        member,
        start,
        end,
        fixed_per_day=charges.fixed_per_day,
        subscription_per_day=charges.subscription_per_day,
        contracts=charges.contracts,
        zone=charges.timezone,
    )
    joined, left = billing.membership(ledger, member)
    t = charges.tariff
    return {
        "format": FORMAT,
        "grid": grid,
        "member": member,
        "period": [start, end],
        # the local days the period and the fixed charges are counted in, and the membership
        "timezone": charges.timezone,
        "membership": {"joined": joined, "left": left},
        "created": int(time.time()),
        "coordinator_key": coordinator_key.hex(),
        "tariff": {
            "feed_in": t.feed_in,
            "retail": t.retail,
            "grid_fee": t.grid_fee,
            "grid_fee_local": t.grid_fee_local,
            "fixed_per_day": charges.fixed_per_day,
            "subscription_per_day": charges.subscription_per_day,
            # the member's chosen-producer contracts: a subscription per billing period in force
            "contracts": [
                {
                    "id": x.contract_id,
                    "producer": x.producer,
                    "start": x.start,
                    "end": x.end,
                    "subscription": x.subscription,
                }
                for x in sorted(charges.contracts, key=lambda x: x.contract_id)
                if x.consumer == member
            ],
        },
        "boards": board_list,
        "readings": readings,
        "intervals": intervals,
        # the coordinator-signed record of each flexibility payment (audit/flexrecords.py)
        "flex_records": flexrecords.bundle_part(ledger, member, start, end),
        "statement": {
            "lines": [{"account": x.account, "energy": x.energy, "amount": x.amount} for x in st.lines],
            "total": st.total,
        },
    }


def dumps(b: dict[str, Any]) -> str:
    return json.dumps(b, indent=1, sort_keys=True) + "\n"


def digest(b: dict[str, Any]) -> str:
    """SHA-256 (hex) of the bundle without its ``created`` time: the same for every export of the
    same member and period from the same ledger, as an invoice carries it."""
    import hashlib

    return hashlib.sha256(dumps({k: v for k, v in b.items() if k != "created"}).encode()).hexdigest()
