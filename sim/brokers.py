"""The MQTT broker a run talks to, and how a run restarts it (a fault it may inject).

- ``Embedded``: the in-process broker (amqtt, coordinator/broker.py), stopped and started again on
  the same port; it keeps no sessions across a restart (what was in flight is resent by the
  at-least-once ends: boards' spools and the coordinator's unacknowledged messages).
- ``External``: a broker someone else runs (``--broker HOST:PORT``); a run cannot restart it.
- ``Mosquitto``: a Mosquitto this process starts (persistence on), restartable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Protocol

from coordinator.broker import EmbeddedBroker, free_port
from coordinator.mqtt import BrokerAddress
from sim.errors import SimError


class Broker(Protocol):
    address: BrokerAddress

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def restart(self, down_s: float) -> None: ...


class Embedded:
    def __init__(self) -> None:
        self._b = EmbeddedBroker()
        self.address = self._b.address

    async def start(self) -> None:
        self._b = EmbeddedBroker(self.address.host, self.address.port)
        await self._b.__aenter__()
        # amqtt warns about every acknowledgement it did not expect (it mistracks QoS 1 ids under
        # many publishes in flight); the run's own accounting is what tells whether anything was lost
        logging.getLogger("amqtt").setLevel(logging.ERROR)

    async def stop(self) -> None:
        await self._b.__aexit__(None, None, None)

    async def restart(self, down_s: float) -> None:
        await self.stop()
        await asyncio.sleep(down_s)
        await self.start()


class External:
    def __init__(self, address: BrokerAddress) -> None:
        self.address = address

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def restart(self, down_s: float) -> None:
        raise SimError("a broker given with --broker is not ours to restart; drop broker_restart faults")


def mosquitto_exe() -> str:
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if cand and Path(cand).exists():
            return cand
    raise SimError("mosquitto is not installed (apt-get install mosquitto)")


class Mosquitto:
    """A Mosquitto on a free loopback port with persistence in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.address = BrokerAddress("127.0.0.1", free_port())
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.address.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nlog_dest file {workdir}/mosquitto.log\n"
            "max_queued_messages 1000000\nmax_inflight_messages 0\n"
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen([mosquitto_exe(), "-c", str(self.conf)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SimError(
                    f"mosquitto exited with {self.proc.returncode}; see {self.workdir}/mosquitto.log"
                )
            try:
                with socket.create_connection((self.address.host, self.address.port), timeout=0.2):
                    return
            except OSError:
                await asyncio.sleep(0.05)
        raise SimError("mosquitto did not listen within 10 s")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            await asyncio.to_thread(self.proc.wait, 10)
        self.proc = None

    async def restart(self, down_s: float) -> None:
        await self.stop()
        await asyncio.sleep(down_s)
        await self.start()
