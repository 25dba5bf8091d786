"""A real Mosquitto started by the tests, on a free loopback port, restartable mid-test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from coordinator.broker import free_port
from coordinator.mqtt import BrokerAddress


def mosquitto_exe() -> str:
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if cand and Path(cand).exists():
            return cand
    raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")


class Mosquitto:
    def __init__(self, workdir: Path, extra_conf: str = "") -> None:
        self.workdir = workdir
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            f"log_dest file {self.log}\n"
            "max_queued_messages 100000\n" + ("user root\n" if os.geteuid() == 0 else "") + extra_conf
            # as root, mosquitto would drop to user "mosquitto", which cannot write the test's
            # directory: persistence and the log would silently fail
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> BrokerAddress:
        return BrokerAddress("127.0.0.1", self.port)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [mosquitto_exe(), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(
                    f"mosquitto exited: {err} {self.log.read_text() if self.log.exists() else ''}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()
