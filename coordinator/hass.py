"""Home Assistant MQTT discovery: each meter board appears as a device with energy and power
sensors that Home Assistant's energy dashboard accepts.

Per board the coordinator publishes retained discovery configs

    homeassistant/sensor/peergrid_<grid>_<board>/{energy_import,energy_export,power,voltage}/config

(energy: ``device_class energy``, ``state_class total_increasing``, kWh; power: W, measurement;
voltage: V) and one retained JSON state per board on ``peergrid/<grid>/hass/<board>``, updated
from verified readings only (what the ledger stored). Values are exact decimals written from the
integer registers (mWh -> kWh with 6 decimals, mV -> V with 3).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from coordinator.errors import MqttError
from coordinator.ledger import Ledger
from coordinator.service.mqtt import BrokerAddress, Connection
from protocol import messages

log = logging.getLogger("peergrid.hass")
PREFIX = "homeassistant"

SENSORS: dict[str, dict[str, Any]] = {
    "energy_import": {
        "name": "Energy import",
        "device_class": "energy",
        "state_class": "total_increasing",
        "unit_of_measurement": "kWh",
        "suggested_display_precision": 3,
    },
    "energy_export": {
        "name": "Energy export",
        "device_class": "energy",
        "state_class": "total_increasing",
        "unit_of_measurement": "kWh",
        "suggested_display_precision": 3,
    },
    "power": {
        "name": "Power",
        "device_class": "power",
        "state_class": "measurement",
        "unit_of_measurement": "W",
    },
    "voltage": {
        "name": "Voltage",
        "device_class": "voltage",
        "state_class": "measurement",
        "unit_of_measurement": "V",
        "suggested_display_precision": 1,
    },
}


def _decimal(value: int, places: int) -> str:
    """An integer in units of 10**-places as an exact decimal string (1234567, 6 -> "1.234567")."""
    sign = "-" if value < 0 else ""
    q, r = divmod(abs(value), 10**places)
    return f"{sign}{q}.{r:0{places}d}"


def node_id(grid: str, board: str) -> str:
    return f"peergrid_{grid}_{board}"


def state_topic(grid: str, board: str) -> str:
    return f"peergrid/{grid}/hass/{board}"


def discovery(grid: str, board: str, member: str | None, board_type: str) -> list[tuple[str, bytes]]:
    """The retained (topic, payload) discovery configs of one board."""
    node = node_id(grid, board)
    device = {
        "identifiers": [node],
        "name": f"peergrid meter {board}" + (f" ({member})" if member else ""),
        "manufacturer": "peergrid",
        "model": board_type,
    }
    out = []
    for key, spec in SENSORS.items():
        cfg = {
            **spec,
            "unique_id": f"{node}_{key}",
            "object_id": f"{node}_{key}",
            "state_topic": state_topic(grid, board),
            "value_template": "{{ value_json." + key + " }}",
            "device": device,
        }
        out.append((f"{PREFIX}/sensor/{node}/{key}/config", json.dumps(cfg, sort_keys=True).encode()))
    return out


def state(r: messages.Reading) -> bytes:
    """The JSON state of a board from its latest verified reading. Numbers are JSON numbers
    written exactly from the integer registers."""
    parts = [
        f'"energy_export": {_decimal(r.e_exp, 6)}',
        f'"energy_import": {_decimal(r.e_imp, 6)}',
        f'"power": {r.p}',
        f'"seq": {r.seq}',
        f'"ts": {r.ts}',
        f'"voltage": {_decimal(r.u, 3)}',
    ]
    return ("{" + ", ".join(parts) + "}").encode()


@dataclass
class HassPublisher:
    """Publishes discovery for every active board and its state whenever a newer reading is stored."""

    ledger: Ledger
    grid: str
    announced: set[str] = field(default_factory=set)
    sent: dict[str, int] = field(default_factory=dict)  # board -> last seq published

    async def step(self, conn: Connection) -> int:
        """Publish what is new; returns the number of state updates."""
        updates = 0
        latest = self.ledger.latest_readings()
        for b in self.ledger.boards("active"):
            if b.board_id not in self.announced:
                for topic, payload in discovery(self.grid, b.board_id, b.member_id, b.board_type):
                    await conn.publish(topic, payload, retain=True)
                self.announced.add(b.board_id)
            r = latest.get(b.board_id)
            if r is None or self.sent.get(b.board_id) == r.seq:
                continue
            await conn.publish(state_topic(self.grid, b.board_id), state(r), retain=True)
            self.sent[b.board_id] = r.seq
            updates += 1
        return updates

    async def run(
        self, broker: BrokerAddress, client_id: str, stop: asyncio.Event, every_s: float = 5.0
    ) -> None:
        while not stop.is_set():
            try:
                async with Connection(broker, client_id) as conn:
                    while not stop.is_set():
                        await self.step(conn)
                        try:
                            await asyncio.wait_for(stop.wait(), timeout=every_s)
                        except TimeoutError:
                            pass
            except MqttError as e:
                log.warning("home assistant publisher: %s; retrying in %.0f s", e, every_s)
                self.announced.clear()  # republish discovery after a reconnect
                try:
                    await asyncio.wait_for(stop.wait(), timeout=every_s)
                except TimeoutError:
                    pass
