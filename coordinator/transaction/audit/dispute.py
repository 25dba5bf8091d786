"""Disputes: a member flags a settled interval; the record keeps the evidence as it stood.

The evidence is a snapshot taken when the dispute is filed: the coordinator-signed Result of the
interval, the readings (with their board signatures) each of the member's boards settled between,
the measured energy, the member's trades and postings. Later changes cannot alter what the member
disputed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from coordinator.ledger import Ledger
from coordinator.ledger.queries import audit as q
from coordinator.transaction.audit import AuditError
from coordinator.transaction.export import check_member

MAX_REASON = 500


@dataclass(frozen=True)
class Dispute:
    id: int
    member: str
    interval: int
    reason: str
    status: str
    created: int
    evidence: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "member": self.member,
            "interval": self.interval,
            "reason": self.reason,
            "status": self.status,
            "created": self.created,
            "evidence": self.evidence,
        }


def evidence(ledger: Ledger, member: str, interval: int) -> dict[str, Any]:
    iv = q.settled_interval(ledger, interval)
    if iv is None:
        raise AuditError(f"interval {interval} has not been settled")
    length, scheme, price, dg, result = iv.length, iv.scheme, iv.price, iv.digest, iv.result_frame
    spans = []
    for d in q.member_board_deliveries(ledger, interval, member):
        b, s0, s1, i0, x0, i1, x1 = d.board_id, d.seq0, d.seq1, d.e_imp0, d.e_exp0, d.e_imp1, d.e_exp1
        ends = [
            {"seq": r.seq, "ts": r.ts, "e_imp": r.e_imp, "e_exp": r.e_exp, "sig": sig.hex()}
            for r, sig in ledger.readings_by_seq(b, s0, s1)
            if r.seq in (s0, s1)
        ]
        spans.append(
            {
                "board": b,
                "seq0": s0,
                "seq1": s1,
                "e_imp": i1 - i0,
                "e_exp": x1 - x0,
                "readings": ends,
            }
        )
    measured = q.delivery(ledger, interval, member)
    trades = [
        {"buyer": b, "seller": s, "energy": e, "price": p, "fee": f}
        for b, s, e, p, f in q.trades(ledger, interval, member)
    ]
    postings = [
        {"account": x.account, "energy": x.energy, "amount": x.amount, "memo": x.memo}
        for x in q.postings(ledger, interval, member)
    ]
    return {
        "interval": interval,
        "length": length,
        "scheme": scheme,
        "price": price,
        "digest": dg.hex() if dg else None,
        "result_frame": result.hex() if result else None,
        "measured": {"e_imp": measured[0], "e_exp": measured[1]} if measured else None,
        "spans": spans,
        "trades": trades,
        "postings": postings,
    }


def flag(ledger: Ledger, member: str, interval: int, reason: str, *, now: int) -> Dispute:
    """Record ``member``'s dispute of ``interval``; AuditError names what is wrong with the request."""
    check_member(ledger, member)
    reason = reason.strip()
    if not reason:
        raise AuditError("a dispute needs a reason")
    if len(reason) > MAX_REASON or any(not c.isprintable() for c in reason):
        raise AuditError(f"a dispute's reason is printable text of at most {MAX_REASON} characters")
    with ledger.transaction() as tx:  # the evidence as it stands when the dispute is recorded
        ev = evidence(ledger, member, interval)
        did = q.add_dispute(tx, member, interval, reason, json.dumps(ev, sort_keys=True), now)
    return Dispute(did, member, interval, reason, "open", now, ev)


def disputes(ledger: Ledger, member: str | None = None) -> list[Dispute]:
    return [
        Dispute(d.id, d.member, d.interval, d.reason, d.status, d.created, json.loads(d.evidence))
        for d in q.disputes(ledger, member)
    ]
