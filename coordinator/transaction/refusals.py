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
    logged: int = 0  # log lines written (full refusals and summaries)
    _start: float | None = None
    _window: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # key -> [suppressed]
    _last: dict[tuple[str, str], str] = field(default_factory=dict)  # key -> the last reason text

    def refused(self, board: str, reason: str, topic: str, text: str) -> None:
        """Count one refusal of a frame on ``topic`` from ``board`` (an enrolled id or UNKNOWN)."""
        now = self.clock()
        if self._start is None:
            self._start = now
        elif now - self._start >= self.window_s:
            self.roll(now)
        self.by_reason[reason] += 1
        self.by_board[board] += 1
        key = (board, reason)
        if key not in self._window and len(self._window) >= MAX_KEYS:
            key = ("*", reason)
        seen = self._window.get(key)
        if seen is None:
            self._window[key] = [0]
            self.logged += 1
            log.warning("rejected %s from %s on %.120r: %s", reason, board, topic, text[:200])
        else:
            seen[0] += 1
            self._last[key] = text[:200]

    def roll(self, now: float | None = None) -> int:
        """End the window if it is over: one summary line per (board, reason) that was held back.
        Returns the lines written."""
        now = self.clock() if now is None else now
        if self._start is None or now - self._start < self.window_s:
            return 0
        lines = 0
        for (board, reason), (n,) in sorted(self._window.items()):
            if n:
                lines += 1
                log.warning(
                    "rejected %s from %s %d more times in the last %.0f s (last: %s)",
                    reason,
                    board,
                    n,
                    now - self._start,
                    self._last.get((board, reason), ""),
                )
        self.logged += lines
        self._window.clear()
        self._last.clear()
        self._start = now
        return lines

    def health(self) -> dict[str, object]:
        """What ``/healthz`` shows: totals per reason, and the boards with the most refusals."""
        return {
            "by_reason": dict(self.by_reason),
            "top_boards": dict(self.by_board.most_common(10)),
        }
