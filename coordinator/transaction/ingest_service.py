"""The ingest service: MQTT in, checked frames into the ledger, at-least-once end to end.

Readings are buffered and written in batches (one SQLite transaction each); the MQTT messages of
a batch are acknowledged to the broker only after its commit (``manual_ack`` on a persistent
session), so a crash or kill -9 at any point loses no accepted reading: the broker redelivers
whatever was not acknowledged, and the ledger stores a reading once however often it arrives.
Several processes can share the load through an MQTT shared subscription (``group``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from coordinator.errors import MqttError
from coordinator.ledger import Ledger, quarantine
from coordinator.ledger.quarantine import HeldReading
from coordinator.ledger.queries.service import settled_end
from coordinator.ledger.store import ACK_KEPT, ACK_RECORDED
from coordinator.service.mqtt import BrokerAddress, Inbound
from coordinator.transaction.ingest import Held, Ingest, enrolled_at
from coordinator.transaction.subscriber import Subscriber
from protocol import frame, messages, topics

log = logging.getLogger("peergrid.ingest")


@dataclass
class IngestService:
    ledger: Ledger
    grid: str
    broker: BrokerAddress
    now: Callable[[], float] = time.time
    client_id: str = "peergrid-ingest"
    group: str | None = None  # shared-subscription group: several workers split the load
    batch: int = 500
    flush_s: float = 0.2
    auto_enrol: bool = False
    ready: asyncio.Event | None = None  # set once subscribed (each session)
    # a board type's connection limits (import W, export W), from its board file: the plausibility
    # bound of a reading's energy; None: the default bound for every board
    limits: Callable[[str], tuple[int, int]] | None = None
    stored: int = 0
    ingest: Ingest = field(init=False)
    _pending: list[tuple[messages.Reading, bytes, Inbound]] = field(default_factory=list)
    _held: list[tuple[messages.Reading, bytes, str, Inbound]] = field(default_factory=list)
    _acks: list[Inbound] = field(default_factory=list)
    _order_acks: list[tuple[messages.Ack, Inbound]] = field(default_factory=list)  # boards' Acks
    _counted: Counter[str] = field(default_factory=Counter)  # rejections already in the ledger
    replayed_acks: int = 0  # boards' refusals of redelivered orders they had applied (not stored)
    _first: float = 0.0

    def __post_init__(self) -> None:
        self.ingest = Ingest(
            self.grid, now=self.now, auto_enrol=self.auto_enrol, registered=self.ledger.has_board
        )
        if self.limits is not None:
            self.ingest.limits = self.limits
        self.reload_boards()

    def reload_boards(self) -> None:
        """Take the enrolled boards, their newest stored and held readings, and where settlement
        stands, from the ledger."""
        last = self.ledger.last_readings()
        newest_held: dict[str, HeldReading] = {h.board_id: h for h in quarantine.listing(self.ledger)}
        rejected = quarantine.rejected_boards(self.ledger)
        for b in self.ledger.boards("active"):
            self.ingest.track(b, last.get(b.board_id), newest_held.get(b.board_id), b.board_id in rejected)
        self.ingest.settled_end = settled_end(self.ledger)

    def _handle(self, m: Inbound) -> None:
        msg = self.ingest.handle(m.topic, m.payload)
        if msg is None:  # refused: counted and logged by Ingest; acknowledged, never redelivered
            if m.qos:  # held for its PUBACK only (in order, at the next flush): not its payload
                self._acks.append(Inbound("", b"", False, m.mid, m.qos))
            return
        if isinstance(msg, (Held, messages.Reading, messages.Ack)) and not self._buffered():
            self._first = time.monotonic()  # the first waiting for this batch: its flush deadline
        if isinstance(msg, Held):  # kept in quarantine, committed before its PUBACK like a reading
            self._held.append((msg.reading, m.payload[-frame.SIG_LEN :], msg.reason, m))
            return
        if isinstance(msg, messages.Reading):
            self._pending.append((msg, m.payload[-frame.SIG_LEN :], m))  # checked: body || sig
            return
        if isinstance(msg, messages.Ack):  # recorded with the next batch, like readings
            self._order_acks.append((msg, m))
            return
        if isinstance(msg, messages.Enrol) and not self.ledger.has_board(msg.board):
            self.ledger.add_board(
                msg.board,
                msg.board_type,
                msg.pubkey,
                now=enrolled_at(msg, self.now()),
                status="active" if self.auto_enrol else "pending",
            )
            log.info("board %s asks to enrol (%s, key %s)", msg.board, msg.board_type, msg.pubkey.hex())
        self._acks.append(m)

    def _record_order_acks(self) -> None:
        acks = self._order_acks
        done = self.ledger.record_acks((a.board, a.oseq, a.status, m.payload) for a, m in acks)
        for (a, m), outcome in zip(acks, done, strict=True):
            if outcome == ACK_RECORDED:
                if a.status != messages.ST_APPLIED:
                    log.info("board %s order %d: status %d %s", a.board, a.oseq, a.status, a.reason)
            elif outcome == ACK_KEPT:  # QoS 1 redelivery after a lost PUBACK: applied once, kept
                self.replayed_acks += 1
                log.info(
                    "board %s order %d: redelivered after it was applied, refused by the board (%s); "
                    "its applied ack is kept",
                    a.board,
                    a.oseq,
                    a.reason,
                )
            elif a.status == messages.ST_FAILSAFE:  # no valid order in time: not an answer to one
                log.info("board %s fell back to its safe defaults (%s)", a.board, a.reason)
            else:
                log.warning("ack from %s for order %d that was never sent", a.board, a.oseq)
            self._acks.append(m)
        acks.clear()

    def _buffered(self) -> bool:
        """Whether readings, held readings or order acks wait for the next commit."""
        return bool(self._pending or self._order_acks or self._held)

    def flush(self, conn: Subscriber) -> int:
        """Commit the pending readings and order acks, then acknowledge their MQTT messages."""
        if self._order_acks:
            self._record_order_acks()
        n = 0
        if self._held:
            quarantine.add(self.ledger, ((r, sig, why) for r, sig, why, _ in self._held), now=int(self.now()))
            self._acks.extend(m for *_, m in self._held)
            self._held.clear()
        if self._pending:
            n = self.ledger.add_readings((r, sig) for r, sig, _ in self._pending)
            self.stored += n
            self._acks.extend(m for _, _, m in self._pending)
            self._pending.clear()
        self.ingest.refusals.roll()  # the summary of refusals held back, once a window is over
        self.ingest.settled_end = settled_end(self.ledger)  # the settled-time rule's boundary
        new = self.ingest.rejected - self._counted
        if new:
            self.ledger.count_rejections(dict(new))
            self._counted.update(new)
        for m in self._acks:
            conn.ack(m)
        self._acks.clear()
        return n

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Ingest until ``stop`` is set; reconnect (same persistent session) when the broker drops."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self._session(stop)
            except (MqttError, sqlite3.Error) as e:  # nothing unacknowledged is lost: it comes again
                log.warning("ingest session ended (%s: %s); reconnecting", type(e).__name__, e)
                self._pending.clear()  # not acknowledged: the broker redelivers them
                self._held.clear()
                self._order_acks.clear()
                self._acks.clear()
                self.reload_boards()
                await asyncio.sleep(0.5)

    async def _session(self, stop: asyncio.Event) -> None:
        pumps: list[asyncio.Task[None]] = []
        try:
            await self._receive(stop, pumps)
        finally:  # the connection is closed now: a receive task still reading sees it end
            if pumps:
                await asyncio.wait(pumps, timeout=2.0)

    async def _receive(self, stop: asyncio.Event, pumps: list[asyncio.Task[None]]) -> None:
        # The lean subscriber (coordinator/transaction/subscriber.py): batches per socket read,
        # PUBACKs after the commit; the broker's in-flight window (unacknowledged messages) bounds
        # the inbox.
        async with Subscriber(self.broker, self.client_id, clean_session=False) as conn:
            for leaf in ("reading", "enrol", "ack", "status"):
                await conn.subscribe(topics.board_filter(self.grid, leaf, share=self.group))
            if self.ready is not None:
                self.ready.set()
            # The pump appends each socket read's messages to a plain deque and wakes the loop
            # once; the loop then handles everything that has arrived (no timer or task per message).
            inbox: deque[Inbound] = deque()
            arrived = asyncio.Event()

            async def pump() -> None:
                try:
                    async for batch in conn.batches():
                        inbox.extend(batch)
                        arrived.set()
                finally:
                    arrived.set()  # the stream ended (the broker closed it): the loop sees it now

            pumping = asyncio.create_task(pump())
            pumping.add_done_callback(_stream_ended)  # its outcome is always read, and logged
            pumps.append(pumping)
            loop = asyncio.get_running_loop()
            handle = self._handle
            try:
                while not stop.is_set():
                    if pumping.done():
                        pumping.result()  # raises MqttError: the session is gone
                        raise MqttError("message stream ended")
                    if not inbox:
                        # wait for a message or the flush deadline (a timer, not a task per wait)
                        wait = self.flush_s
                        if self._buffered():
                            wait = self._first + self.flush_s - time.monotonic()
                            if wait <= 0:
                                self.flush(conn)
                                continue
                        arrived.clear()
                        timer = loop.call_later(wait, arrived.set)
                        await arrived.wait()
                        timer.cancel()
                        if not inbox:
                            self.flush(conn)
                            continue
                    while inbox:
                        handle(inbox.popleft())
                        if len(self._pending) + len(self._order_acks) + len(self._held) >= self.batch:
                            self.flush(conn)
                    if self._buffered() and time.monotonic() - self._first >= self.flush_s:
                        self.flush(conn)
                self.flush(conn)
            finally:
                # a read that completes as the cancel arrives can swallow it (asyncio.wait_for):
                # the task then ends when the connection closes, just after this
                pumping.cancel()


def _stream_ended(task: asyncio.Task[None]) -> None:
    """Read how the session's receive task ended (never left for the collector to report)."""
    if not task.cancelled() and task.exception() is not None:
        log.info("ingest stream ended: %s", task.exception())
