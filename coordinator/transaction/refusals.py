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
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from coordinator.logwindow import LogWindow

log = logging.getLogger("peergrid.ingest")
WINDOW_S = 60.0
MAX_KEYS = 1024  # (board, reason) pairs tracked per window; beyond: counted under ("*", reason)
UNKNOWN = "unknown"


@dataclass
class RefusalLog:
    window_s: float = WINDOW_S
    clock: Callable[[], float] = time.monotonic
    by_reason: Counter[str] = field(default_factory=Counter)  # since start
    by_board: Counter[str] = field(default_factory=Counter)  # since start (enrolled ids, "unknown")
    window: LogWindow = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.window = LogWindow(
            # through self.clock: a test may set the clock after construction
            log,
            "rejected {reason} from {source}",
            self.window_s,
            MAX_KEYS,
            lambda: self.clock(),
        )

    @property
    def logged(self) -> int:
        """Log lines written (full refusals and summaries)."""
        return self.window.logged

    def refused(self, board: str, reason: str, topic: str, text: str) -> None:
        """Count one refusal of a frame on ``topic`` from ``board`` (an enrolled id or UNKNOWN)."""
        self.by_reason[reason] += 1
        self.by_board[board] += 1
        if self.window.first(board, reason, text[:200]):
            log.warning("rejected %s from %s on %.120r: %s", reason, board, topic, text[:200])

    def roll(self, now: float | None = None) -> int:
        """End the window if it is over: one summary line per (board, reason) that was held back.
        Returns the lines written."""
        return self.window.roll(now)

    def health(self) -> dict[str, object]:
        """What ``/healthz`` shows: totals per reason, and the boards with the most refusals."""
        return {
            "by_reason": dict(self.by_reason),
            "top_boards": dict(self.by_board.most_common(10)),
        }
