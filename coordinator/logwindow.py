"""Warnings at a bounded rate, per source and reason.

A flood of bad input (a broken board, an attacker on the network) must cost bounded log and
memory: the first event of each (source, reason) in a window is logged in full by the caller; the
rest of that window is counted and logged as one summary line when the window ends (at the next
event after it, or at :meth:`LogWindow.roll`). At most ``max_keys`` pairs are tracked a window;
beyond, events count under ("*", reason). The ingest's refused frames
(coordinator/transaction/refusals.py) and the OCPP central system's refused connections
(coordinator/chargers/auth.py) are logged through it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class LogWindow:
    log: logging.Logger
    summary: str  # the summary line's subject, with {source} and {reason}: "rejected {reason} from {source}"
    window_s: float = 60.0
    max_keys: int = 1024
    clock: Callable[[], float] = time.monotonic
    logged: int = 0  # log lines written (the callers' full lines and the summaries)
    _start: float | None = None
    _window: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # key -> [held back]
    _last: dict[tuple[str, str], str] = field(default_factory=dict)  # key -> the last held detail

    @property
    def tracked(self) -> int:
        """The (source, reason) pairs tracked this window (at most ``max_keys`` + the "*" ones)."""
        return len(self._window)

    def first(self, source: str, reason: str, detail: str = "") -> bool:
        """Count one event: True when it is the first of its (source, reason) this window (the
        caller logs it in full; it is counted in ``logged``), False when it is held back for the
        summary (``detail``, if given, is shown there as the last one)."""
        now = self.clock()
        if self._start is None:
            self._start = now
        elif now - self._start >= self.window_s:
            self.roll(now)
        key = (source, reason)
        if key not in self._window and len(self._window) >= self.max_keys:
            key = ("*", reason)
        seen = self._window.get(key)
        if seen is None:
            self._window[key] = [0]
            self.logged += 1
            return True
        seen[0] += 1
        if detail:
            self._last[key] = detail
        return False

    def roll(self, now: float | None = None) -> int:
        """End the window if it is over: one summary line per (source, reason) held back; the
        lines written."""
        now = self.clock() if now is None else now
        if self._start is None or now - self._start < self.window_s:
            return 0
        lines = 0
        for (source, reason), (n,) in sorted(self._window.items()):
            if n:
                lines += 1
                last = self._last.get((source, reason))
                self.log.warning(
                    "%s %d more times in the last %.0f s%s",
                    self.summary.format(source=source, reason=reason),
                    n,
                    now - self._start,
                    f" (last: {last})" if last else "",
                )
        self.logged += lines
        self._window.clear()
        self._last.clear()
        self._start = now
        return lines
