"""The project's import rules and ownership rules, read from the source (AST), so that a change
that breaks one fails here with the file and line that broke it:

- protocol knows no service, board or simulator; the firmware no coordinator or simulator;
- the market is pure (no I/O, no clock, nothing of the coordinator but itself and its errors);
- the delivery loop does not import upward (only errors, ledger, market, members, site, protocol);
- the service never imports the simulator (the CLI loads the demo lazily, from sim/);
- every SQL statement lives in coordinator/ledger/ (no ``execute`` elsewhere in the product), and
  the ledger's connection is private to it;
- one place builds the service: only the composition root constructs the interval loop and the
  dispatcher;
- at most 8 modules flat in coordinator/.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _modules(*dirs: str) -> Iterator[tuple[Path, ast.Module]]:
    for d in dirs:
        for p in sorted((ROOT / d).rglob("*.py")):
            yield p, ast.parse(p.read_text(), str(p))


def _imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                yield node.lineno, f"{node.module}.{a.name}"


def _where(p: Path, line: int) -> str:
    return f"{p.relative_to(ROOT)}:{line}"


def _breaking(dirs: tuple[str, ...], bad: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    out = []
    for p, tree in _modules(*dirs):
        for line, name in _imports(tree):
            if name.split(".")[0] in bad and not name.startswith(allowed):
                out.append(f"{_where(p, line)} imports {name}")
    return out


def test_protocol_knows_no_service_board_or_simulator() -> None:
    assert _breaking(("protocol",), ("coordinator", "sim", "firmware")) == []


def test_firmware_knows_no_coordinator_or_simulator() -> None:
    assert _breaking(("firmware",), ("coordinator", "sim")) == []


def test_market_is_pure() -> None:
    io = ("sqlite3", "asyncio", "socket", "time", "os", "aiomqtt", "aiohttp")
    io += ("coordinator", "sim", "protocol")
    assert _breaking(("coordinator/market",), io, ("coordinator.market", "coordinator.errors")) == []


def test_delivery_does_not_import_upward() -> None:
    allowed = (
        "coordinator.delivery.",
        "coordinator.errors.",
        "coordinator.ledger.",
        "coordinator.market.",
        "coordinator.members.",
        "coordinator.site.",
    )
    assert _breaking(("coordinator/delivery",), ("coordinator", "sim"), allowed) == []


def test_the_service_never_imports_the_simulator() -> None:
    found = _breaking(("coordinator",), ("sim",))
    # the CLI's demo command loads sim.demo lazily: the one allowed place
    assert [f for f in found if not f.startswith("coordinator/cli/__init__.py")] == []


def test_no_sql_outside_the_ledger() -> None:
    found = []
    for p, tree in _modules("coordinator", "sim", "bench"):
        if p.is_relative_to(ROOT / "coordinator/ledger"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("execute", "executemany", "executescript"):
                found.append(f"{_where(p, node.lineno)} calls {node.attr}")
    assert found == []


def test_the_ledger_connection_is_private_to_the_ledger() -> None:
    found = []
    for p, tree in _modules("coordinator", "sim", "bench"):
        if p.is_relative_to(ROOT / "coordinator/ledger"):
            continue
        for node in ast.walk(tree):
            # a ledger's connection: ``<...>.ledger.conn``, ``led._conn``, ... (``self._conn`` of an
            # MQTT client is its own)
            if isinstance(node, ast.Attribute) and node.attr in ("conn", "_conn"):
                owner = ast.unparse(node.value).split(".")[-1]
                if owner in ("ledger", "led", "db"):
                    found.append(f"{_where(p, node.lineno)} uses {owner}.{node.attr}")
    assert found == []


def test_only_the_composition_root_builds_the_interval_loop_and_the_dispatcher() -> None:
    found = []
    for p, tree in _modules("coordinator", "sim", "bench"):
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in ("IntervalLoop", "Dispatch", "IngestService"):
                    found.append(f"{_where(p, node.lineno)} {node.func.id}")
    root = "coordinator/service/app.py"
    assert [f for f in found if not f.startswith(root)] == []
    assert {f.split()[-1] for f in found} == {"IntervalLoop", "Dispatch", "IngestService"}


def test_few_modules_flat_in_the_coordinator() -> None:
    flat = sorted(p.name for p in (ROOT / "coordinator").glob("*.py"))
    assert len(flat) <= 8, flat
