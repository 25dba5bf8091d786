"""The interval loop: settle each market interval once it is over (plus a delay for late
readings), store the clearing, and broadcast a signed Result to the grid.

Intervals are aligned to the Unix epoch (a 900 s interval starts at :00, :15, :30, :45 UTC). After
a restart the loop publishes the newest stored Result again (settled just before a crash, it may
never have been published), then catches up: it settles every interval since the last settled
one (or since the first stored reading), oldest first, up to ``MAX_CATCH_UP`` per pass. After a
change of the interval length the next interval is the first one aligned to the new length that
starts at or after the last settled end (energy metered in between counts in it, as a late
reading does).

An interval whose wholesale price is missing (``bilateral`` with wholesale-indexed contracts)
waits, and the intervals after it with it (they settle in order): the loop logs which interval
waits for which file, re-reads ``market.wholesale`` whenever the file changes, and settles on as
soon as the price is there. Dispatch goes on meanwhile.

Each interval's orders go out before it starts: the loop also wakes ``Rules.lead`` seconds
(``[market] dispatch_lead_s``) before every interval start and dispatches the next interval then,
its forecast the newest settled interval (the running one is not settled yet). An interval not
dispatched ahead (the loop started or restarted in its middle) is dispatched as soon as the loop
runs; each interval once (after a restart the dispatcher finds its orders stored and sends none).
The boards hold an early order until its ``valid_from``, the interval's start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from coordinator.delivery.dispatch import Dispatch
from coordinator.delivery.flexstep import FlexStep
from coordinator.errors import CoordinatorError
from coordinator.ledger import Ledger
from coordinator.ledger.queries import service as queries
from coordinator.market import Clearing, Contract, MissingPrice, Preferences, Sharing
from coordinator.site import Site
from coordinator.transaction.settlement import digest, settle
from protocol import crypto, frame, messages, topics

log = logging.getLogger("peergrid.interval")
MAX_CATCH_UP = 96
SETTLE_FILE_S = 2.0  # a wholesale price file is re-read once it has not changed for this long
_GONE = (-1, -1)  # the wholesale file's stamp while it cannot be read
DISPATCH_LEAD_S = 30  # default [market] dispatch_lead_s


@dataclass(frozen=True)
class Rules:
    """How intervals settle, and when their orders go out: the scheme and its options (``[market]``
    of the config)."""

    scheme: str = "pairwise"
    delay: int = 60  # s after an interval's end before it settles (late readings)
    sharing: Sharing | None = None  # self_consumption: allocation keys
    contracts: tuple[Contract, ...] = ()  # bilateral: chosen-producer contracts
    wholesale: Mapping[int, int] | None = None  # bilateral: wholesale price per interval start
    wholesale_file: Path | None = None  # market.wholesale: re-read when it changes
    lead: int = DISPATCH_LEAD_S  # s before an interval starts when its orders go out (< its length)


@dataclass
class IntervalLoop:
    ledger: Ledger
    site: Site
    rules: Rules
    key: crypto.SigningKey
    now: Callable[[], float]
    publish: Callable[[str, bytes], Awaitable[None]]
    dispatch: Dispatch | None = None  # sends the boards their orders before each interval
    flex: FlexStep | None = None  # members' changes in force, flexibility requests cleared and paid
    dispatched: int = -1  # the newest interval start dispatched by this loop
    _wholesale_stamp: tuple[int, int] | None = None  # (mtime ns, size) of the prices loaded
    _waiting: int | None = None  # the interval waiting for its wholesale price, once logged

    @property
    def grid(self) -> str:
        return self.site.grid

    @property
    def length(self) -> int:
        return self.site.length

    def prefs(self) -> dict[str, Preferences]:
        out = {}
        for m in self.ledger.members():
            out[m.id] = m.market_preferences()
        return out

    def due(self) -> list[int]:
        """Interval starts that are over (with the delay) and not settled yet, oldest first."""
        end = queries.settled_end(self.ledger)
        if end is not None:  # the first aligned start at or after the last settled end
            first = -(-end // self.length) * self.length
        else:
            oldest = queries.first_reading_ts(self.ledger)
            if oldest is None:
                return []
            first = oldest - oldest % self.length
        last = int(self.now()) - self.rules.delay - self.length  # latest start whose end + delay passed
        out: list[int] = []
        s = first
        while s <= last and len(out) < MAX_CATCH_UP:
            out.append(s)
            s += self.length
        return out

    def to_dispatch(self) -> list[int]:
        """Interval starts whose orders go out now, oldest first, each once: the running interval
        if it was not dispatched ahead (a start or restart in its middle), and the next one from
        ``lead`` seconds before it starts."""
        now = int(self.now())
        current = now - now % self.length
        nxt = current + self.length
        return [s for s in (current, nxt) if s > self.dispatched and now >= s - self.rules.lead]

    def result(self, c: Clearing) -> tuple[str, bytes]:
        msg = messages.Result(
            grid=self.grid,
            interval=c.interval,
            length=self.length,
            scheme=c.scheme.replace("_", "-"),
            price=c.price or 0,
            traded=c.traded,
            grid_imp=c.grid_imp,
            grid_exp=c.grid_exp,
            n_trades=c.n_trades,
            digest=digest(c),
        )
        topic = topics.result_topic(self.grid)
        return topic, frame.seal(msg, topic, self.key)

    async def step(self) -> list[Clearing]:
        """Settle what is due; publish each Result (retained). Returns the clearings."""
        done = []
        prefs = self.prefs()
        self.reload_wholesale()
        for start in self.due():
            sealed: list[tuple[str, bytes]] = []  # the signed Result, made once by settle

            def seal(c: Clearing, sealed: list[tuple[str, bytes]] = sealed) -> bytes:
                sealed.append(self.result(c))
                return sealed[-1][1]

            try:
                c = settle(
                    self.ledger,
                    start,
                    self.length,
                    self.rules.scheme,
                    self.site.tariff_at(start),  # time of use: the interval's own tariff
                    prefs,
                    now=int(self.now()),
                    seal=seal,  # the Result is stored with the settlement, in one transaction
                    sharing=self.rules.sharing,
                    contracts=self.rules.contracts or None,
                    wholesale=self.rules.wholesale,
                    platform_fee=self.site.platform_fee,
                    assets=self.site.assets,
                )
            except MissingPrice as e:  # later intervals wait too: intervals settle in order
                self._wait(start, e)
                break
            self._waiting = None
            topic, fr = sealed[-1]  # the frame just stored with the settlement
            await self.publish(topic, fr)
            log.info("interval %d settled: %d mWh local at %s mc/kWh", start, c.traded, c.price)
            done.append(c)
        if self.dispatch is not None:
            for start in self.to_dispatch():
                self.dispatched = start
                if self.flex is not None:
                    self.flex.before_dispatch(start)
                await self.dispatch.run(start)  # market, homes, flexibility; then the grid check
        if self.flex is not None:
            self.flex.after_settle()
        return done

    def reload_wholesale(self) -> bool:
        """Re-read ``wholesale_file`` if it changed since it was last read; True if it was. A file
        changed in the last ``SETTLE_FILE_S`` seconds is left for the next pass (an append in
        progress must not settle an interval on half a line, for good); one that cannot be read
        or parsed is logged and the prices read before are kept."""
        if self.rules.wholesale_file is None:
            return False
        from coordinator.config import load_wholesale

        try:
            st = self.rules.wholesale_file.stat()
        except OSError as e:
            if self._wholesale_stamp != _GONE:  # logged once, not every pass
                self._wholesale_stamp = _GONE
                log.error("wholesale prices not re-read, keeping the %d read before: %s", self._n_prices(), e)
            return False
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._wholesale_stamp or time.time() - st.st_mtime < SETTLE_FILE_S:
            return False
        self._wholesale_stamp = stamp  # a bad file is reported once, and read again when it changes
        try:
            prices = load_wholesale(self.rules.wholesale_file)
        except CoordinatorError as e:
            log.error("wholesale prices not re-read, keeping the %d read before: %s", self._n_prices(), e)
            return False
        if self._n_prices() and prices != self.rules.wholesale:
            log.info("wholesale prices re-read from %s: %d intervals", self.rules.wholesale_file, len(prices))
        self.rules = replace(self.rules, wholesale=prices)
        return True

    def _n_prices(self) -> int:
        return len(self.rules.wholesale or {})

    def _wait(self, start: int, e: MissingPrice) -> None:
        if self._waiting == start:
            log.debug("interval %d still waits for its wholesale price", start)
            return
        self._waiting = start
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(start))
        if self.rules.wholesale_file is not None:
            where = f"append '{start},<mc/kWh>' to {self.rules.wholesale_file}"
        else:
            where = "set market.wholesale in the config (read at start)"
        log.warning(
            "interval %d (%s UTC) waits for its wholesale price, and the intervals after it with it: "
            "%s; %s (settlement goes on when it is there, no restart needed)",
            start,
            when,
            e,
            where,
        )

    async def republish(self) -> int | None:
        """Publish the newest settled interval's stored Result again (retained); its start, or
        None with nothing settled. A Result settled and stored just before a crash was never
        published; the same signed frame again is harmless to subscribers (idempotent)."""
        newest = queries.newest_result(self.ledger)
        if newest is None:
            return None
        start, fr = newest
        await self.publish(topics.result_topic(self.grid), fr)
        log.info("interval %d: stored result published again (retained)", start)
        return start

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self.republish()  # the last one may have been settled but not published before a stop
        except Exception:  # not published now: the next interval's Result is retained
            log.exception("the newest stored result could not be published again")
        while not stop.is_set():
            try:
                await self.step()
            except Exception:  # a bad interval is logged and retried; the service keeps running
                log.exception("settlement failed; retrying in 10 s")
            try:
                await asyncio.wait_for(stop.wait(), timeout=self._sleep())
            except TimeoutError:
                pass

    def _sleep(self) -> float:
        """Seconds until the next thing to do: an interval settles (its end + ``delay``) or the
        next interval's orders go out (``lead`` before its start); at most 60 s (the wholesale
        file is re-read on every pass)."""
        now = self.now()
        wake = min(_next(now, self.length, self.rules.delay), _next(now, self.length, -self.rules.lead))
        return max(0.05, min(wake - now, 60.0))


def _next(now: float, length: int, offset: int) -> float:
    """The first time after ``now`` that is ``offset`` seconds after an interval start."""
    s = now - offset
    return s - s % length + length + offset
