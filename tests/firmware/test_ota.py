"""Over-the-air updates on the real MicroPython unix port (firmware/ota.py, main.py's loader; the
partition: tests/otaboard.py): each refusal with its reason, a power cut mid-download resumed,
and end to end with Mosquitto and ``peergrid board update``: a bad signature refused, a good
update confirmed, new code that crashes at boot rolled back."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from pathlib import Path

from coordinator.cli import main as cli
from coordinator.provision import update
from coordinator.service.mqtt import Connection
from protocol import crypto, frame, messages, topics
from tests import otaboard
from tests.broker import Mosquitto
from tests.firmware.test_link import board_files, result
from tests.mpy import run_micropython

REL = crypto.SigningKey(bytes(range(7, 39)))  # the operator's release key
COORD = crypto.SigningKey(bytes(range(32)))  # the coordinator's order key (must not sign updates)
TYPE = "esp32-pzem004t"
START = 1_750_000_000


def settings_with_release_key(d: Path) -> None:
    s = json.loads((d / "settings.json").read_text())
    s["release_key"] = REL.public.hex()
    (d / "settings.json").write_text(json.dumps(s))


def manifest(img: bytes, version: str, *, key: crypto.SigningKey = REL, **kw: object) -> bytes:
    fields: dict[str, object] = dict(
        board="m01", version=version, board_type=TYPE, min_fw="", size=len(img), chunk=1024,
        digest=hashlib.sha256(img).digest(), downgrade=0, ts=START,
    )
    fields.update(kw)
    t = topics.board_topic("g1", "m01", "update")
    return frame.seal(messages.Update(**fields), t, key)


REFUSALS = r"""
import ota
from fakes.hardware import FileRom
up = ota.Updater("m01", "g1", "esp32-pzem004t", "0.2.0", bytes.fromhex(REL), FileRom("romfs.part"))
T = up.topic
def man(n):
    with open(n + ".bin", "rb") as f:
        return f.read()
def piece(n):  # chunk n of the published image (read from the file: it does not fit the heap)
    with open("img.bin", "rb") as f:
        f.seek(n * 1024)
        return f.read(1024)
out = {}
for n in ("badsig", "order_key", "type", "down", "min", "big", "same"):
    out[n] = up.offer(T, man(n))
out["down_allowed"] = up.offer(T, man("down_ok"))
up.drop("")
out["trunc_offer"] = up.offer(T, man("good"))
out["trunc"] = up.write(0, piece(0)[:100])
def fill(name):
    out[name + "_offer"] = up.offer(T, man(name))
    while True:
        nxt = up.next_chunk()
        if nxt is None:
            break
        n = nxt[0]
        w = up.write(n, piece(n))
        if w:
            return w
    buf = bytearray(1024)
    up.off = 0
    while True:
        why = up.check_step(buf)
        if why is not None:
            return why
out["corrupt"] = fill("corrupt")
out["short"] = fill("short")
out["refused"] = up.refused
out["slots"] = ota.read_slots()
print("RESULT", repr(out))
"""


def board_dir(d: Path) -> bytes:
    board_files(d, 1)
    settings_with_release_key(d)
    img = otaboard.image("0.2.0")
    otaboard.install(d, img)
    return img


def test_refusals_each_with_a_reason(tmp_path: Path) -> None:
    board_dir(tmp_path)
    new = otaboard.image("0.3.0")
    (tmp_path / "img.bin").write_bytes(new)
    bad = bytearray(new)
    bad[5000] ^= 1
    mans = {
        "badsig": manifest(new, "0.3.0", key=crypto.SigningKey(bytes(32))),
        "order_key": manifest(new, "0.3.0", key=COORD),
        "type": manifest(new, "0.3.0", board_type="esp32-atm90e32"),
        "down": manifest(new, "0.1.9"),
        "down_ok": manifest(new, "0.1.9", downgrade=1),
        "min": manifest(new, "0.3.0", min_fw="0.2.1"),
        "big": manifest(new, "0.3.0", size=otaboard.SLOT + 1),
        "same": manifest(new, "0.2.0"),
        "good": manifest(new, "0.3.0"),
        "corrupt": manifest(bytes(bad), "0.3.0"),  # the digest of other bytes than those published
        "short": manifest(new + b"\0" * 10, "0.3.0"),  # more bytes announced than published
    }
    for n, fr in mans.items():
        (tmp_path / f"{n}.bin").write_bytes(fr)
    out = run_micropython(REFUSALS.replace("REL", repr(REL.public.hex())), heap="128k", cwd=tmp_path).stdout
    got = eval(out.split("RESULT", 1)[1])  # noqa: S307  (a dict printed by the test's own script)
    assert "signature" in got["badsig"] and "signature" in got["order_key"], got
    assert got["type"] == "image for esp32-atm90e32, not esp32-pzem004t"
    assert got["down"] == "downgrade 0.2.0 to 0.1.9 refused"
    assert got["down_allowed"] == ""  # --allow-downgrade: accepted
    assert got["min"] == "needs 0.2.1 or later"
    assert got["big"].startswith("size 262145")
    assert got["same"] is None  # the running version: nothing to do, no report
    assert got["trunc_offer"] == "" and got["trunc"] == "image truncated: chunk 0 has 100 bytes, not 1024"
    assert got["corrupt_offer"] == "" and got["corrupt"] == "image corrupt: SHA-256 differs"
    # the last chunk falls short (its index follows the image's size, which grows with the code)
    assert got["short"].startswith(f"image truncated: chunk {len(new) // 1024} has {len(new) % 1024} bytes")
    assert got["refused"] == 10
    assert got["slots"] is None  # nothing switched: the old code runs on


POWER_CUT = r"""
import ota
from fakes.hardware import FileRom
up = ota.Updater("m01", "g1", "esp32-pzem004t", "0.2.0", bytes.fromhex(REL), FileRom("romfs.part"))
with open("good.bin", "rb") as f:
    fr = f.read()
def piece(n):  # chunk n of the published image (read from the file: it does not fit the heap)
    with open("img.bin", "rb") as f:
        f.seek(n * 1024)
        return f.read(1024)
print("OFFER", repr(up.offer(up.topic, fr)), up.pos)
n0 = up.next_chunk()[0]
written = 0
while written < LIMIT:
    nxt = up.next_chunk()
    if nxt is None:
        break
    n = nxt[0]
    up.write(n, piece(n))
    written += 1
if up.next_chunk() is None:
    buf = bytearray(1024)
    up.off = 0
    why = None
    while why is None:
        why = up.check_step(buf)
    print("CHECK", repr(why))
    up.switch()
print("RESULT", n0, written, ota.read_slots())
"""


def test_power_cut_mid_download_resumes_and_keeps_the_old_code(tmp_path: Path) -> None:
    board_dir(tmp_path)
    new = otaboard.image("0.3.0")
    (tmp_path / "img.bin").write_bytes(new)
    (tmp_path / "good.bin").write_bytes(manifest(new, "0.3.0"))
    code = POWER_CUT.replace("REL", repr(REL.public.hex()))
    # 22 chunks written, then the power goes (the process ends mid-download)
    first = run_micropython(code.replace("LIMIT", "22"), heap="128k", cwd=tmp_path).stdout
    assert result(first) == ["0", "22", "None"], first  # the old code still runs
    second = run_micropython(code.replace("LIMIT", "10000"), heap="128k", cwd=tmp_path).stdout
    # resumed at the block being written (22 KiB: the block from 20 KiB, chunk 20), not from 0
    assert "OFFER '' 20480" in second and "CHECK ''" in second, second
    n0, written = result(second)[:2]
    assert (n0, int(written)) == ("20", len(otaboard.image("0.3.0")) // 1024 + 1 - 20)
    slots = json.loads((tmp_path / "ota.json").read_text())
    assert (slots["run"], slots["good"], slots["tries"], slots["fw"]) == (1, 0, 0, "0.3.0")
    part = (tmp_path / "romfs.part").read_bytes()
    assert part[otaboard.SLOT : otaboard.SLOT + len(new)] == new


# -- end to end -------------------------------------------------------------------------------


def collect(broker: Mosquitto, frames: list[tuple[str, bytes]], ready: threading.Event,
            stop: threading.Event) -> None:
    async def run() -> None:
        async with Connection(broker.address, "test-follow") as conn:
            for leaf in ("fwstate", "status", "enrol"):
                await conn.subscribe(topics.board_filter("g1", leaf))
            ready.set()
            async for m in conn.messages():
                frames.append((m.topic, m.payload))
                if stop.is_set():
                    return

    try:
        asyncio.run(asyncio.wait_for(run(), timeout=300))
    except Exception:  # noqa: BLE001  (the broker goes away at the end of the test)
        pass


State = tuple[str, int, str, str]


def states(frames: list[tuple[str, bytes]], key: bytes) -> list[State]:
    ver = crypto.Verifier(key)
    out = []
    for t, p in list(frames):
        if t.endswith("/fwstate"):
            st = frame.open_frame(t, p, lambda m: ver)
            assert isinstance(st, messages.UpdateState)
            out.append((st.version, st.state, st.reason, st.fw))
    return out


def publish(tmp: Path, broker: Mosquitto, img: bytes, version: str, key: Path) -> None:
    (tmp / f"{version}.img").write_bytes(img)
    rc = cli([
        "board", "update", "--grid", "g1", "--broker", f"127.0.0.1:{broker.port}", "--release-key", str(key),
        "--image", str(tmp / f"{version}.img"), "--version", version, "--type", TYPE, "--board", "m01",
    ])
    assert rc == 0


def wait_for(frames: list[tuple[str, bytes]], key: bytes, want: tuple[str, int]) -> list[State]:
    for _ in range(100):
        got = states(frames, key)
        if any(s[:2] == want for s in got):
            return got
        time.sleep(0.1)
    return states(frames, key)


def test_update_end_to_end(tmp_path: Path, mosquitto: Mosquitto) -> None:
    d = tmp_path / "board"
    d.mkdir()
    board_files(d, mosquitto.port)
    settings_with_release_key(d)
    otaboard.install(d, otaboard.image("0.2.0"))
    rel = tmp_path / "release.key"
    rel.write_text(bytes(range(7, 39)).hex())
    wrong = tmp_path / "wrong.key"
    wrong.write_text(bytes(32).hex())
    frames: list[tuple[str, bytes]] = []
    ready, stop = threading.Event(), threading.Event()
    th = threading.Thread(target=collect, args=(mosquitto, frames, ready, stop), daemon=True)
    th.start()
    assert ready.wait(10)

    def boot(start: int, seconds: int) -> list[str]:
        p = otaboard.boot(d, start, start + seconds)
        assert "BOOTED" in p.stdout, p.stdout + p.stderr
        return [p.stdout, *p.stdout.split("BOOTED")[1].split()]

    # 1. signed with another key than the release key: refused, the old code runs on
    publish(tmp_path, mosquitto, otaboard.image("0.3.0"), "0.3.0", wrong)
    first = boot(START, 120)
    key = bytes.fromhex(first[0].split("new board key ")[1].split()[0])
    got = wait_for(frames, key, ("0.3.0", messages.U_REFUSED))
    assert ("0.3.0", messages.U_REFUSED, "signature does not verify", "0.2.0") in got or any(
        s[1] == messages.U_REFUSED and "signature" in s[2] for s in got
    ), got

    # 2. the good update: downloaded, checked, switched; the board restarts into it (trial), which
    # confirms itself once a reading was acknowledged
    publish(tmp_path, mosquitto, otaboard.image("0.3.0"), "0.3.0", rel)
    second = boot(START + 200, 3600)
    assert second[1] == "True", second[0]  # stopped to restart into the new code
    third = boot(START + 400, 120)
    assert third[1] == "False" and int(third[2]) > 0, third[0]
    got = wait_for(frames, key, ("0.3.0", messages.U_CONFIRMED))
    assert [s[1] for s in got if s[0] == "0.3.0"][-3:] == [
        messages.U_DOWNLOADING, messages.U_PENDING, messages.U_CONFIRMED,
    ], got
    assert got[-1][3] == "0.3.0"
    slots = json.loads((d / "ota.json").read_text())
    assert (slots["run"], slots["good"], slots["fw"]) == (1, 1, "0.3.0")

    # 3. new code that crashes at boot: the next boot rolls back to 0.3.0, which reports it and
    # refuses the same image again
    publish(tmp_path, mosquitto, otaboard.image("0.4.0", crash=True), "0.4.0", rel)
    fourth = boot(START + 600, 3600)
    assert fourth[1] == "True", fourth[0]
    fifth = boot(START + 800, 120)
    assert fifth[1] == "None" and "broken build" in fifth[0], fifth[0]
    sixth = boot(START + 1000, 1500)  # after a failed boot: 20 s (1200 board s) of back-off first
    assert "rolled back to slot 1" in sixth[0] and sixth[1] == "False", sixth[0]
    got = wait_for(frames, key, ("0.4.0", messages.U_ROLLED_BACK))
    assert ("0.4.0", messages.U_ROLLED_BACK, "0.4.0 never confirmed", "0.3.0") in got, (got, sixth[0])
    got = wait_for(frames, key, ("0.4.0", messages.U_REFUSED))
    assert ("0.4.0", messages.U_REFUSED, "0.4.0 was rolled back before", "0.3.0") in got, got
    stop.set()
    slots = json.loads((d / "ota.json").read_text())
    assert (slots["run"], slots["good"], slots["fw"]) == (1, 1, "0.3.0")
    # the status of the rolled-back board: running 0.3.0, nothing pending
    ver = crypto.Verifier(key)
    sts = [frame.open_frame(t, p, lambda m: ver) for t, p in frames if t.endswith("/status")]
    last = [s for s in sts if isinstance(s, messages.Status) and s.state == messages.S_ONLINE][-1]
    assert (last.fw, last.pending) == ("0.3.0", None)
    assert update.STATES[messages.U_ROLLED_BACK] == "rolled back"
