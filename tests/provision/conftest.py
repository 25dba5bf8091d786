"""A site set up as an operator would (``peergrid broker init``) and a real Mosquitto running the
generated configuration: TLS listener for boards, loopback listener for the coordinator,
passwords and ACLs."""

from __future__ import annotations

import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from coordinator.cli import main
from coordinator.provision.brokerconf import Site
from coordinator.service.broker import free_port
from coordinator.service.mqtt import BrokerAddress
from tests.broker import launch, terminate

GRID = "g1"


@dataclass
class SecureBroker:
    site: Site
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def coordinator(self) -> BrokerAddress:
        s = self.site.settings
        return BrokerAddress("127.0.0.1", s.local_port, "coordinator", self.site.password("coordinator"))

    def board(self, board: str, password: str | None = None, ca: Path | None = None) -> BrokerAddress:
        """What a board uses: the TLS listener, checked against the site's CA."""
        ctx = ssl.create_default_context(cafile=str(ca or self.site.pki.ca_cert))
        pw = password if password is not None else self.site.password(board)
        return BrokerAddress("127.0.0.1", self.site.settings.port, board, pw, ctx)

    def reload(self) -> None:
        """What ``systemctl reload mosquitto`` does: re-read passwords and ACLs."""
        self.proc.send_signal(1)  # SIGHUP
        time.sleep(0.3)


def init_site(tmp: Path, boards: tuple[str, ...] = ()) -> Site:
    d = tmp / "broker"
    argv = ["broker", "init", "--dir", str(d), "--grid", GRID, "--host", "127.0.0.1", "--host", "localhost"]
    argv += ["--port", str(free_port()), "--local-port", str(free_port())]
    assert main(argv) == 0
    for b in boards:
        assert main(["broker", "add-board", "--dir", str(d), "--board", b]) == 0
    return Site(d)


def start(site: Site, workdir: Path) -> SecureBroker:
    log = workdir / "mosquitto.log"
    conf = workdir / "mosquitto-full.conf"
    conf.write_text(
        f"include_dir {workdir / 'conf.d'}\n"
        "persistence true\n"
        f"persistence_location {workdir}/\n"
        f"log_dest file {log}\n"
        "log_type all\n" + ("user root\n" if os.geteuid() == 0 else "")
    )
    (workdir / "conf.d").mkdir(exist_ok=True)
    (workdir / "conf.d" / "peergrid.conf").write_text((site.directory / "mosquitto.conf").read_text())
    proc = launch(conf, log, (site.settings.local_port, site.settings.port))
    return SecureBroker(site, proc, log)


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[SecureBroker]:
    b = start(init_site(tmp_path, ("m01", "m02")), tmp_path)
    try:
        yield b
    finally:
        terminate(b.proc)
