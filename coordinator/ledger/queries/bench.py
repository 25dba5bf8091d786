"""The benchmarks' queries: a cheap probe of ingest progress and the ledger's size on disk."""

from __future__ import annotations

from coordinator.ledger.store import Ledger


def boards_with_reading(ledger: Ledger, seq: int) -> int:
    """How many boards have a stored reading numbered ``seq`` (one key lookup per board: cheap
    enough to poll while ingest workers write)."""
    q = "SELECT count(*) FROM board_refs b JOIN reading_rows r ON r.ref = b.ref AND r.seq = ?"
    return int(ledger._conn.execute(q, (seq,)).fetchone()[0])


def checkpoint(ledger: Ledger) -> None:
    """Move the write-ahead log into the database file and empty it."""
    ledger._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def vacuum(ledger: Ledger) -> None:
    """Rebuild the database file without free pages."""
    ledger._conn.execute("VACUUM")
