"""After a run: what the boards sent against what the ledger holds, and conservation of energy and
money in the settlement. Every check that fails adds a line to ``problems``; a clean run has none.

Readings. Every reading a board signed is stored exactly once with the registers the board signed,
or was refused as stale: a frame the network delivered after a newer one of the same board (its
energy is not lost: the newer reading's registers include it). Nothing stored was not sent.

Energy. Per board, the settled register differences chain without gap or overlap (each interval
starts on the reading the previous one ended on), so across the run they add up to the registers'
advance exactly; the last settled registers are the board's final registers. Per interval, every
member's posted energy equals its measured net energy, local energy sold equals local energy
bought, and members' net import equals what the supplier sold minus what it bought.

Money. The postings of every interval (members, supplier, grid operator, flexibility) sum to zero,
and ``peergrid ledger verify`` finds nothing wrong (signatures, registers, trades vs postings).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from coordinator.ledger import Ledger, journal
from coordinator.ledger.queries import sim as q
from coordinator.ledger.verify import verify
from coordinator.market import SUPPLIER
from sim.fleet import SentReading


@dataclass
class Invariants:
    sent: int = 0  # readings the boards signed
    stored: int = 0  # of them, in the ledger
    stale: int = 0  # refused because the network delivered them after a newer one
    lost: int = 0
    queued: int = 0  # signed, still in a board's spool when the run ended (sent at its next boot)
    intervals: int = 0
    settled_mwh: int = 0  # imports + exports settled, all boards
    unsettled_mwh: int = 0  # metered before the first or after the last settled boundary (a skewed clock)
    money_sum: int = 0  # nano-cent, all postings
    refused: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        refused = ", ".join(f"{n} {c}" for c, n in sorted(self.refused.items())) or "none"
        return [
            f"readings  {self.sent} signed by the boards: {self.stored} stored once, {self.stale} stale "
            f"(overtaken on the network, energy carried by the next), {self.queued} still queued on a "
            f"board, {self.lost} lost",
            f"refused   {refused}",
            f"energy    {self.intervals} intervals settled, {self.settled_mwh / 1e6:.3f} kWh metered "
            f"({self.unsettled_mwh / 1e6:.3f} kWh outside the settled span); register chains unbroken, "
            "sold = bought + grid in every interval"
            if not any(p.startswith("energy") for p in self.problems)
            else "energy    PROBLEMS (below)",
            f"money     postings sum to {self.money_sum} nano-cent",
            *(f"PROBLEM   {p}" for p in self.problems[:30]),
        ]


def check(
    ledger: Ledger,
    grid: str,
    sent: dict[str, dict[int, SentReading]],
    registers: dict[str, tuple[int, int]],
    refused: Counter[str],
    queued: dict[str, set[int]] | None = None,
) -> Invariants:
    inv = Invariants(refused=dict(refused))
    problem = inv.problems.append
    # -- readings -------------------------------------------------------------------------
    for board, by_seq in sorted(sent.items()):
        stored = {r.seq: r for r, _ in ledger.readings(board)}
        inv.sent += len(by_seq)
        last_seq = -1
        top = max(stored, default=-1)  # the newest seq the ledger holds for this board
        for seq in sorted(by_seq):
            s = by_seq[seq]
            r = stored.get(seq)
            if r is None:
                if seq in (queued or {}).get(board, ()):
                    inv.queued += 1  # still on the board's flash: it goes at the next boot
                elif seq < top:
                    inv.stale += 1  # a later reading was stored first: refused as a replay
                else:
                    inv.lost += 1
                    problem(f"readings: {board} seq {seq} was sent and is not in the ledger")
                continue
            inv.stored += 1
            last_seq = max(last_seq, seq)
            if (r.ts, r.e_imp, r.e_exp) != (s.ts, s.e_imp, s.e_exp):
                problem(f"readings: {board} seq {seq} stored with other values than the board signed")
        for seq in stored:
            if seq not in by_seq:
                problem(f"readings: {board} seq {seq} is in the ledger but the board never sent it")
        if board in registers and last_seq in stored:
            if (stored[last_seq].e_imp, stored[last_seq].e_exp) != registers[board]:
                problem(f"energy: {board}'s last stored registers differ from its meter's")
    if inv.stale > refused.get("replay", 0):
        problem(
            f"readings: {inv.stale} readings missing behind newer ones, "
            f"only {refused.get('replay', 0)} refused"
        )
    # -- energy: register chains ---------------------------------------------------------------
    last_end = q.last_end(ledger)
    for board in sorted(sent):
        rows = q.settled_spans(ledger, board)
        prev = None
        if rows:  # metered before the board's first settled boundary (by its own clock)
            inv.unsettled_mwh += rows[0][3] + rows[0][4]
        for row in rows:
            _, s0, s1, i0, x0, i1, x1 = row
            if i1 < i0 or x1 < x0 or s1 < s0:
                problem(f"energy: {board} interval {row[0]} settles registers that run backwards")
            if prev is not None and (s0, i0, x0) != (prev[2], prev[5], prev[6]):
                problem(f"energy: {board} interval {row[0]} does not start where interval {prev[0]} ended")
            inv.settled_mwh += (i1 - i0) + (x1 - x0)
            prev = row
        if prev is None:
            continue
        at_end = ledger.register_at(board, last_end)  # by the board's own clock
        if at_end is not None and (prev[5], prev[6]) != (at_end.e_imp, at_end.e_exp):
            problem(
                f"energy: {board} settled up to {prev[5]}/{prev[6]} mWh, its registers at the last "
                f"interval's end were {at_end.e_imp}/{at_end.e_exp}"
            )
        if board in registers:
            inv.unsettled_mwh += sum(registers[board]) - prev[5] - prev[6]
    # -- energy and money per interval -----------------------------------------------------------
    starts = q.interval_starts(ledger)
    inv.intervals = len(starts)
    for start in starts:
        measured = {p: i - x for p, i, x in q.deliveries(ledger, start)}
        posted = q.posted_energy(ledger, start)
        for p, net in measured.items():
            if posted.get(p, 0) != net:
                problem(
                    f"energy: interval {start}: {p} measured {net} mWh net, postings say {posted.get(p, 0)}"
                )
        sup_sold = sup_bought = 0
        for b, seller, e in q.trade_energy(ledger, start):
            if SUPPLIER == seller:
                sup_sold += e
            elif SUPPLIER == b:
                sup_bought += e
        acc = q.account_energy(ledger, start, (journal.ENERGY_BOUGHT_LOCAL, journal.ENERGY_SOLD_LOCAL))
        local_bought = acc.get(journal.ENERGY_BOUGHT_LOCAL, 0)
        local_sold = -acc.get(journal.ENERGY_SOLD_LOCAL, 0)
        if sum(measured.values()) != sup_sold - sup_bought:
            problem(
                f"energy: interval {start}: members' net {sum(measured.values())} mWh != supplier's "
                f"{sup_sold - sup_bought} mWh"
            )
        if local_bought != local_sold:
            problem(f"energy: interval {start}: local energy bought {local_bought} != sold {local_sold}")
    total = q.money_sum(ledger)
    inv.money_sum = total
    if total != 0:
        problem(f"money: all postings sum to {total} nano-cent, not 0")
    rep = verify(ledger, grid)
    for p in rep.problems:
        problem(f"ledger verify: {p}")
    return inv
