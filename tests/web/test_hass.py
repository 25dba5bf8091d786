"""Home Assistant MQTT discovery through a real Mosquitto: what a member's Home Assistant sees."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from coordinator.hass import HassPublisher
from coordinator.ledger import Ledger
from coordinator.service.mqtt import Connection
from tests.audit.community import GRID, build
from tests.broker import Mosquitto
from tests.coordinator.readings import store


async def _collect(addr: object, want: int, timeout: float = 10) -> dict[str, bytes]:
    got: dict[str, bytes] = {}
    async with Connection(addr, "home-assistant") as ha:  # type: ignore[arg-type]
        await ha.subscribe("homeassistant/#")
        await ha.subscribe(f"peergrid/{GRID}/hass/#")

        async def read() -> None:
            async for m in ha.messages():
                got[m.topic] = m.payload
                if len(got) >= want:
                    return

        await asyncio.wait_for(read(), timeout)
    return got


def test_discovery_and_states_from_verified_readings(tmp_path: Path, mosquitto: Mosquitto) -> None:
    c = build(tmp_path, hours=1)

    async def main() -> None:
        with Ledger.open(c.ledger) as led:
            pub = HassPublisher(led, GRID)
            async with Connection(mosquitto.address, "peergrid-hass") as conn:
                assert await pub.step(conn) == 4
                assert await pub.step(conn) == 0  # nothing new: nothing sent
            # a Home Assistant that connects later gets the retained configs and states
            got = await _collect(mosquitto.address, 4 * 4 + 4)
            cfg = json.loads(got["homeassistant/sensor/peergrid_g1_b-alice/energy_export/config"])
            assert cfg["device_class"] == "energy" and cfg["state_class"] == "total_increasing"
            assert cfg["unit_of_measurement"] == "kWh"
            assert cfg["state_topic"] == "peergrid/g1/hass/b-alice"
            assert cfg["value_template"] == "{{ value_json.energy_export }}"
            assert cfg["unique_id"] == "peergrid_g1_b-alice_energy_export"
            assert (
                cfg["device"]["identifiers"] == ["peergrid_g1_b-alice"] and "alice" in cfg["device"]["name"]
            )
            imp = json.loads(got["homeassistant/sensor/peergrid_g1_b-carol/energy_import/config"])
            assert imp["device_class"] == "energy" and imp["state_class"] == "total_increasing"
            pw = json.loads(got["homeassistant/sensor/peergrid_g1_b-carol/power/config"])
            assert pw["device_class"] == "power" and pw["state_class"] == "measurement"
            assert pw["unit_of_measurement"] == "W"
            r = led.latest_reading("b-carol")
            assert r is not None
            st = json.loads(got["peergrid/g1/hass/b-carol"])
            assert st["seq"] == r.seq and st["power"] == r.p > 0
            assert round(st["energy_import"] * 1_000_000) == r.e_imp > 0
            assert round(st["voltage"] * 1000) == r.u
            # a new verified reading updates the state
            store(led, c.boards.values(), [c.end + 60])
            async with Connection(mosquitto.address, "peergrid-hass") as conn:
                assert await pub.step(conn) == 4
            got = await _collect(mosquitto.address, 4 * 4 + 4)
            st2 = json.loads(got["peergrid/g1/hass/b-carol"])
            assert st2["seq"] == r.seq + 1 and st2["energy_import"] > st["energy_import"]

    asyncio.run(main())
