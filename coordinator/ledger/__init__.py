"""The ledger: one SQLite file in WAL mode, append-only for readings and trades.

Integer money (nano-cent: mWh x mc/kWh) and energy (mWh) only. See ``schema`` for the tables and
their migrations, ``store`` for the API.
"""

from coordinator.ledger.store import Ledger, LedgerError

__all__ = ["Ledger", "LedgerError"]
