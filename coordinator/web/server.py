"""The dashboard's HTTP server: ``async with serving(site, "127.0.0.1:8080"): ...`` or ``serve``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from coordinator.web import WebError
from coordinator.web.api import SITE, Site, authenticate, routes

log = logging.getLogger("peergrid.web")


# The page runs its own scripts and style sheet only (no inline code, nothing from elsewhere), talks
# to its own API, and may not be framed by another site (clickjacking its dispute form or exports).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response, errors included: the API's answers (one member's bills, readings and
    audit bundles) are never stored by a browser or proxy cache."""
    h = response.headers
    h["Content-Security-Policy"] = CSP
    h["X-Frame-Options"] = "DENY"
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "no-referrer"
    if request.path.startswith("/api/"):
        h["Cache-Control"] = "no-store"


def app(site: Site) -> web.Application:
    a = web.Application(middlewares=[authenticate], client_max_size=64 * 1024)
    a[SITE] = site
    a.add_routes(routes())
    a.on_response_prepare.append(_security_headers)
    return a


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise WebError(f"web listen address {text!r} is not host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


@contextlib.asynccontextmanager
async def serving(site: Site, listen: str) -> AsyncIterator[tuple[str, int]]:
    """Serve the dashboard while the block runs; yields the bound (host, port)."""
    host, port = parse_listen(listen)
    runner = web.AppRunner(app(site), access_log=None)
    await runner.setup()
    try:
        tcp = web.TCPSite(runner, host, port)
        try:
            await tcp.start()
        except OSError as e:
            raise WebError(f"cannot listen on {listen}: {e.strerror}") from None
        server = tcp._server
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[:2] if sockets else (host, port)
        log.info("dashboard at http://%s:%d/", bound[0], bound[1])
        yield str(bound[0]), int(bound[1])
    finally:
        await runner.cleanup()


async def serve(site: Site, listen: str, stop: asyncio.Event, announce: bool = True) -> None:
    async with serving(site, listen) as (host, port):
        if announce:
            print(f"peergrid dashboard: http://{host}:{port}/", flush=True)
        await stop.wait()
