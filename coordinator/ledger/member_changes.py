"""Changes of members' devices and preferences in a running coordinator, recorded with who made
them and when, and put in force from the next interval.

A change is stored whole (the member's new preferences, and those it replaces) with the interval
start it applies from (``effective``, the first interval that starts after it was made). The
interval loop calls :func:`apply_due` before it dispatches an interval: every pending change whose
``effective`` has come is written into ``members.prefs`` in one transaction (oldest first, so the
newest wins) and marked applied. A change made while an interval runs therefore reaches the boards
with the next interval's orders, never in the middle of one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from coordinator.ledger.store import Ledger, LedgerError
from coordinator.members import MemberPrefs


@dataclass(frozen=True)
class MemberChange:
    id: int
    member_id: str
    prefs: str  # JSON of the new preferences
    previous: str  # JSON of the preferences it replaces (when it was made)
    changed_by: str
    changed_at: int
    effective: int  # interval start from which it applies
    applied_at: int | None  # when it was put in force (None: pending)

    def as_dict(self) -> dict[str, object]:
        d = dict(self.__dict__)
        d["prefs"], d["previous"] = json.loads(self.prefs), json.loads(self.previous)
        return d


_COLS = "id, member_id, prefs, previous, changed_by, changed_at, effective, applied_at"


def record(
    ledger: Ledger, member_id: str, prefs: MemberPrefs, *, by: str, now: int, effective: int
) -> MemberChange:
    """Record a change of ``member_id``'s preferences to ``prefs`` (checked again as stored),
    pending until ``effective``. The preferences it replaces are the newest pending change's, or
    those in force."""
    new = prefs.to_json()
    MemberPrefs.parse(member_id, new)
    with ledger.transaction() as tx:
        row = tx.execute("SELECT prefs FROM members WHERE id=?", (member_id,)).fetchone()
        if row is None:
            raise LedgerError(f"no member {member_id!r}")
        pending = tx.execute(
            "SELECT prefs FROM member_changes WHERE member_id=? AND applied_at IS NULL ORDER BY id DESC",
            (member_id,),
        ).fetchone()
        previous = str(pending[0] if pending is not None else row[0])
        cur = tx.execute(
            "INSERT INTO member_changes (member_id, prefs, previous, changed_by, changed_at, effective) "
            "VALUES (?,?,?,?,?,?)",
            (member_id, json.dumps(new, sort_keys=True), previous, by[:64], now, effective),
        )
        cid = int(cur.lastrowid or 0)
    return MemberChange(
        cid, member_id, json.dumps(new, sort_keys=True), previous, by[:64], now, effective, None
    )


def current(ledger: Ledger, member_id: str) -> dict[str, object]:
    """The member's newest preferences as JSON: its newest pending change's, else those in force."""
    row = ledger._conn.execute(
        "SELECT prefs FROM member_changes WHERE member_id=? AND applied_at IS NULL ORDER BY id DESC",
        (member_id,),
    ).fetchone()
    if row is None:
        row = ledger._conn.execute("SELECT prefs FROM members WHERE id=?", (member_id,)).fetchone()
        if row is None:
            raise LedgerError(f"no member {member_id!r}")
    out = json.loads(row[0])
    return out if isinstance(out, dict) else {}


def apply_due(ledger: Ledger, start: int, *, now: int) -> list[MemberChange]:
    """Put in force every pending change whose ``effective`` is at or before interval ``start``,
    oldest first, in one transaction; returns them."""
    with ledger.transaction() as tx:
        rows = tx.execute(
            f"SELECT {_COLS} FROM member_changes WHERE applied_at IS NULL AND effective <= ? ORDER BY id",
            (start,),
        ).fetchall()
        for r in rows:
            tx.execute("UPDATE members SET prefs=? WHERE id=?", (r[2], r[1]))
            tx.execute("UPDATE member_changes SET applied_at=? WHERE id=?", (now, r[0]))
    return [MemberChange(r[0], r[1], r[2], r[3], r[4], r[5], r[6], now) for r in rows]


def history(ledger: Ledger, member_id: str | None = None, limit: int = 100) -> list[MemberChange]:
    """Recorded changes, newest first (the member's, for a member)."""
    q = f"SELECT {_COLS} FROM member_changes"
    args: list[object] = []
    if member_id is not None:
        q += " WHERE member_id=?"
        args.append(member_id)
    args.append(limit)
    return [MemberChange(*r) for r in ledger._conn.execute(q + " ORDER BY id DESC LIMIT ?", args)]
