"""A VTN stand-in built from the OpenADR 3.0.1 OpenAPI specification (``spec/openadr3.yaml``), on
loopback: every path and method of the specification is a route; ``programs``, ``events`` and
``reports`` are kept in memory (create, search, read, update, delete), ``/auth/token`` issues a
bearer token for the one client it knows; the other objects answer 501. Every request body and
every answer is validated against the specification's schema for it (OpenAPI 3.0's ``nullable``
read as JSON Schema's null type), so a VEN that sends what the specification does not allow fails
its test, and so would the stand-in.

``garbage`` makes it answer bodies that are not OpenADR objects; ``down`` makes it refuse
connections (the server stops).
"""

from __future__ import annotations

import itertools
import secrets
import time
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from aiohttp import web

SPEC = Path(__file__).parent / "spec" / "openadr3.yaml"
OBJECTS = {"programs": "program", "events": "event", "reports": "report"}


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema: ``nullable: true`` allows null."""
    if isinstance(node, list):
        return [_json_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _json_schema(v) for k, v in node.items() if k not in ("nullable", "example", "discriminator")}
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


class Vtn:
    def __init__(self, client_id: str = "ven-1", client_secret: str = "secret-1") -> None:
        self.spec = yaml.safe_load(SPEC.read_text())
        self.schemas = _json_schema(self.spec["components"]["schemas"])
        self.client = (client_id, client_secret)
        self.tokens: set[str] = set()
        self.store: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in OBJECTS}
        self.ids = itertools.count(1)
        self.garbage = False
        self.requests: list[tuple[str, str]] = []  # (method, path) served
        self.invalid: list[str] = []  # bodies the specification does not allow, as received
        self.runner: web.AppRunner | None = None
        self.port = 0

    # -- the specification ------------------------------------------------------------------

    def validate(self, name: str, obj: Any, what: str) -> str | None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": self.schemas}}
        try:
            jsonschema.validate(obj, schema)
        except jsonschema.ValidationError as e:
            return f"{what}: {e.message} at {list(e.absolute_path)}"
        return None

    def app(self) -> web.Application:
        app = web.Application()
        for path, ops in self.spec["paths"].items():
            for method in ops:
                if method in ("get", "post", "put", "delete"):
                    app.router.add_route(method.upper(), path, self._handler(path, method))
        return app

    def _handler(self, path: str, method: str) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.requests.append((method.upper(), request.path))
            return await self._serve(request, path, method)

        return handle

    # -- serving ------------------------------------------------------------------------------

    async def _serve(self, request: web.Request, path: str, method: str) -> web.StreamResponse:
        if path == "/auth/token":
            form = await request.post()
            if (form.get("client_id"), form.get("client_secret")) != self.client:
                return web.json_response({"error": "invalid_client"}, status=400)
            token = secrets.token_hex(16)
            self.tokens.add(token)
            return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": 3600})
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self.tokens and auth != "Bearer operator":
            return self._problem(403, "Forbidden", "no valid bearer token")
        if self.garbage:
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        kind = path.strip("/").split("/")[0]
        if kind not in OBJECTS:
            return self._problem(501, "Not Implemented", f"{kind} is not kept by this stand-in")
        name, objs = OBJECTS[kind], self.store[kind]
        oid = next(iter(request.match_info.values()), None)
        if method in ("post", "put"):
            body = await request.json()
            problem = self.validate(name, body, f"{method.upper()} {request.path}")
            if problem is not None:
                self.invalid.append(problem)
                return self._problem(400, "Bad Request", problem)
        if method == "get" and oid is None:
            out = list(objs.values())
            for q in ("programID", "eventID", "clientName"):
                if q in request.query:
                    out = [o for o in out if o.get(q) == request.query[q]]
            return self._answer(name, out, many=True)
        if method == "post":
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            obj = {
                **body,
                "id": f"{name}-{next(self.ids)}",
                "createdDateTime": now,
                "modificationDateTime": now,
            }
            obj["objectType"] = name.upper()
            objs[obj["id"]] = obj
            return self._answer(name, obj, status=201)
        if oid not in objs:
            return self._problem(404, "Not Found", f"no {name} {oid!r}")
        if method == "get":
            return self._answer(name, objs[oid])
        if method == "put":
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            objs[oid] = {**objs[oid], **body, "id": oid, "modificationDateTime": now}
            return self._answer(name, objs[oid])
        return self._answer(name, objs.pop(oid))

    def _answer(self, name: str, obj: Any, *, many: bool = False, status: int = 200) -> web.Response:
        for o in obj if many else [obj]:
            problem = self.validate(name, o, f"answer {name}")
            assert problem is None, problem  # the stand-in itself keeps to the specification
        return web.json_response(obj, status=status)

    def _problem(self, status: int, title: str, detail: str) -> web.Response:
        p = {"type": "about:blank", "title": title, "status": status, "detail": detail}
        assert self.validate("problem", p, "problem") is None
        return web.json_response(p, status=status)

    # -- life -----------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        self.runner = web.AppRunner(self.app())
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
