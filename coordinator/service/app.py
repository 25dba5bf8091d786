"""The composition root: the one place that builds a running coordinator from its :class:`Config`.

``peergrid coordinator run``, the simulator, the demo and the benches all build the service here;
nothing else constructs the interval loop or the dispatcher. What a caller may replace is in
:class:`Runtime`: the clock (the simulator's virtual time), the MQTT client id (one per worker), the
signing key and the publish function (tests), and the delivery check (the simulator's SimBench grid,
which a config cannot name). Everything else comes from the config, so the simulator runs the same
wiring an operator runs.

    svc = build(cfg)
    try:
        await svc.run(stop)      # ingest, registry watch, health, dashboard, Home Assistant,
    finally:                     # and the interval loop (settlement, then dispatch)
        await svc.close()

A caller that drives time itself (the simulator) starts the services with ``start(stop,
intervals=False)`` and settles with ``await svc.intervals.step()`` at each interval close.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from coordinator.config import Config, load_key
from coordinator.delivery.dispatch import Dispatch
from coordinator.delivery.flexstep import FlexStep
from coordinator.ledger import Ledger
from coordinator.market import Tariff
from coordinator.service.interval import IntervalLoop, Rules
from coordinator.service.publisher import Publish, Publisher
from coordinator.site import Site
from coordinator.transaction.ingest_service import IngestService
from protocol import crypto

if TYPE_CHECKING:  # the grid check needs numpy/pandapower (the sim extra)
    from coordinator.delivery.guard import AssetCheck
    from coordinator.transaction.billing import Terms

log = logging.getLogger("peergrid.service")


@dataclass(frozen=True)
class Runtime:
    """What a caller replaces of a coordinator built from a config (defaults: production)."""

    now: Callable[[], float] = time.time  # the clock
    client_id: str | None = None  # MQTT client id; default peergrid-<grid>
    ingest_only: bool = False  # an extra ingest worker: no settlement, no dispatch, no web
    key: crypto.SigningKey | None = None  # default: the seed in the config's key file
    publish: Publish | None = None  # default: retained publishes on the coordinator's connection
    check: AssetCheck | None = None  # default: the check of the config's [delivery] grid, if any


def board_limits() -> Callable[[str], tuple[int, int]]:
    """A board type's connection limits (import W, export W) from its board file in ``boards/``;
    the default bound (:data:`coordinator.ledger.rules.DEFAULT_LIMIT_W`) for a type without one."""
    from coordinator.errors import CoordinatorError
    from coordinator.ledger.rules import DEFAULT_LIMIT_W
    from coordinator.provision import boardfile

    known: dict[str, tuple[int, int]] = {}

    def limits(board_type: str) -> tuple[int, int]:
        if board_type not in known:
            known[board_type] = (DEFAULT_LIMIT_W, DEFAULT_LIMIT_W)
            try:
                path = boardfile.board_types().get(board_type)
                if path is not None:
                    lim = boardfile.load(path)["limits"]
                    known[board_type] = (int(lim["import_w"]), int(lim["export_w"]))
            except (CoordinatorError, OSError, KeyError, TypeError, ValueError) as e:
                log.warning("board type %s: limits not read (%s); the default bound applies", board_type, e)
        return known[board_type]

    return limits


def site_of(cfg: Config) -> Site:
    t = Tariff(*cfg.tariff[:4], zone_fees=cfg.zone_fees)
    return Site(cfg.grid, cfg.interval_s, t, cfg.timezone, cfg.tou, cfg.platform_fee, cfg.assets)


def terms_of(cfg: Config) -> Terms:
    """How the config's bills charge and show: fixed charge and its payee, contracts, time zone,
    net metering (scheme ``net_metering``), interval, currency."""
    from coordinator.transaction.billing import Currency, Terms

    return Terms(
        cfg.fixed_per_day,
        cfg.fixed_to,
        cfg.contracts or (),
        cfg.timezone,
        Tariff(*cfg.tariff[:4]) if cfg.scheme == "net_metering" else None,
        cfg.interval_s,
        Currency(*cfg.currency),
    )


def rules_of(cfg: Config) -> Rules:
    return Rules(
        cfg.scheme,
        cfg.settle_delay_s,
        cfg.sharing,
        cfg.contracts or (),
        cfg.wholesale,
        cfg.wholesale_file,
        cfg.dispatch_lead_s,
    )


def grid_check(cfg: Config) -> AssetCheck | None:
    """The delivery check with every device for the config's ``[delivery] grid``, or None."""
    if cfg.grid_file is None:
        return None
    from coordinator.delivery.guard import check_from_file

    return check_from_file(cfg.grid_file, length=cfg.interval_s)


@dataclass
class Service:
    """One coordinator: its ledger connection, ingest, interval loop and dispatcher, and the
    optional services the config asks for. Built by :func:`build`."""

    cfg: Config
    runtime: Runtime
    ledger: Ledger
    key: crypto.SigningKey
    site: Site
    ingest: IngestService
    intervals: IntervalLoop | None
    dispatch: Dispatch | None
    publisher: Publisher | None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def client_id(self) -> str:
        """The MQTT client id (the ingest's; the other sessions add a suffix to it)."""
        return self.ingest.client_id

    def start(self, stop: asyncio.Event, *, intervals: bool = True) -> list[asyncio.Task[None]]:
        """Start the service's tasks (they end when ``stop`` is set); with ``intervals`` the
        interval loop runs on the wall clock too."""
        from coordinator.provision import enrol

        self.tasks = [
            asyncio.create_task(self.ingest.run(stop)),
            asyncio.create_task(enrol.watch(self.ingest.ingest, self.ledger, stop)),
        ]
        if self.cfg.health_listen:
            self.tasks.append(asyncio.create_task(self._health(stop)))
        if not self.runtime.ingest_only:
            if self.cfg.web_listen:
                self.tasks.append(asyncio.create_task(self._web(stop)))
            if self.cfg.hass:
                self.tasks.append(asyncio.create_task(self._hass(stop)))
            if self.cfg.ocpp is not None:
                self.tasks.append(asyncio.create_task(self._ocpp(stop)))
            if intervals and self.intervals is not None:
                self.tasks.append(asyncio.create_task(self.intervals.run(stop)))
            if self.cfg.openadr is not None:
                self.tasks.append(asyncio.create_task(self._openadr(stop)))
        return self.tasks

    async def run(self, stop: asyncio.Event) -> None:
        """Run every task until ``stop`` is set."""
        await asyncio.gather(*self.start(stop))

    async def close(self) -> None:
        """Close the outbound connection and the ledger (after the tasks ended)."""
        if self.publisher is not None:
            await self.publisher.close()
        self.ledger.close()

    async def _health(self, stop: asyncio.Event) -> None:
        from coordinator.service.health import Health

        assert self.cfg.health_listen is not None
        host, _, port = self.cfg.health_listen.rpartition(":")
        health = Health(
            self.ledger,
            self.cfg.broker,
            self.client_id + "-health",
            self.cfg.health_max_age_s,
            refusals=self.ingest.ingest.refusals,
        )
        await health.serve(host, int(port), stop)

    async def _web(self, stop: asyncio.Event) -> None:
        """The dashboard and the operator API on ``[web] listen``, on its own ledger connection;
        a port already taken is reported and the coordinator goes on without it."""
        from coordinator.transaction.audit.bundle import Charges
        from coordinator.web import WebError
        from coordinator.web.api import Site as WebSite
        from coordinator.web.server import serve

        cfg = self.cfg
        assert cfg.web_listen is not None
        charges = Charges(
            self.site.tariff, cfg.fixed_per_day, contracts=cfg.contracts or (), timezone=cfg.timezone
        )
        try:
            with Ledger.open(cfg.ledger) as ledger:
                site = WebSite(ledger, cfg.grid, charges, self.key.public, live=True, length=cfg.interval_s)
                await serve(site, cfg.web_listen, stop)
        except WebError as e:
            print(f"peergrid: dashboard not served: {e}", file=sys.stderr, flush=True)

    async def _ocpp(self, stop: asyncio.Event) -> None:
        """The OCPP central system on ``[ocpp] listen`` (coordinator/chargers), on its own ledger
        connection."""
        from coordinator.chargers.service import OcppService

        assert self.cfg.ocpp is not None
        with Ledger.open(self.cfg.ledger) as ledger:
            svc = OcppService(ledger, self.cfg.ocpp, self.cfg.grid, self.cfg.interval_s, self.key.public,
                              now=self.runtime.now)
            await svc.run(stop)

    async def _openadr(self, stop: asyncio.Event) -> None:
        """The OpenADR 3 VEN polling the grid operator's VTN (coordinator/openadr), on its own ledger
        connection."""
        from coordinator.openadr.ven import Ven

        with Ledger.open(self.cfg.ledger) as ledger:
            ven = Ven(ledger, self.cfg.openadr, self.cfg.grid, self.cfg.interval_s, now=self.runtime.now,
                      limits=board_limits())
            await ven.run(stop)

    async def _hass(self, stop: asyncio.Event) -> None:
        from coordinator.hass import HassPublisher

        with Ledger.open(self.cfg.ledger) as ledger:
            await HassPublisher(ledger, self.cfg.grid).run(self.cfg.broker, self.client_id + "-hass", stop)


def build(cfg: Config, runtime: Runtime | None = None) -> Service:
    """The coordinator that ``cfg`` describes, with ``runtime``'s replacements. Opens the ledger
    (migrating it) and checks what the config names (the dashboard's address) before any task
    starts, so a bad config stops the start with its error."""
    rt = runtime or Runtime()
    if cfg.web_listen and not rt.ingest_only:
        from coordinator.web.server import parse_listen

        parse_listen(cfg.web_listen)
    key = rt.key
    if key is None:
        if cfg.key is None:
            from coordinator.config import ConfigError

            raise ConfigError("coordinator.key: no signing key file configured")
        key = crypto.SigningKey(load_key(cfg.key))
    cfg.ledger.parent.mkdir(parents=True, exist_ok=True)
    ledger = Ledger.open(cfg.ledger)
    site = site_of(cfg)
    client_id = rt.client_id or f"peergrid-{cfg.grid}"
    ingest = IngestService(
        ledger,
        cfg.grid,
        cfg.broker,
        now=rt.now,
        batch=cfg.batch,
        flush_s=cfg.flush_ms / 1000,
        group=cfg.group,
        auto_enrol=cfg.auto_enrol,
        client_id=client_id,
        limits=board_limits(),
    )
    publisher: Publisher | None = None
    intervals = dispatch = None
    if not rt.ingest_only:
        publish = rt.publish
        if publish is None:
            publisher = Publisher(cfg.broker, client_id + "-market")
            publish = publisher.publish
        check = rt.check if rt.check is not None else grid_check(cfg)
        dispatch = Dispatch(ledger, site, key, publish, check=check)
        flex = FlexStep(ledger, site, key, dispatch, rt.now, cfg.flex_baseline)
        intervals = IntervalLoop(ledger, site, rules_of(cfg), key, rt.now, publish, dispatch, flex)
    return Service(cfg, rt, ledger, key, site, ingest, intervals, dispatch, publisher)
