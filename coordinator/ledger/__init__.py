"""The ledger: one SQLite file in WAL mode, append-only for readings and trades.

Integer money (nano-cent: mWh x mc/kWh) and energy (mWh) only. This package owns every SQL
statement of peergrid: a schema change touches it alone. Its modules:

- ``schema``: the tables and their migrations;
- ``store``: :class:`Ledger` (open, migrate, ``transaction()``; registry, readings, board orders,
  rejections);
- ``journal``: the double-entry postings: account names, posting sources and ``post``, which
  numbers a source's postings inside the caller's transaction;
- ``verify``: ``peergrid ledger verify``, the ledger checked from its own records;
- ``queries``: named queries, one module per reader (``settlement``, ``reconcile``, ``billing``,
  ``export``, ``audit``, ``web``, ``provision``, ``flexibility``, ``dispatch``, ``service``, ``sim``,
  ``bench``); each takes the :class:`Ledger`, or the transaction where what it reads decides
  what the caller writes, and returns typed values, never a cursor.
"""

from coordinator.ledger.store import Ledger, LedgerError

__all__ = ["Ledger", "LedgerError"]
