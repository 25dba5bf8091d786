"""The board registry's queries beyond :class:`~coordinator.ledger.Ledger`'s own: retiring a board
and noticing that another process changed the ledger."""

from __future__ import annotations

import sqlite3

from coordinator.ledger.store import Ledger


def retire_board(tx: sqlite3.Connection, board_id: str) -> None:
    """Mark the board retired (inside the transaction that checked it may be)."""
    tx.execute("UPDATE boards SET status='retired' WHERE id=?", (board_id,))


def data_version(ledger: Ledger) -> int:
    """SQLite's ``data_version``: it changes when another connection commits to the ledger."""
    return int(ledger._conn.execute("PRAGMA data_version").fetchone()[0])
