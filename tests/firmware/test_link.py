"""The board's MQTT link on the real MicroPython unix port, against a small broker that runs in the
same interpreter (tests/firmware: BROKER below) so that each test controls exactly what the
broker does: a PUBLISH larger than the client's buffer, a broker that drops every session right
after it is set up, keepalive without traffic. Plus the two tasks that must never die silently.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from protocol import crypto
from tests.mpy import FIRMWARE_HEAP_NOW, run_micropython

COORD = crypto.SigningKey(bytes(range(32)))

# A minimal MQTT 3.1.1 broker for one client at a time: CONNACK, SUBACK, PUBACK for QoS 1,
# PINGRESP; counts what it saw in B. ``on_connect``/``on_publish`` hooks let a test misbehave.
BROKER = r"""
import asyncio, struct

B = {"conns": 0, "pings": 0, "pubacks": [], "topics": [], "closed": 0}
GRANT = b"\x01"  # the SUBACK return code: QoS 1 granted (0x80: refused)

def frame(kind, body):
    n = len(body)
    out = bytearray((kind,))
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            break
    return bytes(out) + body

def on_connect(w):
    pass

def on_publish(w, kind, topic):
    return True  # False: close the connection

async def serve(r, w):
    B["conns"] += 1
    try:
        while True:
            h = (await r.readexactly(1))[0]
            n = 0
            sh = 0
            while True:
                b = (await r.readexactly(1))[0]
                n |= (b & 0x7F) << sh
                sh += 7
                if not b & 0x80:
                    break
            body = await r.readexactly(n) if n else b""
            t = h & 0xF0
            if t == 0x10:
                w.write(b"\x20\x02\x00\x00")
                await w.drain()
                on_connect(w)
            elif t == 0x80:
                w.write(frame(0x90, body[:2] + GRANT))
            elif t == 0x30:
                tl = struct.unpack_from("!H", body)[0]
                topic = bytes(body[2:2 + tl]).decode()
                B["topics"].append(topic)
                if (h >> 1) & 3:
                    w.write(frame(0x40, body[2 + tl:4 + tl]))
                await w.drain()
                if not on_publish(w, h, topic):
                    break
            elif t == 0x40:
                B["pubacks"].append(struct.unpack("!H", body)[0])
            elif t == 0xC0:
                B["pings"] += 1
                w.write(b"\xd0\x00")
            elif t == 0xE0:
                break
            await w.drain()
    except Exception:
        pass
    B["closed"] += 1
    await w.wait_closed()  # MicroPython: Stream.close() alone leaves the socket open
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def board_files(d: Path, port: int, keepalive: int = 60, **timing: int) -> None:
    board = {
        "type": "esp32-pzem004t",
        "frontend": {"chip": "pzem004t", "uart": 2, "tx": 17, "rx": 16, "addr": 1},
        "relays": [{"pin": 25}],
        "reading_s": 10,
        "interval_s": 900,
        "status_s": 300,
        **timing,
    }
    (d / "board.json").write_text(json.dumps(board))
    settings = {
        "board": "m01",
        "grid": "g1",
        "coordinator_key": COORD.public.hex(),
        "broker": {"host": "127.0.0.1", "port": port, "keepalive": keepalive},
    }
    (d / "settings.json").write_text(json.dumps(settings))


def result(stdout: str) -> list[str]:
    assert "RESULT" in stdout, stdout
    return stdout.split("RESULT")[1].split()


OVERSIZE = (
    BROKER
    + r"""
from mqtt import MQTTClient, MqttError

got = []
async def push_orders(w):
    t = b"peergrid/g1/b/m01/order"
    big = struct.pack("!H", len(t)) + t + struct.pack("!H", 7) + bytes(3000)
    w.write(frame(0x32, big))  # QoS 1, 3000 bytes of payload: larger than the client's buffer
    small = struct.pack("!H", len(t)) + t + struct.pack("!H", 8) + b"order"
    w.write(frame(0x32, small))
    await w.drain()

def on_connect(w):
    asyncio.create_task(push_orders(w))

async def main():
    srv = await asyncio.start_server(serve, "127.0.0.1", PORT)
    c = MQTTClient("m01", "127.0.0.1", PORT)
    c.set_callback(lambda topic, payload: got.append((topic, len(payload))))
    await c.connect()
    reader = asyncio.create_task(c.run())
    for _ in range(50):
        await asyncio.sleep(0.02)
        if len(B["pubacks"]) == 2 or reader.done():
            break
    err = "none"
    if reader.done():
        try:
            await reader
        except MqttError as e:
            err = "MqttError"
    print("RESULT", c.connected, err, B["pubacks"], got)
    reader.cancel()
    c.close()
    srv.close()

asyncio.run(main())
"""
)


def test_oversized_publish_is_acknowledged_and_skipped_not_a_poison_message(tmp_path: Path) -> None:
    # before: the client raised "packet of 3006 bytes exceeds 2048" and dropped the connection
    # without a PUBACK; in the board's persistent session the broker redelivered the same message
    # on every reconnect, so one oversized PUBLISH on the order topic (or a retained one) cut the
    # board off the broker for good
    port = free_port()
    out = run_micropython(OVERSIZE.replace("PORT", str(port)), heap="128k", cwd=tmp_path).stdout
    connected, err, rest = out.split("RESULT")[1].split(None, 2)
    assert (connected, err) == ("True", "none"), out
    pubacks, got = rest.split("] ", 1)
    assert pubacks == "[7, 8", out
    # the app sees both; the cut-off one is refused there (bad frame), counted and acknowledged
    head = 2048 - 2 - len("peergrid/g1/b/m01/order") - 2  # the buffer less topic and packet id
    assert got.strip() == f"[('peergrid/g1/b/m01/order', {head}), ('peergrid/g1/b/m01/order', 5)]", out


LOCK_RACE = r"""
import asyncio
from mqtt import MQTTClient, MqttError

class SlowWriter:  # a stream whose drain yields, as a real socket's does
    def write(self, data):
        pass
    async def drain(self):
        await asyncio.sleep(0.05)
    def close(self):
        pass

async def main():
    c = MQTTClient("m01", "127.0.0.1", 1)
    c._w = SlowWriter()
    c.connected = True
    first = asyncio.create_task(c.publish("t", b"w", qos=0))  # holds the send lock while it drains
    await asyncio.sleep(0)
    second = asyncio.create_task(c.publish("t", b"x", qos=0))  # waits for the lock
    await asyncio.sleep(0)
    c.close()  # the link task closes the connection meanwhile
    await first
    try:
        await second
        what = "none"
    except MqttError:
        what = "MqttError"
    except Exception as e:
        what = type(e).__name__
    print("RESULT", what)

asyncio.run(main())
"""


def test_send_after_close_while_waiting_for_the_lock_raises_mqtterror(tmp_path: Path) -> None:
    # before: AttributeError ('NoneType' has no 'write'), which the readings task does not expect
    # (it spools on MqttError/OSError): the task died and the board sent no reading again
    out = run_micropython(LOCK_RACE, heap="64k", cwd=tmp_path).stdout
    assert result(out) == ["MqttError"], out


READINGS_SURVIVE = r"""
import asyncio
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
clock = SimClock(1750000000, 100)
b = app.Board(cfg, settings, FakeHardware(cfg, lambda now: 500), clock)
real = b.reading
calls = [0]
def flaky(now):
    calls[0] += 1
    if calls[0] == 2:
        raise ValueError("a bug in one reading")
    return real(now)
b.reading = flaky

async def main():
    t = asyncio.create_task(b.readings())
    await clock.sleep(60)  # no broker: every reading goes to the spool
    b.stop = True
    await clock.sleep(11)
    print("RESULT", calls[0], len(b.spool), b.errors, t.done())

asyncio.run(main())
"""


def test_readings_task_survives_an_unexpected_error(tmp_path: Path) -> None:
    # before: one exception in a reading (a bug, a value outside the wire's range, a flash write
    # error) ended the readings task for good while the watchdog was still fed by the metering
    # task: the board stayed up and online and never sent another reading
    board_files(tmp_path, 1)
    out = run_micropython(READINGS_SURVIVE, heap=FIRMWARE_HEAP_NOW, cwd=tmp_path).stdout
    calls, spooled, errors, done = result(out)
    assert int(calls) >= 6 and int(spooled) == int(calls) - 1 and errors == "1" and done == "True", out


RUN_BOARD = (
    BROKER
    + r"""
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
clock = SimClock(1750000000, SPEED)
b = app.Board(cfg, settings, FakeHardware(cfg, lambda now: 500), clock)
HOOKS

async def main():
    srv = await asyncio.start_server(serve, "127.0.0.1", PORT)
    await b.run(until=1750000000 + SECONDS)
    srv.close()
    print("RESULT", B["conns"], B["pings"], B["topics"].count("peergrid/g1/b/m01/enrol"), B["closed"],
          b.errors, b.sent, len(b.spool), b.regs.seq, B["topics"].count("peergrid/g1/b/m01/reading"))

asyncio.run(main())
"""
)


def run_board(tmp: Path, speed: int, seconds: int, hooks: str = "", **timing: int) -> list[str]:
    port = free_port()
    board_files(tmp, port, **timing)
    code = (
        RUN_BOARD.replace("PORT", str(port))
        .replace("SPEED", str(speed))
        .replace("SECONDS", str(seconds))
        .replace("HOOKS", hooks)
    )
    return result(run_micropython(code, heap=FIRMWARE_HEAP_NOW, cwd=tmp, timeout=60).stdout)


def test_keepalive_pings_when_nothing_else_is_sent(tmp_path: Path) -> None:
    # before: the client never sent PINGREQ, so with readings further apart than 1.5 x keepalive
    # the broker dropped the board every keepalive and published its "offline" will each time
    conns, pings, *_ = run_board(tmp_path, 1, 7, reading_s=3600, status_s=3600, keepalive=2)
    assert conns == "1" and int(pings) >= 2, (conns, pings)


GO_SILENT = """
def on_publish(w, kind, topic):
    if B["conns"] == 1 and topic.endswith("/reading"):  # after the first replayed reading the
        w.write = lambda data: None  # broker's host is gone: nothing comes back, no error either
    return True
"""


def test_an_unanswered_ping_ends_a_dead_session(tmp_path: Path) -> None:
    # before: nothing waited for the PINGRESP. A half-open TCP link (the broker's host gone, a NAT
    # entry expired) takes writes without error, so the board sat in a dead session, taking each
    # new reading's PUBACK timeout before spooling it, until a replay's timeout ended the session
    conns, pings, _, closed, errors, sent, spooled, seq, delivered = run_board(
        tmp_path, 1, 9, GO_SILENT, reading_s=2, status_s=3600, keepalive=2
    )
    # the ping at 2 s goes unanswered: the session ends 1 s later (keepalive / 2), the link backs
    # off 1 s and reconnects at ~4 s (before: one session for good, no ping answered)
    assert conns == "2" and closed == "1" and errors == "0", (conns, closed, errors)
    # the reading taken at 2 s in the dead session was spooled when it ended and replayed in the
    # new one: nothing lost (one may still wait at the end of the run)
    assert int(sent) + int(spooled) == int(seq) >= 4 and int(spooled) <= 1, (sent, spooled, seq)
    assert int(delivered) == int(seq) - int(spooled) + 1, delivered  # the 2 s one went out twice


DROP_AFTER_SETUP = """
def on_publish(w, kind, topic):
    return not topic.endswith("/status")  # the session is set up: then the broker drops it
"""


def test_reconnect_backs_off_when_every_session_is_dropped_at_once(tmp_path: Path) -> None:
    # before: a session that ended by the broker closing the connection counted as a good one and
    # reset the backoff to 1 s, so a broker that drops the board straight after set-up (another
    # board with the same client id, a broker-side refusal) was hammered once a second for ever,
    # with an enrol and a retained status each time
    conns, _, enrols, *_ = run_board(tmp_path, 10, 60, DROP_AFTER_SETUP)
    # 1 + 2 + 4 + 8 + 16 + 32 s of backoff: at most 6 sessions in 60 s (before: about 50)
    assert 3 <= int(conns) <= 7 and enrols == conns, (conns, enrols)


REFUSE_SUBSCRIPTION = """
GRANT = b"\\x80"  # the broker refuses the order subscription (its ACL, a topic it does not allow)
"""


def test_refused_subscription_fails_the_session(tmp_path: Path) -> None:
    # before: the client took any SUBACK for success, return code 0x80 (failure) included: the
    # board went on publishing readings in a session without its order subscription, received no
    # order, and nothing said so until the fail-safe two intervals later; it never tried again
    conns, _, enrols, _, errors, *_ = run_board(tmp_path, 10, 60, REFUSE_SUBSCRIPTION)
    # each session fails at the SUBACK (before the enrol), is counted, and the link reconnects
    # with backoff: 1 + 2 + 4 + 8 + 16 + 32 s, at most 6 sessions in 60 s
    assert 3 <= int(conns) <= 7 and enrols == "0" and errors == conns, (conns, enrols, errors)


CLOSE = (
    BROKER
    + r"""
from mqtt import MQTTClient

async def main():
    srv = await asyncio.start_server(serve, "127.0.0.1", PORT)
    c = MQTTClient("m01", "127.0.0.1", PORT)
    await c.connect()
    c.close()  # what the link does after a failed session before it reconnects
    for _ in range(50):
        await asyncio.sleep(0.02)
        if B["closed"]:
            break
    await c.connect()
    await c.disconnect()  # clean shutdown
    for _ in range(50):
        await asyncio.sleep(0.02)
        if B["closed"] == 2:
            break
    print("RESULT", B["conns"], B["closed"])
    srv.close()

asyncio.run(main())
"""
)


def test_close_really_closes_the_connection(tmp_path: Path) -> None:
    # before: MQTTClient.close() called only the stream's close(), which on MicroPython does
    # nothing (the socket is closed by ``await wait_closed()``): every reconnect left the old TCP
    # connection open on both ends until the heap was collected, if ever
    port = free_port()
    out = run_micropython(CLOSE.replace("PORT", str(port)), heap="64k", cwd=tmp_path).stdout
    assert result(out) == ["2", "2"], out


WATCHDOG = (
    BROKER
    + r"""
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
clock = SimClock(1750000000, SPEED)
b = app.Board(cfg, settings, FakeHardware(cfg, lambda now: 500), clock)
feeds = []
real_physics = b.hw.physics
def physics(now):  # where a board's clock is set: EspHardware.physics asks NTP
    if now - clock.start >= STEPPED_AT >= 0 and clock.start == 1750000000:
        clock.start += STEP  # NTP answers: board time jumps forward
    real_physics(now)
b.hw.physics = physics
HOOKS

async def main():
    if BROKER_UP:
        await asyncio.start_server(serve, "127.0.0.1", PORT)
    board = asyncio.create_task(b.run(until=1750000000 + STEP + SECONDS))
    for t in MARKS:  # board seconds since the start, the step not counted
        await clock.sleep(t - (clock.now() - clock.start))
        feeds.append(b.wdt.feeds)
    await board
    print("RESULT", B["conns"], *feeds)

asyncio.run(main())
"""
)


def run_watchdog(
    tmp: Path, hooks: str, marks: list[int], *, broker: bool, speed: int = 40, step: int = 0, at: int = -1
) -> list[int]:
    port = free_port()
    board_files(tmp, port)
    code = (
        WATCHDOG.replace("STEPPED_AT", str(at))
        .replace("PORT", str(port))
        .replace("SPEED", str(speed))
        .replace("STEP", str(step))
        .replace("SECONDS", str(marks[-1] + 1))
        .replace("MARKS", repr(marks))
        .replace("BROKER_UP", str(broker))
        .replace("HOOKS", hooks)
    )
    return [int(x) for x in result(run_micropython(code, heap=FIRMWARE_HEAP_NOW, cwd=tmp, timeout=90).stdout)]


READINGS_STUCK = """
real = b._send_reading
async def stuck(fr):
    if b.regs.seq > 1:  # from the second reading on, its publish waits for ever (not an error:
        await asyncio.Event().wait()  # a drain, a lock or an event nobody sets)
    await real(fr)
b._send_reading = stuck
"""


def test_watchdog_is_not_fed_when_the_readings_task_is_stuck(tmp_path: Path) -> None:
    # before: the metering task fed the watchdog on its own, so a readings task waiting for ever
    # went unnoticed: the board stayed up, online, answering pings, and sent no reading again
    conns, at_100, at_160, at_300 = run_watchdog(tmp_path, READINGS_STUCK, [100, 160, 300], broker=True)
    assert conns == 1, conns
    # fed every poll (1 s) until 120 s (app._SLACK) after the stuck reading began (at 10 s), then
    # never: the hardware watchdog resets the board wdt_ms after that
    assert at_100 >= 80 and 100 <= at_160 <= 150 and at_300 == at_160, (at_100, at_160, at_300)


def test_watchdog_is_fed_while_the_broker_is_down_and_when_the_clock_is_set(tmp_path: Path) -> None:
    # a broker down for many keepalive periods leaves the link in its backoff (60 s at most):
    # that is no stuck task, the board must not reset for it; nor for the clock jumping 30 days
    # forward when NTP first answers (every deadline would be a month overdue)
    marks = [100, 200, 260, 1000]
    conns, at_100, at_200, at_260, at_1000 = run_watchdog(
        tmp_path, "", marks, broker=False, step=30 * 86400, at=200
    )
    assert conns == 0
    assert at_100 >= 80 and at_200 - at_100 >= 80, (at_100, at_200)
    assert at_260 - at_200 >= 45 and at_1000 - at_260 >= 600, (at_200, at_260, at_1000)


READINGS_ON_THE_GRID = r"""
import asyncio
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
class Early(SimClock):  # its sleeps end EARLY s early: the ticks ahead of the wall clock
    async def sleep(self, s):
        await SimClock.sleep(self, max(s - EARLY, 0))
clock = Early(1750000000, 20)
b = app.Board(cfg, settings, FakeHardware(cfg, lambda now: 500), clock)
taken = []
async def slow(fr):  # no broker: each reading is spooled; the one at SLOW s takes 10 s to send,
    now = clock.now() - 1750000000  # as one whose PUBACK times out in a dead session
    taken.append(now)
    if now == SLOW:
        await SimClock.sleep(clock, 10)
b._send_reading = slow

async def main():
    t = asyncio.create_task(b.readings())
    await SimClock.sleep(clock, 45)
    b.stop = True
    print("RESULT", *taken)

asyncio.run(main())
"""


def readings_taken(tmp: Path, slow: int, early: float) -> list[int]:
    board_files(tmp, 1)
    code = READINGS_ON_THE_GRID.replace("SLOW", str(slow)).replace("EARLY", str(early))
    return [int(x) for x in result(run_micropython(code, heap=FIRMWARE_HEAP_NOW, cwd=tmp).stdout)]


def test_a_slow_reading_does_not_push_the_next_one_off_the_grid(tmp_path: Path) -> None:
    # before: the wait for the next reading was reckoned from the start of the previous one, so a
    # reading that took its whole interval to send (a PUBACK timeout: 10 s, the default interval)
    # left the next one a full interval later: the 20 s slot was skipped
    assert readings_taken(tmp_path, 10, 0) == [0, 10, 20, 30, 40]


def test_a_sleep_that_ends_early_takes_no_reading_twice(tmp_path: Path) -> None:
    # before: a wake half a second early (at 9.5 s: 9 on the board's whole-second clock) took a
    # reading, then waited the 1 s to the grid and took another at 10: two readings a second apart
    # in each slot. Now the early one is that slot's
    taken = readings_taken(tmp_path, -1, 0.5)
    assert [(t + 2) // 10 for t in taken] == [0, 1, 2, 3, 4], taken


SHUTDOWN_IN_FLIGHT = r"""
import asyncio
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
b = app.Board(cfg, settings, FakeHardware(cfg, lambda now: 500), SimClock(1750000000, 10))
async def no_puback(topic, msg, retain=False, qos=1, timeout_ms=10000):
    await asyncio.Event().wait()  # the PUBACK is still on its way when the board stops
async def idle():
    await asyncio.Event().wait()
b.client.publish = no_puback
b.client.connected = True
b.link = idle
asyncio.run(b.run(until=1750000005))
print("RESULT", b.regs.seq, b.sent, len(b.spool))
"""


def test_a_reading_in_flight_at_shutdown_is_kept_for_the_next_boot(tmp_path: Path) -> None:
    # before: run() cancelled the tasks and returned at once. On MicroPython the loop stops with
    # the main task, so a cancelled task never ran its handler: the readings task did not spool
    # the reading still waiting for its PUBACK, and that reading was lost (sequence number used)
    board_files(tmp_path, 1)
    out = run_micropython(SHUTDOWN_IN_FLIGHT, heap=FIRMWARE_HEAP_NOW, cwd=tmp_path).stdout
    assert result(out) == ["1", "0", "1"], out


CONNECT_FAILS = r"""
import asyncio
from mqtt import MQTTClient, MqttError

async def silent(r, w):  # takes the connection, never answers
    await asyncio.sleep(5)

async def hang_up(r, w):  # closes it at once (a broker at its connection limit)
    w.close()
    await w.wait_closed()

async def attempt(port):
    c = MQTTClient("m01", "127.0.0.1", port)
    try:
        await c.connect(timeout_ms=300)
        return "connected"
    except MqttError:
        return "MqttError"
    except Exception as e:
        return type(e).__name__
    finally:
        c.close()

async def main():
    out = []
    for port, handler in zip(PORTS, (silent, hang_up)):
        srv = await asyncio.start_server(handler, "127.0.0.1", port)
        out.append(await attempt(port))
        srv.close()
    print("RESULT", *out)

asyncio.run(main())
"""


def test_a_connect_without_connack_fails_as_a_link_error(tmp_path: Path) -> None:
    # before: a broker that took the connection and never answered raised asyncio.TimeoutError,
    # which on MicroPython is no OSError: the link task took it for a bug in the firmware (logged
    # as such, counted in errors). One that hangs up shows as an OSError or an EOFError, as the
    # race goes; the link expects the first, and now gets MqttError for the second
    ports = [free_port(), free_port()]
    out = run_micropython(CONNECT_FAILS.replace("PORTS", repr(ports)), heap="64k", cwd=tmp_path).stdout
    silent, hang_up = result(out)
    assert silent == "MqttError" and hang_up in ("MqttError", "OSError"), out
