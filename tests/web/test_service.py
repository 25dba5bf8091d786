"""``peergrid coordinator run`` with ``[web] listen`` and ``[hass] discovery``: the running
coordinator serves the dashboard and announces its meters to Home Assistant (real Mosquitto)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from coordinator.ledger import Ledger
from coordinator.service.broker import free_port
from coordinator.service.mqtt import Connection
from coordinator.web import auth
from tests.audit.community import build
from tests.broker import Mosquitto


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_coordinator_run_serves_dashboard_and_discovery(tmp_path: Path, mosquitto: Mosquitto) -> None:
    c = build(tmp_path, hours=1)
    port = free_port()
    with c.config.open("a") as f:
        f.write(
            f'[broker]\nhost = "127.0.0.1"\nport = {mosquitto.port}\n'
            f'[web]\nlisten = "127.0.0.1:{port}"\n[hass]\ndiscovery = true\n'
        )
    with Ledger.open(c.ledger) as led:
        op = auth.issue(led, None, now=c.start)
        dave = auth.issue(led, "dave", now=c.start)
    proc = subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "coordinator", "run", "--config", str(c.config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                status, body = _get(url + "/api/openapi.json")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "dashboard did not come up"
                time.sleep(0.1)
        assert status == 200 and json.loads(body)["openapi"].startswith("3.")
        status, body = _get(url + "/api/boards", op)
        assert status == 200 and len(json.loads(body)["boards"]) == 4
        assert _get(url + "/api/members/alice/bill", dave)[0] == 403
        assert _get(url + "/api/boards")[0] == 401

        async def discovered() -> set[str]:
            seen: set[str] = set()
            async with Connection(mosquitto.address, "home-assistant") as ha:
                await ha.subscribe("homeassistant/sensor/+/+/config")

                async def read() -> None:
                    async for m in ha.messages():
                        seen.add(json.loads(m.payload)["unique_id"])
                        if len(seen) == 16:
                            return

                await asyncio.wait_for(read(), 20)
            return seen

        seen = asyncio.run(discovered())
        assert "peergrid_g1_b-dave_energy_import" in seen and len(seen) == 16
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert f"peergrid dashboard: http://127.0.0.1:{port}/" in out
