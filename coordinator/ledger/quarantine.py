"""Readings held in quarantine: signed by an enrolled board, in order, but carrying more energy
than the board's connection can (:func:`coordinator.ledger.rules.implausible`), and every later
reading of that board until the operator decides.

Held readings stay out of ``readings`` (so out of settlement and bills). ``release`` stores them
as readings, oldest first, in one transaction: the register chain continues as if they had never
been held. ``reject`` marks them rejected for good; the board's later readings are refused until it
is retired or replaced (a board that signs such readings is not to be trusted with its key). Either
decision is recorded with who made it and when; a kill at any point leaves them held or decided,
never half-stored.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from coordinator.ledger.store import Ledger, LedgerError
from protocol import messages


@dataclass(frozen=True)
class HeldReading:
    board_id: str
    seq: int
    ts: int
    e_imp: int
    e_exp: int
    reason: str
    received: int
    state: str = "held"
    decided_at: int | None = None
    decided_by: str | None = None


def hold(tx: sqlite3.Connection, batch: Iterable[tuple[messages.Reading, bytes, str]], *, now: int) -> int:
    """Store (reading, signature, reason) rows as held, inside the caller's transaction; a reading
    held already is left as it is. Returns how many were new."""
    rows = [
        (r.board, r.seq, r.ts, r.e_imp, r.e_exp, r.encode(), bytes(sig), reason[:300], now)
        for r, sig, reason in batch
    ]
    cur = tx.executemany(
        "INSERT OR IGNORE INTO quarantine (board_id, seq, ts, e_imp, e_exp, body, sig, reason, received) "
        "VALUES (?,?,?,?,?,?,?,?,?)",
        rows,
    )
    return int(cur.rowcount)


def add(ledger: Ledger, batch: Iterable[tuple[messages.Reading, bytes, str]], *, now: int) -> int:
    """:func:`hold` in its own transaction."""
    items = list(batch)
    if not items:
        return 0
    with ledger.transaction() as tx:
        return hold(tx, items, now=now)


_DECIDE = (
    "UPDATE quarantine SET state='{state}', decided_at=?, decided_by=? WHERE board_id=? AND state='held'"
)
_COLS = "board_id, seq, ts, e_imp, e_exp, reason, received, state, decided_at, decided_by"


def listing(ledger: Ledger, *, state: str | None = "held", board: str | None = None) -> list[HeldReading]:
    """Quarantined readings, by board and sequence number (``state`` None: every state)."""
    q = f"SELECT {_COLS} FROM quarantine WHERE 1=1"
    args: list[object] = []
    if state is not None:
        q += " AND state=?"
        args.append(state)
    if board is not None:
        q += " AND board_id=?"
        args.append(board)
    return [HeldReading(*row) for row in ledger._conn.execute(q + " ORDER BY board_id, seq", args)]


def held_boards(ledger: Ledger) -> dict[str, int]:
    """Boards with readings held, and how many each."""
    q = "SELECT board_id, count(*) FROM quarantine WHERE state='held' GROUP BY board_id"
    return {b: int(n) for b, n in ledger._conn.execute(q)}


def rejected_boards(ledger: Ledger) -> set[str]:
    """Boards whose quarantined readings the operator rejected (refused until retired/replaced)."""
    q = "SELECT DISTINCT board_id FROM quarantine WHERE state='rejected'"
    return {b for (b,) in ledger._conn.execute(q)}


def decisions(ledger: Ledger) -> dict[str, tuple[str, int]]:
    """Board -> (state, seq) of its newest decided quarantined reading (released or rejected)."""
    q = (
        "SELECT board_id, state, seq FROM quarantine q WHERE state != 'held' AND seq = "
        "(SELECT max(seq) FROM quarantine WHERE board_id = q.board_id AND state != 'held')"
    )
    return {b: (s, int(n)) for b, s, n in ledger._conn.execute(q)}


def release(ledger: Ledger, board: str, *, by: str, now: int) -> int:
    """Store the board's held readings as readings (oldest first) and mark them released, in one
    transaction. Returns how many were stored. Refused when the board has none held."""
    with ledger.transaction() as tx:
        rows = tx.execute(
            "SELECT body, sig FROM quarantine WHERE board_id=? AND state='held' ORDER BY seq", (board,)
        ).fetchall()
        if not rows:
            raise LedgerError(f"board {board!r} has no readings held in quarantine")
        batch = []
        for body, sig in rows:
            r = messages.decode(bytes(body))
            if not isinstance(r, messages.Reading) or r.board != board:
                raise LedgerError(f"board {board!r}: a held row is not one of its readings")
            batch.append((r, bytes(sig)))
        ledger.add_readings(batch)  # joins this transaction
        tx.execute(_DECIDE.format(state="released"), (now, by[:64], board))
    return len(batch)


def reject(ledger: Ledger, board: str, *, by: str, now: int) -> int:
    """Mark the board's held readings rejected for good. Returns how many."""
    with ledger.transaction() as tx:
        n = tx.execute(_DECIDE.format(state="rejected"), (now, by[:64], board)).rowcount
        if not n:
            raise LedgerError(f"board {board!r} has no readings held in quarantine")
    return int(n)
