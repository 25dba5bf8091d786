"""Refused frames, logged as a rate-limited summary per board and reason.

A flood of bad frames (a broken board, an attacker on the network) must cost bounded log and
memory: the first refusal of each (board, reason) in a window is logged in full, with its reason;
the rest of that window is counted and logged as one summary line when the window ends. Boards are
the enrolled ids; every other sender counts as ``unknown`` (a topic can carry any id), so the keys
are bounded by the fleet, and by ``MAX_KEYS`` whatever happens. Totals per reason and per board
since start feed ``/healthz``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from coordinator.logwindow import LogWindow

log = logging.getLogger("peergrid.ingest")
WINDOW_S = 60.0
MAX_KEYS = 1024  # (board, reason) pairs tracked per window; beyond: counted under ("*", reason)
UNKNOWN = "unknown"


@dataclass
class RefusalLog(LogWindow):
    log: logging.Logger = log
    summary: str = "rejected {reason} from {source}"
    window_s: float = WINDOW_S
    max_keys: int = MAX_KEYS
    by_reason: Counter[str] = field(default_factory=Counter)  # since start
    by_board: Counter[str] = field(default_factory=Counter)  # since start (enrolled ids, "unknown")

    def refused(self, board: str, reason: str, topic: str, text: str) -> None:
        """Count one refusal of a frame on ``topic`` from ``board`` (an enrolled id or UNKNOWN)."""
        self.by_reason[reason] += 1
        self.by_board[board] += 1
        if self.first(board, reason, text[:200]):
            log.warning("rejected %s from %s on %.120r: %s", reason, board, topic, text[:200])

    def health(self) -> dict[str, object]:
        """What ``/healthz`` shows: totals per reason, and the boards with the most refusals."""
        return {
            "by_reason": dict(self.by_reason),
            "top_boards": dict(self.by_board.most_common(10)),
        }
