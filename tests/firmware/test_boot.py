"""Boot safety on the real MicroPython unix port: the watchdog armed before the network, the
back-off after failed boots, safe mode after five, and what the status reports."""

from __future__ import annotations

import json
from pathlib import Path

from protocol import crypto, frame, messages, topics
from tests.firmware.test_link import BROKER, board_files, free_port, result
from tests.mpy import FIRMWARE_HEAP_NOW, run_micropython

BOOTS = r"""
from boots import Boots
out = []
for _ in range(7):  # boots that crash (or hang until the watchdog) before they are healthy
    b = Boots()
    out.append((b.failed, b.backoff_s(), b.safe))
b.healthy()  # in safe mode: stays (until new firmware removes the record)
out.append(Boots().safe)
import os
for f in os.listdir():
    if f.startswith("boots"):
        os.remove(f)
b = Boots(); b = Boots()  # one failed boot, then a healthy one
b.healthy()
out.append(Boots().failed)
print("RESULT", out)
"""


def test_failed_boots_back_off_and_end_in_safe_mode(tmp_path: Path) -> None:
    # before: a fault at boot reset the board every 10 s for ever, no back-off, no safe mode
    out = run_micropython(BOOTS, heap="64k", cwd=tmp_path).stdout
    assert out.split("RESULT")[1].strip() == (
        "[(0, 10, False), (1, 20, False), (2, 40, False), (3, 80, False), (4, 160, False), "
        "(5, 320, True), (6, 600, True), True, 0]"
    ), out


WATCHDOG_FIRST = r"""
import sys
order = []
class WLAN:
    def __init__(self, i):
        pass
    def active(self, on):
        order.append("wifi")
    def isconnected(self):
        return True
    def ifconfig(self):
        return ("10.0.0.2",)
class Network:
    STA_IF = 0
    WLAN = WLAN
sys.modules["network"] = Network()
import main
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
class Hw(FakeHardware):
    def wdt(self):
        order.append("watchdog")
        return self.dog
import provision
cfg = provision.load()[0]
b = main.run(Hw(cfg, lambda now: 500), SimClock(1750000000, 50), 1750000003)
print("RESULT", order[:2], b.rejoins)
"""


def test_watchdog_is_armed_before_the_network(tmp_path: Path) -> None:
    # before: the Wi-Fi join (30 s) and NTP ran before the watchdog existed: a hang there never reset
    board_files(tmp_path, 1)
    s = json.loads((tmp_path / "settings.json").read_text())
    (tmp_path / "settings.json").write_text(json.dumps({**s, "wifi": {"ssid": "home"}}))
    out = run_micropython(WATCHDOG_FIRST, heap=FIRMWARE_HEAP_NOW, cwd=tmp_path).stdout
    assert result(out)[:2] == ["['watchdog',", "'wifi']"], out


SAFE = (
    BROKER
    + r"""
import app
from boots import Boots
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
statuses = []
def on_publish(w, kind, topic):
    return True
for _ in range(5):
    Boots()
boots = Boots()  # the sixth boot after five failed ones
hw = FakeHardware(cfg, lambda now: 3600)
hw.cause = 3  # the last reset was the watchdog's
b = app.Board(cfg, settings, hw, SimClock(1750000000, 20), boots)
real = b.client.publish
async def publish(topic, msg, retain=False, qos=1, timeout_ms=10000):
    if topic.endswith("/status"):
        statuses.append(bytes(msg))
    await real(topic, msg, retain, qos, timeout_ms)
b.client.publish = publish

async def main():
    srv = await asyncio.start_server(serve, "127.0.0.1", PORT)
    await b.run(until=1750000000 + 40)
    srv.close()
    with open("status.bin", "wb") as f:
        f.write(statuses[0])
    print("RESULT", b.safe, b.regs.seq, b.regs.e_imp > 0, B["topics"].count("peergrid/g1/b/m01/reading"),
          B["topics"].count("peergrid/g1/b/m01/status"), hw.pins[0].v)

asyncio.run(main())
"""
)


def test_safe_mode_meters_and_reports_but_sends_no_readings(tmp_path: Path) -> None:
    port = free_port()
    board_files(tmp_path, port)
    out = run_micropython(SAFE.replace("PORT", str(port)), heap=FIRMWARE_HEAP_NOW, cwd=tmp_path).stdout
    safe, seq, metered, readings, statuses, relay = result(out)
    assert (safe, seq, metered, readings, relay) == ("True", "0", "True", "0", "0"), out
    assert int(statuses) >= 1
    key = out.split("new board key ")[1].split()[0]
    t = topics.board_topic("g1", "m01", "status")
    st = frame.open_frame(
        t, (tmp_path / "status.bin").read_bytes(), lambda m: crypto.Verifier(bytes.fromhex(key))
    )
    assert isinstance(st, messages.Status)
    assert (st.state, st.reset, st.fw, st.boots, st.pending) == (messages.S_SAFE_MODE, 3, "0.2.0", 5, None)
    # the largest block is found after heap_free is read, and finding it may collect garbage
    # first: it is bounded by the heap, not by the free figure read a moment before
    heap = int(FIRMWARE_HEAP_NOW.rstrip("k")) * 1024
    assert 0 < st.block <= heap and 0 < st.heap_free < heap, (st.block, st.heap_free)
