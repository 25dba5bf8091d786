"""The coordinator as an OpenADR 3 VEN: it polls the grid operator's VTN, turns its events into
capacity limits and flexibility requests (:mod:`.events`, then the same checks the operator API
applies, :mod:`coordinator.p2s`), and reports each settled request's delivered flexibility back.

Every poll: a token (``POST /auth/token``, OAuth2 client credentials, renewed before it expires),
the program's id (``GET /programs``, by ``program`` name), its events (``GET /events``), then a
report (``POST /reports``) per settled request that came from an event and was not reported yet:
``DELTA_USAGE`` (kWh the community moved in the requested direction) and ``BASELINE`` (kWh the
boards would have used in the window) for the congestion point. An event seen before with the
same ``modificationDateTime`` is skipped. A VTN that is unreachable or answers garbage, an event
for an unknown resource or one the checks refuse is logged and counted (``stats``, and the
ledger's rejection counters ``openadr_*``); the service keeps running and nothing already
accepted changes (a changed event does not change a request accepted before).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp

from coordinator.errors import CoordinatorError
from coordinator.ledger import Ledger, flex_requests
from coordinator.ledger.flex_requests import StoredRequest
from coordinator.openadr.config import OpenAdrConfig
from coordinator.openadr.errors import BadObject, UnknownResource, VtnUnreachable
from coordinator.openadr.events import actions
from coordinator.p2s import limits as p2s_limits
from coordinator.p2s import requests as p2s_requests
from coordinator.p2s.errors import Conflict
from coordinator.p2s.requests import Limits

log = logging.getLogger("peergrid.openadr")
SOURCE = "openadr:"
MAX_BODY = 4 * 1024 * 1024  # a VTN's answer larger than this is refused


def _iso(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Ven:
    def __init__(
        self,
        ledger: Ledger,
        cfg: OpenAdrConfig,
        grid: str,
        length: int,
        *,
        now: Callable[[], float] = time.time,
        limits: Limits | None = None,
    ) -> None:
        self.ledger, self.cfg, self.grid, self.length = ledger, cfg, grid, length
        self.now, self.limits = now, limits
        self.stats: Counter[str] = Counter()
        self._token: str | None = None
        self._token_until = 0.0
        self._seen: dict[str, str] = {}  # event id -> modificationDateTime taken

    def _count(self, what: str) -> None:
        self.stats[what] += 1
        self.ledger.count_rejections({f"openadr_{what}": 1})

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while not stop.is_set():
                try:
                    await self.poll(http)
                except VtnUnreachable as e:
                    self._count("vtn_unreachable")
                    log.warning("VTN %s not reached: %s", self.cfg.vtn, e)
                except BadObject as e:
                    self._count("bad_object")
                    log.warning("VTN %s answered garbage: %s", self.cfg.vtn, e)
                except Exception:  # the VEN must never stop the coordinator
                    self._count("error")
                    log.exception("OpenADR poll failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.cfg.poll_s)

    async def _call(
        self, http: aiohttp.ClientSession, method: str, path: str, *, auth: bool = True, **kw: Any
    ) -> Any:
        headers = {"Authorization": f"Bearer {await self._bearer(http)}"} if auth else {}
        try:
            async with http.request(method, self.cfg.vtn + path, headers=headers, **kw) as r:
                body = await r.content.read(MAX_BODY + 1)
                if r.status == 401 and auth:
                    self._token = None
                if r.status >= 400:
                    raise VtnUnreachable(f"{method} {path}: HTTP {r.status}: {body[:200]!r}")
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise VtnUnreachable(f"{method} {path}: {type(e).__name__}: {e}") from None
        if len(body) > MAX_BODY:
            raise BadObject(f"{method} {path}: answer larger than {MAX_BODY} bytes")
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise BadObject(f"{method} {path}: answer is not JSON: {body[:80]!r}") from None

    async def _bearer(self, http: aiohttp.ClientSession) -> str:
        if self._token is not None and time.monotonic() < self._token_until:
            return self._token
        form = {
            "grant_type": "client_credentials",
            "client_id": self.cfg.client_id,
            "client_secret": self.cfg.client_secret,
        }
        t = await self._call(http, "POST", "/auth/token", auth=False, data=form)
        if not isinstance(t, dict) or not isinstance(t.get("access_token"), str):
            raise BadObject("/auth/token: no access_token in the answer")
        expires = t.get("expires_in", 3600)
        self._token = t["access_token"]
        self._token_until = time.monotonic() + max(10, int(expires) if isinstance(expires, int) else 3600) - 5
        return self._token

    async def poll(self, http: aiohttp.ClientSession) -> None:
        """One poll: the program's events taken, settled requests reported."""
        query = {}
        if self.cfg.program is not None:
            programs = await self._call(http, "GET", "/programs")
            if not isinstance(programs, list):
                raise BadObject("/programs: not a list of programs")
            ids = [
                p.get("id")
                for p in programs
                if isinstance(p, dict) and p.get("programName") == self.cfg.program
            ]
            if not ids or not isinstance(ids[0], str):
                raise BadObject(f"/programs: no program named {self.cfg.program!r}")
            query["programID"] = ids[0]
        evs = await self._call(http, "GET", "/events", params=query)
        if not isinstance(evs, list):
            raise BadObject("/events: not a list of events")
        for ev in evs:
            self.take(ev)
        await self.report(http)

    def take(self, ev: object) -> None:
        """Accept what one event asks for (once per modification); refusals logged and counted."""
        if not isinstance(ev, dict) or not isinstance(ev.get("id"), str):
            self._count("bad_object")
            log.warning("VTN event refused: not an event object: %.80r", ev)
            return
        eid, mod = ev["id"], str(ev.get("modificationDateTime") or ev.get("createdDateTime") or "")
        if self._seen.get(eid) == mod:
            return
        self._seen[eid] = mod
        now = int(self.now())
        known = set(p2s_requests.points(self.ledger, self.grid))
        try:
            limits, requests = actions(ev, known=known, grid=self.grid, length=self.length)
        except UnknownResource as e:
            self._count("unknown_resource")
            log.warning("OpenADR event refused: %s", e)
            return
        except BadObject as e:
            self._count("bad_event")
            log.warning("OpenADR event refused: %s", e)
            return
        source = (SOURCE + eid)[:64]
        for lim in limits:
            try:
                p2s_limits.add(self.ledger, lim, grid=self.grid, now=now, source=source)
                self.stats["limits"] += 1
            except CoordinatorError as e:
                self._count("bad_limit")
                log.warning("OpenADR event %s: capacity limit refused: %s", eid, e)
        for req in requests:
            try:
                p2s_requests.post(
                    self.ledger,
                    req,
                    grid=self.grid,
                    now=now,
                    length=self.length,
                    source=source,
                    limits=self.limits,
                )
                self.stats["requests"] += 1
                log.info("OpenADR event %s: flexibility request %s accepted", eid, req["id"])
            except Conflict as e:
                if flex_requests.request(self.ledger, req["id"]) is not None:
                    continue  # accepted at an earlier poll (or before a restart): stands as it was
                self._count("bad_request")
                log.warning("OpenADR event %s: flexibility request refused: %s", eid, e)
            except CoordinatorError as e:
                self._count("bad_request")
                log.warning("OpenADR event %s: flexibility request refused: %s", eid, e)

    async def report(self, http: aiohttp.ClientSession) -> None:
        for r in flex_requests.unreported(self.ledger, SOURCE):
            eid = r.source[len(SOURCE) :]
            try:
                ev = await self._call(http, "GET", f"/events/{eid}")
            except VtnUnreachable as e:
                log.warning("report of %s not sent: event %s: %s", r.request_id, eid, e)
                continue
            if not isinstance(ev, dict) or not isinstance(ev.get("programID"), str):
                raise BadObject(f"/events/{eid}: not an event with a programID")
            await self._call(http, "POST", "/reports", json=self.report_of(r, ev["programID"], eid))
            flex_requests.mark_reported(self.ledger, r.request_id)
            self.stats["reports"] += 1
            log.info("OpenADR report sent for %s: %s mWh delivered", r.request_id, r.delivered_mwh)

    def report_of(self, r: StoredRequest, program_id: str, event_id: str) -> dict[str, Any]:
        """The OpenADR report of a settled request: delivered flexibility and the baseline, kWh."""
        records = [x for x in flex_requests.records(self.ledger) if x.request_id == r.request_id]
        baseline = sum(int(json.loads(x.body)["baseline_mwh"]) for x in records) * r.intervals
        return {
            "programID": program_id,
            "eventID": event_id,
            "clientName": self.cfg.ven_name,
            "reportName": f"flexibility {r.request_id}",
            "payloadDescriptors": [
                {"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": "DELTA_USAGE", "units": "KWH"},
                {"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": "BASELINE", "units": "KWH"},
            ],
            "resources": [
                {
                    "resourceName": r.congestion_point,
                    "intervalPeriod": {"start": _iso(r.start), "duration": f"PT{r.intervals * self.length}S"},
                    "intervals": [
                        {
                            "id": 0,
                            "payloads": [
                                {"type": "DELTA_USAGE", "values": [(r.delivered_mwh or 0) / 1e6]},
                                {"type": "BASELINE", "values": [baseline / 1e6]},
                            ],
                        }
                    ],
                }
            ],
        }
