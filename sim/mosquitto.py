"""A Mosquitto broker run as a child process on loopback: the simulator's and the demo's
``--mosquitto`` broker (``sim.brokers.Mosquitto``) and the tests' and benchmarks' broker
(``tests.broker``). Blocking calls; ``sim.brokers`` runs them in a thread."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from coordinator.service.broker import free_port
from coordinator.service.mqtt import BrokerAddress
from sim.errors import SimError

START_S = 10.0  # longest wait for the broker to listen
STOP_S = 10.0  # longest wait for it to exit after SIGTERM, then SIGKILL


def mosquitto_exe() -> str:
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if cand and Path(cand).exists():
            return cand
    raise SimError("mosquitto is not installed (apt-get install mosquitto)")


def launch(conf: Path, log: Path, ports: Iterable[int]) -> subprocess.Popen[bytes]:
    """Start ``mosquitto -c conf``; return once each of ``ports`` accepts connections on loopback.
    SimError (with its stderr and ``log``) if it exits first or does not listen within START_S."""
    proc = subprocess.Popen(
        [mosquitto_exe(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + START_S
    for port in ports:
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                logged = log.read_text() if log.exists() else ""
                raise SimError(f"mosquitto exited with {proc.returncode}: {err} {logged}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    terminate(proc)
                    raise SimError(f"mosquitto did not listen within {START_S:g} s") from None
                time.sleep(0.05)
    return proc


def terminate(proc: subprocess.Popen[bytes]) -> None:
    """Stop the broker: SIGTERM, then SIGKILL if it has not exited within STOP_S."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Mosquitto:
    """A Mosquitto on a free loopback port, anonymous, with persistence (its queues survive a
    restart) and its log in ``workdir``; ``extra_conf`` lines are appended to its configuration."""

    def __init__(self, workdir: Path, extra_conf: str = "", max_queued_messages: int = 100_000) -> None:
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
            f"max_queued_messages {max_queued_messages}\n"
            # as root, mosquitto would drop to user "mosquitto", which cannot write the working
            # directory: persistence and the log would silently fail
            + ("user root\n" if os.geteuid() == 0 else "")
            + extra_conf
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> BrokerAddress:
        return BrokerAddress("127.0.0.1", self.port)

    def start(self) -> None:
        self.proc = launch(self.conf, self.log, (self.port,))

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()
