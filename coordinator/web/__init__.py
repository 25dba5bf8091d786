"""The dashboard: a small aiohttp server with a JSON API (documented at /api/openapi.json) and
static pages whose charts are drawn in plain JS. Members see their own data; operators all."""

from coordinator.errors import CoordinatorError


class WebError(CoordinatorError):
    """The dashboard could not start or was misconfigured."""
