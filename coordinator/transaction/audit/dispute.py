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
    row = ledger.conn.execute(
        "SELECT length, scheme, price, digest, result_frame FROM intervals WHERE start=?", (interval,)
    ).fetchone()
    if row is None:
        raise AuditError(f"interval {interval} has not been settled")
    length, scheme, price, dg, result = row
    spans = []
    for b, s0, s1, i0, x0, i1, x1 in ledger.conn.execute(
        "SELECT d.board_id, seq0, seq1, e_imp0, e_exp0, e_imp1, e_exp1 FROM board_deliveries d "
        "JOIN boards b ON b.id = d.board_id WHERE d.interval=? AND b.member_id=? ORDER BY d.board_id",
        (interval, member),
    ):
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
    measured = ledger.conn.execute(
        "SELECT e_imp, e_exp FROM deliveries WHERE interval=? AND party=?", (interval, member)
    ).fetchone()
    trades = [
        {"buyer": b, "seller": s, "energy": e, "price": p, "fee": f}
        for b, s, e, p, f in ledger.conn.execute(
            "SELECT buyer, seller, energy, price, fee FROM trades WHERE interval=? AND (buyer=? OR seller=?) "
            "ORDER BY n",
            (interval, member, member),
        )
    ]
    postings = [
        {"account": a, "energy": e, "amount": m, "memo": memo}
        for a, e, m, memo in ledger.conn.execute(
            "SELECT account, energy, amount, memo FROM postings WHERE interval=? AND party=? ORDER BY n",
            (interval, member),
        )
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
    ev = evidence(ledger, member, interval)
    with ledger.transaction() as tx:
        cur = tx.execute(
            "INSERT INTO disputes (member_id, interval, reason, evidence, created) VALUES (?,?,?,?,?)",
            (member, interval, reason, json.dumps(ev, sort_keys=True), now),
        )
        did = int(cur.lastrowid or 0)
    return Dispute(did, member, interval, reason, "open", now, ev)


def disputes(ledger: Ledger, member: str | None = None) -> list[Dispute]:
    q = "SELECT id, member_id, interval, reason, status, created, evidence FROM disputes"
    args: tuple[object, ...] = ()
    if member is not None:
        q += " WHERE member_id=?"
        args = (member,)
    return [
        Dispute(i, m, t, r, s, c, json.loads(e))
        for i, m, t, r, s, c, e in ledger.conn.execute(q + " ORDER BY id", args)
    ]
