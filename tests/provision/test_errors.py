"""Each way a board on the bench can fail gets its own clear error, through the real esptool and
mpremote against stand-in boards (tests/provision/standin.py): no port, a busy port, not an
ESP32, no MicroPython (installed from an image), MicroPython too old, no ROMFS partition, a file
garbled on its way into flash, a bundle changed after its build, a cable pulled mid-copy, a key
that cannot be read back, and a board never heard from. Port detection and the plug-in order
are checked against pyserial's own port records."""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from serial.tools.list_ports_common import ListPortInfo

from coordinator.cli import main
from coordinator.provision import bundle, chip, pipeline, ports
from coordinator.provision.errors import BoardError
from tests.provision.standin import ESP8266_MAGIC, Personality, StandIn

HERE = Path(__file__).resolve().parent
BANNER = b"MicroPython v1.25.0 on 2025-04-15; Generic ESP32 module with ESP32\0"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("bundles")
    out = {}
    for name, romfs in (("romfs", True), ("files", False)):
        inp = bundle.Inputs(
            board_id="m01",
            board_file=HERE / "board.toml",
            grid="g1",
            coordinator_key=bytes(32),
            broker=bundle.Broker("127.0.0.1", 1, "m01", "pw"),
            arch="x64",
            romfs=romfs,
        )
        bundle.build(inp, tmp / name)
        out[name] = tmp / name
    return out


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[list[StandIn]]:
    made: list[StandIn] = []
    yield made
    for s in made:
        s.close()


def standin(bench: list[StandIn], tmp: Path, **kw: object) -> StandIn:
    s = StandIn(tmp / f"board{len(bench)}", Personality(**kw))  # type: ignore[arg-type]
    bench.append(s)
    return s


def run(b: Path, s: StandIn, **opts: object) -> pipeline.Outcome:
    return pipeline.provision(b, s.port, enrolment=None, opts=pipeline.Options(**opts), say=lambda m: None)  # type: ignore[arg-type]


def kind(excinfo: pytest.ExceptionInfo[BoardError]) -> str:
    return excinfo.value.kind


def test_blank_board_gets_micropython_from_the_image_and_then_the_bundle(
    tmp_path: Path, bundles: dict[str, Path], bench: list[StandIn]
) -> None:
    s = standin(bench, tmp_path, version=None)
    with pytest.raises(BoardError, match="no MicroPython on the board") as e:
        run(bundles["romfs"], s)
    assert kind(e) == "no_micropython"
    image = tmp_path / "ESP32_GENERIC-v1.25.0.bin"
    image.write_bytes(b"\xe9" + bytes(4095) + BANNER + bytes(2000))
    o = run(bundles["romfs"], s, image=image)
    assert o.micropython == "1.25.0" and o.created and o.files == 6 and o.secrets == "nvs"
    # esptool wrote the image at the ESP32's offset and verified it (MD5 through the stub)
    assert bytes(s.flash[0x1000 : 0x1000 + len(image.read_bytes())]) == image.read_bytes()
    assert o.chip.startswith("ESP32-D0WD")


def test_chip_and_version_checks(tmp_path: Path, bundles: dict[str, Path], bench: list[StandIn]) -> None:
    s = standin(bench, tmp_path, magic=ESP8266_MAGIC)
    with pytest.raises(BoardError, match="is ESP8266, not an ESP32") as e:
        run(bundles["romfs"], s)
    assert kind(e) == "not_esp32"
    old = standin(bench, tmp_path, version=(1, 24, 1))
    with pytest.raises(BoardError, match=r"MicroPython 1\.24\.1 on the board is too old") as e:
        run(bundles["romfs"], old)
    assert kind(e) == "micropython_too_old"
    image = tmp_path / "old.bin"
    image.write_bytes(b"\xe9" + BANNER.replace(b"1.25.0", b"1.23.0"))
    with pytest.raises(BoardError, match=r"holds MicroPython 1\.23\.0") as e:
        run(bundles["romfs"], old, image=image)
    assert kind(e) == "micropython_too_old"
    assert chip.image_version(tmp_path / "old.bin") == (1, 23, 0)
    norom = standin(bench, tmp_path, romfs=0)
    with pytest.raises(BoardError, match="no ROMFS partition") as e:
        run(bundles["romfs"], norom)
    assert kind(e) == "no_romfs"
    # a bundle without a ROMFS image needs no partition
    assert run(bundles["files"], norom).files > 40


def test_manifest_mismatches_and_a_pulled_cable(
    tmp_path: Path, bundles: dict[str, Path], bench: list[StandIn]
) -> None:
    bad = standin(bench, tmp_path, garble="settings.json")
    with pytest.raises(BoardError, match=r"1 of 6 files on the board differ.*settings\.json \(sha256") as e:
        run(bundles["romfs"], bad)
    assert kind(e) == "manifest_mismatch"
    assert not (bad.fs / "key.bin").exists()  # stopped before the first boot
    # a bundle changed after its build is refused before anything is copied
    tampered = tmp_path / "tampered"
    bundle.build(
        bundle.Inputs(
            "m01", HERE / "board.toml", "g1", bytes(32), bundle.Broker("h"), arch="x64", romfs=True
        ),
        tampered,
    )
    (tampered / "board.json").write_text((tampered / "board.json").read_text().replace("2", "3"))
    fresh = standin(bench, tmp_path)
    with pytest.raises(BoardError, match=r"board\.json differ from its MANIFEST\.json") as e:
        run(tampered, fresh)
    assert kind(e) == "manifest_mismatch" and fresh.execs == []
    pulled = standin(bench, tmp_path, unplug_after_writes=2)
    with pytest.raises(BoardError, match="copy did not finish") as e:
        run(bundles["files"], pulled)
    assert kind(e) == "copy_failed" and pulled.unplugged


def test_key_read_back_and_never_heard_from(
    tmp_path: Path, bundles: dict[str, Path], bench: list[StandIn]
) -> None:
    s = standin(bench, tmp_path)
    (s.fs / "key.bin").write_bytes(b"short")  # a damaged key file: the board refuses to replace it
    with pytest.raises(
        BoardError, match="key read-back failed: the first boot failed .*KeyFileError: key.bin holds 5 bytes"
    ) as e:
        run(bundles["romfs"], s)
    assert kind(e) == "key_readback"
    site = tmp_path / "site.toml"
    site.write_text('[coordinator]\ngrid = "g1"\nledger = "l.db"\n')
    assert main(["members", "add", "--config", str(site), "--id", "alice", "--name", "Alice"]) == 0
    quiet = standin(bench, tmp_path)  # its broker (port 1) is not there: nothing reaches the coordinator
    with pytest.raises(BoardError, match="board m01 never heard from: no signed reading") as e:
        pipeline.provision(
            bundles["romfs"],
            quiet.port,
            enrolment=pipeline.Enrolment(str(tmp_path / "l.db"), "alice"),
            opts=pipeline.Options(wait_s=2, poll_s=0.2),
            say=lambda m: None,
        )
    assert kind(e) == "never_heard_from"
    assert b"peergrid-virtual: board running m01" in quiet.log  # it was reset and runs its firmware


def test_ports_missing_busy_found_and_plugged_in_one_after_another(
    tmp_path: Path, bench: list[StandIn]
) -> None:
    with pytest.raises(BoardError, match="no serial port /nonexistent/ttyUSB9") as e:
        ports.check("/nonexistent/ttyUSB9")
    assert kind(e) == "no_port"
    s = standin(bench, tmp_path)
    assert ports.check(s.port) is False  # a pty has no modem lines: esptool runs with no-reset
    fd = os.open(s.port, os.O_RDWR | os.O_NOCTTY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what mpremote, esptool and pyserial's exclusive mode hold
        with pytest.raises(BoardError, match="is busy") as e:
            ports.check(s.port)
        assert kind(e) == "port_busy"
    finally:
        os.close(fd)

    def info(dev: str, vid: int | None, pid: int | None, serial: str | None = None) -> ListPortInfo:
        i = ListPortInfo(dev, skip_link_detection=True)
        i.vid, i.pid, i.serial_number = vid, pid, serial
        return i

    plugged: list[ListPortInfo] = [info("/dev/ttyS0", None, None), info("/dev/ttyACM0", 0x2341, 0x0043)]
    with pytest.raises(BoardError, match="no ESP32 board found on USB") as e:
        ports.find(lambda: plugged)
    plugged += [info("/dev/ttyUSB0", 0x10C4, 0xEA60, "a"), info("/dev/ttyACM1", 0x303A, 0x1001)]
    with pytest.raises(BoardError, match="2 boards plugged in"):
        ports.find(lambda: plugged)
    assert [p.bridge for p in ports.candidates(lambda: plugged)] == ["ESP32-S2/S3 native USB", "CP210x"]
    # one after another: a board left plugged in is not handed out twice; a new one is
    w = ports.Watcher(lister=lambda: plugged, poll_s=0.01)
    first = w.next_port(1)
    second = w.next_port(1)
    assert {first.device, second.device} == {"/dev/ttyUSB0", "/dev/ttyACM1"}
    with pytest.raises(BoardError, match="no new ESP32 board was plugged in"):
        w.next_port(0.05)
    plugged[:] = [p for p in plugged if p.device != "/dev/ttyUSB0"]  # unplugged ...
    assert [p.device for p in ports.candidates(lambda: plugged)] == ["/dev/ttyACM1"]
    with pytest.raises(BoardError):
        w.next_port(0.05)
    plugged.append(info("/dev/ttyUSB0", 0x1A86, 0x7523, None))  # ... and the next board on the same name
    assert w.next_port(1).bridge == "CH340"
    assert json.loads(json.dumps(ports.BRIDGES.__len__())) == 5
