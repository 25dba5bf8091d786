"""``GET /healthz``, JSON-line logs and their configuration, against a real Mosquitto and a real
``peergrid coordinator run`` process."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from coordinator import config
from coordinator.ledger import Ledger
from coordinator.service import logs
from coordinator.service.broker import free_port
from coordinator.service.health import Health
from coordinator.service.mqtt import Connection
from sim.board import VirtualBoard
from tests.broker import Mosquitto
from tests.coordinator.readings import store

ROOT = Path(__file__).resolve().parent.parent.parent


def get(port: int, path: str = "/healthz", method: str = "GET") -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_healthz_broker_readings_and_ledger(tmp_path: Path, mosquitto: Mosquitto) -> None:
    now = [time.time()]
    port = free_port()

    async def scenario(ledger: Ledger) -> tuple[list[tuple[int, dict[str, object]]], int]:
        h = Health(ledger, mosquitto.address, "health-test", max_reading_age_s=300, now=lambda: now[0])
        h._retry_s = 0.2
        stop = asyncio.Event()
        task = asyncio.create_task(h.serve("127.0.0.1", port, stop))
        out = []

        async def ask(path: str = "/healthz", method: str = "GET") -> None:
            out.append(await asyncio.to_thread(get, port, path, method))

        async def until(cond: object) -> None:
            for _ in range(100):
                if cond():  # type: ignore[operator]
                    return
                await asyncio.sleep(0.05)

        await until(lambda: h.broker_connected)
        await ask()  # 0: no boards yet, broker up
        b = VirtualBoard("g1", "m01", bytes([1]) * 32, lambda t: 500)
        ledger.add_board("m01", "esp32", b.key.public, now=0, status="active")
        store(ledger, [b], [int(now[0]) - 30])
        await ask()  # 1: a reading 30 s old
        now[0] += 600
        await ask()  # 2: readings stopped arriving
        now[0] -= 600
        await asyncio.to_thread(mosquitto.stop)
        await until(lambda: not h.broker_connected)
        await ask()  # 3: broker down
        await asyncio.to_thread(mosquitto.start)
        await until(lambda: h.broker_connected)
        await ask()  # 4: reconnected
        await ask("/metrics")  # 5
        await ask("/healthz", "POST")  # 6
        ledger._conn.close()
        await ask()  # 7: the ledger does not answer
        stop.set()
        await task
        return out, h.refused

    ledger = Ledger.open(tmp_path / "l.db")
    r, refused = asyncio.run(scenario(ledger))
    assert r[0] == (200, r[0][1]) and r[0][1]["status"] == "ok" and r[0][1]["active_boards"] == 0
    assert r[1][0] == 200 and r[1][1]["last_reading_age_s"] == 30 and r[1][1]["active_boards"] == 1
    assert r[2][0] == 503 and r[2][1]["last_reading_age_s"] == 630 and r[2][1]["status"] == "fail"
    broker = r[3][1]["broker"]
    assert r[3][0] == 503 and isinstance(broker, dict) and broker["connected"] is False and broker["error"]
    assert r[4][0] == 200
    assert [r[5][0], r[6][0]] == [404, 405] and refused == 2
    led = r[7][1]["ledger"]
    assert r[7][0] == 503 and isinstance(led, dict) and led["ok"] is False and "closed" in str(led["error"])


def test_json_lines_and_their_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("json", "info")
    log = logging.getLogger("peergrid.test")
    log.info("stored %d readings", 12, extra={"board": "m01", "batch": 3})
    log.debug("not shown")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(x["level"], x["logger"], x["msg"]) for x in lines] == [
        ("info", "peergrid.test", "stored 12 readings"),
        ("error", "peergrid.test", "failed"),
    ]
    assert lines[0]["board"] == "m01" and lines[0]["batch"] == 3 and lines[0]["ts"].endswith("+00:00")
    assert "ValueError: boom" in lines[1]["exc"]
    logs.setup("text", "warning")
    p = tmp_path / "c.toml"
    base = '[coordinator]\ngrid = "g1"\nledger = "l.db"\n'
    p.write_text(base + '[log]\nformat = "json"\nlevel = "debug"\n[health]\nlisten = "0.0.0.0:8081"\n')
    cfg = config.load(p)
    assert (cfg.log_format, cfg.log_level, cfg.health_listen, cfg.health_max_age_s) == (
        "json",
        "debug",
        "0.0.0.0:8081",
        900,
    )
    for body, msg in (
        ('[log]\nformat = "xml"\n', "log.format 'xml' is not one of text, json"),
        ('[log]\nlevel = "loud"\n', "log.level 'loud'"),
        ('[health]\nlisten = "8081"\n', "health.listen must be host:port"),
        ("[health]\nmax_reading_age_s = 1\n", "health.max_reading_age_s must be 10..604800"),
    ):
        p.write_text(base + body)
        with pytest.raises(config.ConfigError, match=msg):
            config.load(p)


def test_coordinator_run_serves_healthz_and_logs_json(tmp_path: Path, mosquitto: Mosquitto) -> None:
    port = free_port()
    p = tmp_path / "site.toml"
    p.write_text(
        '[coordinator]\ngrid = "g1"\nledger = "l.db"\n'
        f'[broker]\nport = {mosquitto.port}\n[log]\nformat = "json"\n[health]\nlisten = "127.0.0.1:{port}"\n'
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "coordinator", "run", "--config", str(p)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        status: tuple[int, dict[str, object]] | None = None
        while time.monotonic() < deadline:
            try:
                status = get(port)
                if status[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.2)
        assert status is not None and status[0] == 200, status
        assert status[1]["broker"] == {"connected": True, "error": None}

        async def garbage() -> None:  # a frame the ingest refuses: counted in /healthz
            async with Connection(mosquitto.address, "stranger") as c:
                await c.publish("peergrid/g1/b/zz/reading", b"not a frame")

        asyncio.run(garbage())
        refused: object = None
        while time.monotonic() < deadline + 20:
            refused = get(port)[1].get("refused_frames")
            if isinstance(refused, dict) and refused["by_reason"]:
                break
            time.sleep(0.2)
        assert isinstance(refused, dict) and sum(refused["by_reason"].values()) == 1, refused
        assert refused["top_boards"] == {"unknown": 1}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(r["logger"] == "peergrid.health" and "healthz" in r["msg"] for r in records), err
