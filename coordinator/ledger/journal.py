"""The double-entry journal: table ``postings(interval, n, party, account, amount, energy, memo)``.

Every money flow is a set of postings (nano-cent ``amount``, mWh ``energy``) keyed by
``(interval, n)``. Each writer of postings is a *source* with its own range of posting numbers in
an interval (``_BASE``); :func:`post` allocates the next free numbers of the source's range inside
the caller's transaction, so two writers never collide and two posts of one source in an interval
follow each other. The ranges are those the ledgers already hold: existing ledgers and their
audits stay valid.

The account names below are the only ones a posting may carry.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from coordinator.ledger.store import Ledger, LedgerError

# -- accounts ---------------------------------------------------------------------------------

# energy traded, per kind of trade (``bought(kind)`` / ``sold(kind)``)
LOCAL: Final = "local"  # between members
SUPPLIER_KIND: Final = "supplier"  # with the supplier of last resort
IMBALANCE_KIND: Final = "imbalance"  # a dispatched member's deviation from its schedule
KINDS: Final = (LOCAL, SUPPLIER_KIND, IMBALANCE_KIND)

ENERGY_BOUGHT_PREFIX: Final = "energy_bought_"
ENERGY_SOLD_PREFIX: Final = "energy_sold_"
ENERGY_BOUGHT_LOCAL: Final = "energy_bought_local"
ENERGY_SOLD_LOCAL: Final = "energy_sold_local"
ENERGY_BOUGHT_SUPPLIER: Final = "energy_bought_supplier"
ENERGY_SOLD_SUPPLIER: Final = "energy_sold_supplier"
ENERGY_BOUGHT_IMBALANCE: Final = "energy_bought_imbalance"
ENERGY_SOLD_IMBALANCE: Final = "energy_sold_imbalance"
GRID_FEE: Final = "grid_fee"  # the grid operator's fee on a trade
FLEXIBILITY: Final = "flexibility"  # the operator's payment for delivered flexibility
REDISPATCH_COMPENSATION: Final = "redispatch_compensation"  # the operator's compensation for a redispatch
RECONCILIATION_IMPORT: Final = "reconciliation_import"  # utility meter: import difference (losses)
RECONCILIATION_EXPORT: Final = "reconciliation_export"  # utility meter: export difference
PLATFORM_FEE: Final = "platform_fee"  # the platform operator's fee on a local trade, paid by the seller
ASSET_SHARE: Final = "asset_share"  # a community-owned asset's revenue passed to its shareholders
NET_METERING: Final = "net_metering"  # net metering: a period's export set against its import

_BOUGHT: Final = {
    LOCAL: ENERGY_BOUGHT_LOCAL,
    SUPPLIER_KIND: ENERGY_BOUGHT_SUPPLIER,
    IMBALANCE_KIND: ENERGY_BOUGHT_IMBALANCE,
}
_SOLD: Final = {
    LOCAL: ENERGY_SOLD_LOCAL,
    SUPPLIER_KIND: ENERGY_SOLD_SUPPLIER,
    IMBALANCE_KIND: ENERGY_SOLD_IMBALANCE,
}

# every account a posting may carry
POSTING_ACCOUNTS: Final = frozenset(
    {
        *_BOUGHT.values(),
        *_SOLD.values(),
        GRID_FEE,
        FLEXIBILITY,
        REDISPATCH_COMPENSATION,
        RECONCILIATION_IMPORT,
        RECONCILIATION_EXPORT,
        PLATFORM_FEE,
        ASSET_SHARE,
        NET_METERING,
        "fixed",
        "subscription",
        "contract_subscription",
    }
)

# a bill's charges (billing.charges): pending on its statements until its invoice posts them
FIXED: Final = "fixed"
SUBSCRIPTION: Final = "subscription"
CONTRACT_SUBSCRIPTION: Final = "contract_subscription"


def bought(kind: str) -> str:
    """The account of energy bought in a trade of ``kind`` (``LOCAL``, ``SUPPLIER_KIND``,
    ``IMBALANCE_KIND``)."""
    try:
        return _BOUGHT[kind]
    except KeyError:
        raise JournalError(f"no kind of trade {kind!r} (one of {', '.join(KINDS)})") from None


def sold(kind: str) -> str:
    """The account of energy sold in a trade of ``kind``."""
    try:
        return _SOLD[kind]
    except KeyError:
        raise JournalError(f"no kind of trade {kind!r} (one of {', '.join(KINDS)})") from None


# -- sources ----------------------------------------------------------------------------------

SCHEDULE: Final = "schedule"  # settlement: ex-ante schedules of dispatched storage
IMBALANCE: Final = "imbalance"  # settlement: deviations of dispatched members
MARKET: Final = "market"  # settlement: the ex-post market's trades and residual
RECONCILE: Final = "reconcile"  # reconciliation with the utility meter (interval = period's last)
FLEX: Final = "flexibility"  # flexibility payments (interval = request start)
REDISPATCH: Final = "redispatch"  # redispatch compensation
CHARGES: Final = "charges"  # an invoice's charges (interval = its period's last)
SHARES: Final = "shares"  # a community asset's revenue passed to its shareholders

SPAN: Final = 10_000_000  # posting numbers of one source in one interval
_BASE: Final = {
    SCHEDULE: 0,
    IMBALANCE: 10_000_000,
    MARKET: 20_000_000,
    RECONCILE: 30_000_000,
    FLEX: 40_000_000,
    REDISPATCH: 50_000_000,
    CHARGES: 60_000_000,
    SHARES: 70_000_000,
}
SOURCES: Final = tuple(_BASE)


class JournalError(LedgerError):
    """A posting that cannot be written: unknown source or account, a non-integer amount, no
    transaction, or a source's range of posting numbers exhausted."""


@dataclass(frozen=True)
class Posting:
    """One row of the journal: ``amount`` nano-cent to ``party`` (+ received, - paid), ``energy``
    mWh (+ received, - delivered)."""

    party: str
    account: str
    amount: int
    energy: int = 0
    memo: str = ""


def source_of(n: int) -> str | None:
    """The source whose range holds posting number ``n``, or None."""
    for s, base in _BASE.items():
        if base <= n < base + SPAN:
            return s
    return None


def post(tx: sqlite3.Connection, interval: int, source: str, rows: Iterable[Posting]) -> range:
    """Insert ``rows`` as postings of ``interval`` by ``source``, numbered after the source's last
    posting in that interval (from the source's base when it has none). ``tx`` is what
    ``ledger.transaction()`` yields: the numbers are read and written in the caller's transaction,
    so nothing is allocated if it rolls back. Returns the numbers used."""
    if not tx.in_transaction:
        raise JournalError(f"postings of {source} for interval {interval} outside a transaction")
    base = _BASE.get(source)
    if base is None:
        raise JournalError(f"no posting source {source!r} (one of {', '.join(SOURCES)})")
    items = list(rows)
    for p in items:
        _check(p, source, interval)
    last = tx.execute(
        "SELECT max(n) FROM postings WHERE interval=? AND n>=? AND n<?", (interval, base, base + SPAN)
    ).fetchone()[0]
    first = base if last is None else int(last) + 1
    if first + len(items) > base + SPAN:
        raise JournalError(f"interval {interval}: the posting numbers of {source} are exhausted")
    tx.executemany(
        "INSERT INTO postings (interval, n, party, account, amount, energy, memo) VALUES (?,?,?,?,?,?,?)",
        [(interval, first + k, p.party, p.account, p.amount, p.energy, p.memo) for k, p in enumerate(items)],
    )
    return range(first, first + len(items))


def interval_total(ledger: Ledger, interval: int) -> int:
    """The amounts of the interval's postings summed (nano-cent): 0 for a sound interval."""
    q = "SELECT coalesce(sum(amount), 0) FROM postings WHERE interval=?"
    return int(ledger._conn.execute(q, (interval,)).fetchone()[0])


def _check(p: Posting, source: str, interval: int) -> None:
    where = f"posting of {source} for interval {interval}"
    if p.account not in POSTING_ACCOUNTS:
        raise JournalError(f"{where}: no account {p.account!r}")
    if not p.party:
        raise JournalError(f"{where}: no party")
    for name in ("amount", "energy"):
        v = getattr(p, name)
        if not isinstance(v, int) or isinstance(v, bool):
            raise JournalError(f"{where}: {name} must be an integer, got {v!r}")
