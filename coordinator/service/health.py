"""``GET /healthz`` for the coordinator: is the broker reachable, are readings arriving, does the
ledger answer. A small asyncio HTTP server (standard library only) for a watchdog, a load
balancer or ``curl``; it answers 200 when every check passes and 503 otherwise, with JSON::

    {"status": "ok", "broker": {"connected": true}, "ledger": {"ok": true},
     "last_reading_age_s": 7, "max_reading_age_s": 900, "active_boards": 12}

The broker check keeps its own MQTT session with the coordinator's credentials (so a broker
that refuses them shows here too). The reading age is the time since the newest stored reading
of any active board (its board timestamp); with no active board it is null and not a failure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from coordinator.errors import MqttError
from coordinator.ledger import Ledger, quarantine
from coordinator.service.mqtt import BrokerAddress, Connection
from coordinator.transaction.refusals import RefusalLog

log = logging.getLogger("peergrid.health")
MAX_REQUEST = 8192


@dataclass
class Health:
    ledger: Ledger
    broker: BrokerAddress
    client_id: str
    max_reading_age_s: int = 900
    now: Callable[[], float] = time.time
    broker_connected: bool = False
    broker_error: str | None = None
    refused: int = 0  # requests answered 400/404/405
    refusals: RefusalLog | None = None  # the ingest's refused frames, per reason and board
    _retry_s: float = field(default=2.0)
    _first_probe: bool = True

    def report(self) -> tuple[bool, dict[str, object]]:
        ledger: dict[str, object] = {"ok": True}
        age: int | None = None
        active = 0
        try:
            boards = {b.board_id for b in self.ledger.boards("active")}
            active = len(boards)
            newest = [r.ts for b, r in self.ledger.last_readings().items() if b in boards]
            if newest:
                age = max(0, int(self.now()) - max(newest))
        except sqlite3.Error as e:
            ledger = {"ok": False, "error": str(e)}
        fresh = age is not None and age <= self.max_reading_age_s
        ok = self.broker_connected and bool(ledger["ok"]) and (fresh or active == 0)
        body: dict[str, object] = {
            "status": "ok" if ok else "fail",
            "broker": {"connected": self.broker_connected, "error": self.broker_error},
            "ledger": ledger,
            "last_reading_age_s": age,
            "max_reading_age_s": self.max_reading_age_s,
            "active_boards": active,
        }
        try:  # readings held for the operator's decision (not a failure of the service)
            body["quarantine_held"] = quarantine.held_boards(self.ledger)
        except sqlite3.Error as e:
            body["quarantine_held"] = {"error": str(e)}
        try:  # OCPP chargers: per state, the silent or refusing ones, meter disagreements
            from coordinator.ledger.queries import chargers

            body["chargers"] = chargers.health(self.ledger)
        except sqlite3.Error as e:
            body["chargers"] = {"error": str(e)}
        if self.refusals is not None:  # frames refused by the ingest since start (not a failure)
            body["refused_frames"] = self.refusals.health()
        return ok, body

    async def probe(self, stop: asyncio.Event) -> None:
        """Hold an MQTT session to the broker; ``broker_connected`` says whether it is up."""
        while not stop.is_set():
            try:
                async with Connection(self.broker, self.client_id) as conn:
                    self.broker_connected, self.broker_error = True, None
                    listen = asyncio.create_task(self._drain(conn))
                    halt = asyncio.create_task(stop.wait())
                    done, _ = await asyncio.wait({listen, halt}, return_when=asyncio.FIRST_COMPLETED)
                    halt.cancel()
                    listen.cancel()
                    if listen in done and not listen.cancelled():
                        exc = listen.exception()
                        self.broker_error = str(exc) if exc else "session ended"
            except MqttError as e:
                self.broker_error = str(e)
            if self.broker_connected or self._first_probe:
                log.warning("health: no broker session: %s", self.broker_error)
            self.broker_connected = self._first_probe = False
            if not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self._retry_s)
                except TimeoutError:
                    pass

    async def _drain(self, conn: Connection) -> None:
        async for _ in conn.messages():  # nothing is subscribed: returns or raises on disconnect
            pass

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            parts = head.split(b"\r\n", 1)[0].split()
            body: dict[str, object]
            if len(parts) != 3:
                status, body = 400, {"error": "bad request line"}
            elif parts[0] != b"GET":
                status, body = 405, {"error": "only GET"}
            elif parts[1].split(b"?")[0] != b"/healthz":
                status, body = 404, {"error": "try /healthz"}
            else:
                ok, report = self.report()
                body = report
                status = 200 if ok else 503
            if status in (400, 404, 405):
                self.refused += 1
                log.info("health: refused %r with %d", head[:80], status)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        data = json.dumps(body, sort_keys=True).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}.get(
            status, "Service Unavailable"
        )
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    async def serve(self, host: str, port: int, stop: asyncio.Event) -> None:
        """Serve ``/healthz`` on ``host:port`` and keep the broker probe running until ``stop``."""
        server = await asyncio.start_server(self.handle, host, port, limit=MAX_REQUEST)
        log.info("health endpoint on http://%s:%d/healthz", host, port)
        probe = asyncio.create_task(self.probe(stop))
        async with server:
            await stop.wait()
        await probe
