"""Reconciliation with the utility meter at the community's grid connection.

The supplier's meter registers what crossed the connection in a period. What the settlement sold
to (bought from) the supplier in that period, netted per interval, is the boards' view of the same
exchange: within one interval the community either drew from the grid or fed into it, and
a dispatched battery's schedule with the supplier and the imbalance that undoes it (a battery that
did not charge as scheduled sells back what it was to buy) are one exchange, not an import and an
export. The difference is losses in the community's own cables, unmetered use and meter
tolerance. It is apportioned to members with a loss proxy — pro rata to the energy each drew
(import difference) or fed in (export difference) in the period — priced at retail (feed-in), and
posted against the supplier, so money still sums to zero. The adjustment shows on the bill as its
own line, dated at the period's last interval so that it lands on the period's bill.

A period is reconciled only once every interval in it is settled and no interval straddles its
start or end: energy not settled yet would otherwise be billed as losses now and settled later.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from coordinator.errors import CoordinatorError
from coordinator.ledger import Ledger, journal
from coordinator.ledger.journal import Posting
from coordinator.ledger.queries import reconcile as q
from coordinator.market import SUPPLIER, Tariff
from coordinator.market.allocation import largest_remainder


class ReconcileError(CoordinatorError):
    """Utility readings are malformed, overlap, or the period cannot be reconciled."""


@dataclass(frozen=True)
class Reconciliation:
    period_start: int
    period_end: int
    utility_imp: int  # mWh
    utility_exp: int
    settled_imp: int  # what settlement sold to the community (supplier's sales)
    settled_exp: int  # what settlement bought from it
    shares_imp: dict[str, int]  # mWh of the import difference per member
    shares_exp: dict[str, int]

    @property
    def diff_imp(self) -> int:
        return self.utility_imp - self.settled_imp

    @property
    def diff_exp(self) -> int:
        return self.settled_exp - self.utility_exp

    @property
    def members(self) -> int:
        """How many members the differences were apportioned to (a member who drew and fed in
        counts once)."""
        return len(self.shares_imp.keys() | self.shares_exp.keys())


def parse_csv(text: str) -> list[tuple[int, int, int, int]]:
    """``period_start,period_end,import_wh,export_wh`` per line (Unix s, Wh); '#' comments."""
    out = []
    for n, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or row[0].startswith("#") or row[0] == "period_start":
            continue
        try:
            a, b, i, e = (int(x) for x in row)
        except ValueError:
            raise ReconcileError(
                f"line {n}: expected period_start,period_end,import_wh,export_wh, got {row!r}"
            ) from None
        if b <= a or i < 0 or e < 0:
            raise ReconcileError(f"line {n}: period must end after it starts and energy be >= 0")
        out.append((a, b, i * 1000, e * 1000))
    return out


def store(ledger: Ledger, rows: list[tuple[int, int, int, int]]) -> int:
    with ledger.transaction() as tx:
        for a, b, i, e in rows:
            clash = q.overlapping_period(tx, a, b)
            if clash is not None:
                raise ReconcileError(f"utility period {a}..{b} overlaps the stored period starting {clash}")
            q.add_period(tx, a, b, i, e)
    return len(rows)


def reconcile(ledger: Ledger, period_start: int, tariff: Tariff) -> Reconciliation:
    """Compare one stored utility period with the settlement and post the differences (checks,
    reads and postings in one transaction: a period is reconciled once, on what is settled)."""
    with ledger.transaction() as tx:
        p = q.period(tx, period_start)
        if p is None:
            raise ReconcileError(f"no utility reading for the period starting {period_start}")
        end = p.period_end
        if p.reconciled:
            raise ReconcileError(f"the period starting {period_start} is already reconciled")
        if q.straddles(tx, period_start):
            raise ReconcileError("an interval straddles the start of the utility period")
        if q.straddles(tx, end):
            raise ReconcileError("an interval straddles the end of the utility period")
        # every interval of the period must be settled: energy not yet settled would otherwise be
        # apportioned as losses now and settled again later
        covered = q.settled_seconds(tx, period_start, end)
        if covered != end - period_start:
            raise ReconcileError(
                f"the utility period {period_start}..{end} is not settled yet: settled intervals cover "
                f"{covered} of its {end - period_start} s"
            )
        flows = q.supplier_energy(tx, SUPPLIER, period_start, end)
        s_imp = sum(max(0, sold - bought) for sold, bought in flows)  # netted per interval
        s_exp = sum(max(0, bought - sold) for sold, bought in flows)
        drew, fed = q.member_energy(tx, period_start, end)
        r = Reconciliation(period_start, end, p.e_imp, p.e_exp, s_imp, s_exp, {}, {})
        shares_imp = _apportion(r.diff_imp, drew)
        shares_exp = _apportion(r.diff_exp, fed)
        rows = _postings(shares_imp, shares_exp, tariff)
        if rows:  # dated inside the period (its last interval), so they land on its bill
            last = q.last_interval(tx, period_start, end)
            journal.post(tx, end - 1 if last is None else last, journal.RECONCILE, rows)
        q.mark_reconciled(tx, period_start)
    return Reconciliation(period_start, end, p.e_imp, p.e_exp, s_imp, s_exp, shares_imp, shares_exp)


def _postings(shares_imp: dict[str, int], shares_exp: dict[str, int], tariff: Tariff) -> list[Posting]:
    out = []
    imp, exp = journal.RECONCILIATION_IMPORT, journal.RECONCILIATION_EXPORT
    for party, e in sorted(shares_imp.items()):  # + : the member drew this much more than billed
        out.append(Posting(party, imp, -e * tariff.retail, e, "utility meter"))
        out.append(Posting(SUPPLIER, imp, e * tariff.retail, -e, party))
    for party, e in sorted(shares_exp.items()):  # + : the member fed in this much less than credited
        # energy as on the member's other lines (+ received, - delivered): it delivered e less
        out.append(Posting(party, exp, -e * tariff.feed_in, e, "utility meter"))
        out.append(Posting(SUPPLIER, exp, e * tariff.feed_in, -e, party))
    return out


def _apportion(diff: int, weights: dict[str, int]) -> dict[str, int]:
    """Split ``diff`` mWh pro rata to ``weights`` exactly (largest remainder; sign kept)."""
    if not diff:
        return {}
    if not weights:
        raise ReconcileError(f"a difference of {diff} mWh but no member energy to apportion it to")
    parties = sorted(weights)
    parts = largest_remainder(abs(diff), [weights[p] for p in parties])
    sign = 1 if diff > 0 else -1
    return {p: sign * x for p, x in zip(parties, parts, strict=True) if x}
