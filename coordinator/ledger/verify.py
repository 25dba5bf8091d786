"""``peergrid ledger verify``: check the whole ledger from its own records.

- every stored reading's signature, rebuilt from its fields (canonical encoding) and checked
  against the key the board had at that time (``rules.key_valid_at``, the rule ingest applies);
- per board, registers never run backwards (readings in sequence-number order);
- per interval, postings sum to zero and each trade's money matches its energy and prices.

A board timestamp below the previous reading's is a warning, not a problem: a board clock that ran
ahead and is set back by NTP does that, and ingest stores such readings (sequence numbers and
registers order a board's readings, not timestamps; settlement chains them by sequence number,
so the energy still counts once). The warning shows when and how far a board's clock jumped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coordinator.ledger import journal
from coordinator.ledger.rules import key_valid_at
from coordinator.ledger.store import Ledger
from protocol import crypto, frame, topics
from protocol.errors import ProtocolError


@dataclass
class Report:
    readings: int = 0
    intervals: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # worth a look, not a fault of the ledger

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(ledger: Ledger, grid: str, limit: int = 50) -> Report:
    rep = Report()

    def problem(msg: str) -> None:
        if len(rep.problems) < limit:
            rep.problems.append(msg)

    def warning(msg: str) -> None:
        if len(rep.warnings) < limit:
            rep.warnings.append(msg)

    for b in ledger.boards():
        keys = ledger.keys_of(b.board_id)
        verifiers = [(crypto.Verifier(k), lo, hi) for k, lo, hi in keys]
        topic = topics.board_topic(grid, b.board_id, "reading")
        prev = None
        for r, sig in ledger.readings(b.board_id):
            rep.readings += 1
            signed = frame.signed_bytes(r.TYPE, topic, r.encode())
            ok = False
            for v, lo, hi in verifiers:
                if key_valid_at(r.ts, lo, hi):
                    try:
                        v.verify(signed, sig)
                        ok = True
                        break
                    except ProtocolError:
                        continue
            if not ok:
                problem(f"{b.board_id} seq {r.seq}: signature does not verify with the board's keys")
            if prev is not None:
                if r.e_imp < prev.e_imp or r.e_exp < prev.e_exp:
                    problem(f"{b.board_id} seq {r.seq}: registers went down after seq {prev.seq}")
                if r.ts < prev.ts:
                    warning(
                        f"{b.board_id} seq {r.seq}: clock stepped back {prev.ts - r.ts} s after seq "
                        f"{prev.seq} (the board's clock was corrected)"
                    )
            prev = r
    for (start,) in ledger._conn.execute("SELECT start FROM intervals ORDER BY start").fetchall():
        rep.intervals += 1
        total = journal.interval_total(ledger, start)
        if total != 0:
            problem(f"interval {start}: postings sum to {total} nano-cent, not 0")
        paid = ledger._conn.execute(
            "SELECT coalesce(sum(energy * price), 0) FROM trades WHERE interval=?", (start,)
        ).fetchone()[0]
        posted = -ledger._conn.execute(
            "SELECT coalesce(sum(amount), 0) FROM postings WHERE interval=? AND account LIKE ?",
            (start, journal.ENERGY_BOUGHT_PREFIX + "%"),
        ).fetchone()[0]
        if paid != posted:
            problem(f"interval {start}: buyers' postings {posted} differ from trades' value {paid}")
    return rep
