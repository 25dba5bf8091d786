"""Peer-to-system end to end: Mosquitto, ``peergrid coordinator run`` as a process, an OpenADR 3 VTN
stand-in and three virtual boards publishing signed readings over MQTT and applying the
coordinator's signed orders. A battery (CLI ``members set``), an EV (operator API) and a deferrable
load (CLI ``members apply``) are configured only through the CLI and API; one flexibility request
is posted over HTTP, another comes as an OpenADR event. Checked: the orders' setpoints reached the
boards, the EV was charged by its departure, delivery was verified from the signed readings, the
payments are on the members' bills and reported to the VTN, money sums to zero, and ``ledger
verify`` and ``audit verify`` are clean. Intervals of 60 s, a baseline of two: about six minutes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from coordinator.errors import MqttError
from coordinator.ledger import Ledger, flex_requests
from coordinator.service.broker import free_port
from coordinator.service.mqtt import BrokerAddress, Connection
from protocol import crypto, frame, messages, topics
from sim.board import VirtualBoard
from tests.broker import Mosquitto
from tests.openadr.vtn import Vtn

GRID = "g1"
LEN = 60
READ_S = 5
SEED = b"\x42" * 32  # the coordinator's key, written before it starts


def cli(*args: str, cfg: Path) -> str:
    p = subprocess.run(
        [sys.executable, "-m", "coordinator.cli", *args, "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p.stdout


@dataclass
class Home:
    """A virtual board and what is behind it: a base load, a battery, an EV, a relay load."""

    board: VirtualBoard
    base_w: int
    battery_mwh: int = 0  # capacity
    bat_w: int = 0  # the order's setpoint (+ charge)
    ev_mwh: int = 0  # the EV's capacity
    ev_w: int = 0
    phases: int = 1
    stored: int = 0  # mWh in the battery or EV
    relay_w: int = 0  # a load on relay 0, on unless an order switches it off
    relay_on: bool = True
    orders: list[messages.Order] = field(default_factory=list)
    received: dict[int, float] = field(default_factory=dict)  # interval -> when its order arrived
    history: list[tuple[int, int]] = field(default_factory=list)  # (Unix s, mWh stored)
    last: int | None = None  # when ``stored`` was last brought up to now

    def power(self) -> int:
        return self.base_w + self.bat_w + self.ev_w + (self.relay_w if self.relay_on else 0)

    def step(self, now: int) -> None:
        """The battery or EV's energy up to ``now`` at the setpoints in force since the last step."""
        dt = 0 if self.last is None else max(0, now - self.last)
        self.last = now if self.last is None else max(self.last, now)
        cap = self.battery_mwh or self.ev_mwh
        if cap:
            w = self.bat_w + self.ev_w
            self.stored = max(0, min(cap, self.stored + w * dt * 10 // 36))
            if (self.stored == cap and w > 0) or (self.stored == 0 and w < 0):  # full or empty: it stops
                self.bat_w = self.ev_w = 0
            self.board.bat_soc = self.stored * 1000 // cap
            self.board.bat_p = self.bat_w + self.ev_w
            self.history.append((now, self.stored))

    def apply(self, o: messages.Order, now: int) -> None:
        """Put an order in force at ``now`` (its interval's start, or on arrival if that is later)."""
        self.step(now)  # the energy so far at the setpoints of the order before
        self.orders.append(o)
        if o.bat_w is not None and self.battery_mwh:
            self.bat_w = max(-3_000, min(3_000, o.bat_w))
        if o.ev_ma is not None and self.ev_mwh:
            self.ev_w = o.ev_ma * 230 * self.phases // 1000
        if o.relay_mask & 1:
            self.relay_on = bool(o.relay_state & 1)


async def boards(addr: BrokerAddress, homes: dict[str, Home], coord: bytes, stop: asyncio.Event) -> None:
    """Publish each board's signed readings every READ_S s and apply the coordinator's orders, each
    from its ``valid_from`` (an order that arrives early is held, as firmware/orders.py holds it)."""
    verifier = crypto.Verifier(coord)
    by_board = {h.board.board: h for h in homes.values()}
    held: set[asyncio.Task[None]] = set()

    async def at_start(h: Home, o: messages.Order) -> None:
        await asyncio.sleep(o.valid_from - time.time())
        h.apply(o, max(o.valid_from, int(time.time())))

    async def orders() -> None:
        async with Connection(addr, "e2e-orders") as conn:
            await conn.subscribe(topics.board_filter(GRID, "order"))
            async for m in conn.messages():
                o = frame.open_frame(m.topic, m.payload, lambda _m: verifier)
                if isinstance(o, messages.Order) and o.board in by_board:
                    h = by_board[o.board]
                    h.received.setdefault(o.interval, time.time())
                    if time.time() < o.valid_from:
                        t = asyncio.create_task(at_start(h, o))
                        held.add(t)
                        t.add_done_callback(held.discard)
                    else:
                        h.apply(o, int(time.time()))

    task = asyncio.create_task(orders())
    async with Connection(addr, "e2e-boards") as conn:
        for h in homes.values():
            t, fr = h.board.enrolment(int(time.time()))
            await conn.publish(t, fr)
        while not stop.is_set():
            now = int(time.time())
            for h in homes.values():
                h.step(now)
                topic, fr = h.board.reading(now, h.power())
                await conn.publish(topic, fr)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), READ_S - time.time() % READ_S)
    for t in [task, *held]:
        t.cancel()
        with contextlib.suppress(asyncio.CancelledError, MqttError):
            await t


@pytest.mark.timeout(900)
def test_members_devices_and_flexibility_in_a_running_coordinator(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    key = crypto.SigningKey(SEED)
    (tmp_path / "coordinator.key").write_bytes(SEED)
    web = free_port()
    homes = {
        "alice": Home(VirtualBoard(GRID, "b-alice", b"\x01" * 32, lambda t: 0), 500, battery_mwh=10_000_000),
        "bob": Home(VirtualBoard(GRID, "b-bob", b"\x02" * 32, lambda t: 0), 300, ev_mwh=2_000_000, phases=3),
        "carol": Home(VirtualBoard(GRID, "b-carol", b"\x03" * 32, lambda t: 0), 300, relay_w=2_000),
    }
    homes["alice"].stored = 6_000_000
    homes["bob"].stored = 1_500_000  # 750 per-mille: 300 Wh to go to 900
    for h in homes.values():
        h.step(int(time.time()))

    async def body() -> Any:
        vtn = Vtn("peergrid", "vtn-secret")
        vtn_url = await vtn.start()
        cfg = tmp_path / "coordinator.toml"
        cfg.write_text(
            f'[coordinator]\ngrid = "{GRID}"\nledger = "ledger.db"\nkey = "coordinator.key"\n'
            f'[broker]\nhost = "127.0.0.1"\nport = {mosquitto.port}\n'
            f"[market]\ninterval_s = {LEN}\nsettle_delay_s = 5\n"
            f"[flexibility]\nbaseline_intervals = 2\n"
            f'[web]\nlisten = "127.0.0.1:{web}"\n'
            f'[openadr]\nvtn = "{vtn_url}"\nclient_id = "peergrid"\nclient_secret = "vtn-secret"\n'
            f'program = "congestion"\npoll_s = 2\n'
        )
        # members and boards by the CLI; alice's battery before the coordinator runs
        for m, feeder in (("alice", "f1"), ("bob", "f1"), ("carol", "f2")):
            cli("members", "add", "--id", m, "--name", m.title(), "--feeder", feeder, cfg=cfg)
            b = homes[m].board
            cli(
                "board",
                "enroll",
                "--member",
                m,
                "--board",
                b.board,
                "--pubkey",
                b.key.public.hex(),
                "--type",
                "virtual",
                cfg=cfg,
            )
        battery = {
            "capacity_mwh": 10_000_000,
            "max_charge_w": 3_000,
            "max_discharge_w": 3_000,
            "min_soc": 100,
        }
        out = cli(
            "members",
            "set",
            "--id",
            "alice",
            "--storage",
            json.dumps(battery),
            "--flex",
            '{"battery": 12000}',
            "--by",
            "e2e",
            cfg=cfg,
        )
        assert "in force from" in out
        token = cli("dashboard", "token", "--operator", cfg=cfg).strip()
        proc = subprocess.Popen(
            [sys.executable, "-m", "coordinator.cli", "coordinator", "run", "--config", str(cfg)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        stop = asyncio.Event()
        board_task = asyncio.create_task(boards(mosquitto.address, homes, key.public, stop))
        url = f"http://127.0.0.1:{web}"
        auth = {"Authorization": f"Bearer {token}"}
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(200):
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(url + "/api/openapi.json") as r:
                            if r.status == 200:
                                doc = await r.json()
                                break
                    assert proc.poll() is None, proc.communicate()[0]
                    await asyncio.sleep(0.1)
                assert (
                    "/api/flex/requests" in doc["paths"]
                    and "put" in doc["paths"]["/api/members/{member}/devices"]
                )
                t0 = int(time.time())
                start = -(-(t0 + 150) // LEN) * LEN  # a window after a full two-interval baseline
                departure = start + 2 * LEN
                hhmm = time.strftime("%H:%M", time.gmtime(departure))
                # bob's EV by the API, carol's load by a member file through the CLI
                ev = {
                    "storage": {
                        "kind": "ev",
                        "capacity_mwh": 2_000_000,
                        "max_charge_w": 11_000,
                        "phases": 3,
                        "target_soc": 900,
                        "departure": hhmm,
                    }
                }
                async with http.put(url + "/api/members/bob/devices", json=ev, headers=auth) as r:
                    assert r.status == 201, await r.text()
                    change = await r.json()
                assert change["changed_by"] == "api:operator" and change["effective"] > t0
                async with http.put(url + "/api/members/dave/devices", json=ev, headers=auth) as r:
                    assert r.status == 404
                bad = {"storage": {**ev["storage"], "max_charge_w": 90_000}}
                async with http.put(url + "/api/members/bob/devices", json=bad, headers=auth) as r:
                    assert r.status == 400 and "above what its board" in (await r.json())["error"]
                (tmp_path / "carol.toml").write_text(
                    'id = "carol"\n[deferrable]\nw = 2000\nrelay = 0\n[flex]\nload = 9000\n'
                )
                cli("members", "apply", str(tmp_path / "carol.toml"), "--by", "e2e", cfg=cfg)
                # the grid operator: one request over HTTP, one as an OpenADR event
                req = {
                    "id": "dso-f1",
                    "congestion_point": "f1",
                    "direction": "reduce",
                    "power_w": 1_500,
                    "start": start,
                    "intervals": 2,
                    "price_cap": 30_000,
                }
                async with http.post(url + "/api/flex/requests", json=req, headers=auth) as r:
                    assert r.status == 201, await r.text()
                async with http.post(
                    url + "/api/flex/requests", json={**req, "id": "again"}, headers=auth
                ) as r:
                    assert r.status == 409  # overlaps dso-f1
                op = {"Authorization": "Bearer operator"}
                async with http.post(
                    vtn_url + "/programs", json={"programName": "congestion"}, headers=op
                ) as r:
                    prog = await r.json()
                iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))
                event = {
                    "programID": prog["id"],
                    "targets": [{"type": "RESOURCE_NAME", "values": ["f2"]}],
                    "intervalPeriod": {"start": iso, "duration": f"PT{LEN}S"},
                    "intervals": [
                        {
                            "id": k,
                            "intervalPeriod": {
                                "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + k * LEN))
                            },
                            "payloads": [
                                {"type": "DISPATCH_SETPOINT_RELATIVE", "values": [2.0]},
                                {"type": "PRICE", "values": [0.25]},
                            ],
                        }
                        for k in range(2)
                    ],
                }
                async with http.post(vtn_url + "/events", json=event, headers=op) as r:
                    assert r.status == 201, await r.text()
                    ev_id = (await r.json())["id"]
                unknown = {**event, "targets": [{"type": "RESOURCE_NAME", "values": ["f9"]}]}
                async with http.post(vtn_url + "/events", json=unknown, headers=op) as r:
                    assert r.status == 201
                # run the boards through the window until both requests settled and one was reported
                deadline = time.monotonic() + 600
                while True:
                    async with http.get(url + "/api/flex/requests", headers=auth) as r:
                        reqs = {x["request_id"]: x for x in await r.json()}
                    states = {k: v["state"] for k, v in reqs.items()}
                    if (
                        len(reqs) == 2
                        and set(states.values()) <= {"settled", "failed"}
                        and vtn.store["reports"]
                    ):
                        break
                    assert proc.poll() is None, proc.communicate()[0]
                    assert time.monotonic() < deadline, (states, reqs)
                    await asyncio.sleep(2)
                assert set(states.values()) == {"settled"}, reqs
                async with http.get(url + "/api/devices", headers=auth) as r:
                    devices = {d["id"]: d["prefs"] for d in await r.json()}
                assert (
                    set(devices["bob"]["storage"]) >= {"kind", "departure"}
                    and "deferrable" in devices["carol"]
                )
        finally:
            stop.set()
            await board_task
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=30)[0]
            await vtn.stop()
        assert proc.returncode == 0, out
        return reqs, ev_id, departure, start, vtn.store["reports"], vtn.invalid

    reqs, ev_id, departure, start, reports, invalid = asyncio.run(body())
    alice, bob, carol = homes["alice"], homes["bob"], homes["carol"]
    # the setpoints reached the boards in signed orders: alice discharges, carol's load is off; each
    # order went out before its interval started (the boards held it until then)
    window = range(start, start + 2 * LEN, LEN)
    for h in homes.values():
        early = {i: t for i, t in h.received.items() if i >= start}
        assert early and all(t < i for i, t in early.items()), (h.board.board, early)
    assert {o.interval for o in alice.orders if o.bat_w is not None and o.bat_w <= -1_500} >= set(window)
    assert {o.interval for o in carol.orders if o.relay_mask & 1 and not o.relay_state & 1} >= set(window)
    # the EV was charged to its target by its departure
    assert any(o.ev_ma for o in bob.orders)
    at_departure = [mwh for t, mwh in bob.history if t <= departure][-1]
    # the target (900 per-mille, 1.8 kWh) by departure: each interval's order was there at its start,
    # so the EV lost no seconds of its last interval. The plan is tight (it charges at its full 11 kW
    # in its last interval), and what the orders carry is rounded down (mWh to whole W to whole mA,
    # and back to W on the charger): under 67 mWh over its two intervals, within 1 Wh
    assert at_departure >= 1_800_000 - 1_000, bob.history
    # delivery verified from the signed readings and paid; the OpenADR one reported back
    f1, f2 = reqs["dso-f1"], reqs[f"oadr-{ev_id}-0"]
    assert f1["delivered_mwh"] > 0 and f2["delivered_mwh"] > 0 and f1["paid"] > 0 and f2["paid"] > 0, (
        f1,
        f2,
        [(o.interval, o.bat_w, o.relay_mask, o.relay_state) for o in alice.orders + carol.orders],
    )
    (rep,) = reports.values()
    assert rep["eventID"] == ev_id and invalid == []
    cfg = tmp_path / "coordinator.toml"
    with Ledger.open(tmp_path / "ledger.db") as led:
        paid = {r.party: r.payment for r in flex_requests.records(led)}
        total = led._conn.execute("SELECT coalesce(sum(amount), 0) FROM postings").fetchone()[0]
        changes = led._conn.execute("SELECT member_id, changed_by FROM member_changes ORDER BY id").fetchall()
    assert total == 0  # money sums to zero
    assert changes == [("alice", "cli:e2e"), ("bob", "api:operator"), ("carol", "cli:e2e")]
    assert paid["alice"] == f1["paid"] and paid["carol"] == f2["paid"]
    day = time.strftime("%Y-%m-%d", time.gmtime(start))
    for m in ("alice", "carol"):
        bill = cli("bill", "--member", m, "--period", day, cfg=cfg)
        assert "lexibility" in bill, bill
        bundle = tmp_path / f"audit-{m}.json"
        cli("audit", "export", "--member", m, "--period", day, "--out", str(bundle), cfg=cfg)
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "coordinator.cli",
                "audit",
                "verify",
                str(bundle),
                "--coordinator-key",
                key.public.hex(),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 0 and "audit verify: OK" in p.stdout, p.stdout
        assert "not backed by a signed record" not in p.stdout
    out = cli("ledger", "verify", cfg=cfg)
    assert " 0 problems" in out, out
