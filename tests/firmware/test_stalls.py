"""Nothing holds the board's event loop: the runtime on the real MicroPython unix port under a
silent meter, DNS down, an NTP server that does not answer, a Wi-Fi drop, a broker that takes
the TCP connection and never answers, and orders whose setpoints go to a silent Modbus inverter.
A heartbeat task beside the board counts its ticks (one per 10 ms sleep when the loop is free);
each test asserts the readings taken and at least 10 heartbeats per reading (a free loop gives
~50: readings are 0.5 s apart at this speed; a loop held 200 ms at a time gives a few), or per
setpoint write that timed out (~20 when free, none when the write holds the loop), never a
duration. The longest gap between two heartbeats is printed for bench/firmware.py."""

from __future__ import annotations

import json
from pathlib import Path

from tests.firmware.test_link import BROKER, COORD, free_port
from tests.mpy import FIRMWARE_HEAP_NOW, run_micropython

SPEED = 20
SECONDS = 60

RUN = (
    BROKER
    + r"""
import socket, time
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
BEFORE
clock = SimClock(1750000000, SPEED)
hw = FakeHardware(cfg, lambda now: 500)
b = app.Board(cfg, settings, hw, clock)
HOOKS
beats = [0, 0]  # heartbeats, the longest gap between two (ms, beyond the 10 ms sleep)
# an actuator write under way (set by a test's hook), when it began (ticks), the heartbeats
# that began and ended inside writes, the longest gap among them
writing = [0, 0, 0, 0]

async def heartbeat():
    last = time.ticks_ms()
    while True:
        await asyncio.sleep_ms(10)
        t = time.ticks_ms()
        gap = time.ticks_diff(t, last) - 10
        beats[0] += 1
        beats[1] = max(beats[1], gap)
        if writing[0] and time.ticks_diff(last, writing[1]) >= 0:
            writing[2] += 1
            writing[3] = max(writing[3], gap)
        last = t

async def main():
    if BROKER_UP:
        srv = await asyncio.start_server(serve, "127.0.0.1", PORT)
    hb = asyncio.create_task(heartbeat())
    DURING
    await b.run(until=1750000000 + SECONDS)
    hb.cancel()
    print("RESULT", beats[0], beats[1], b.regs.seq, b.sent, len(b.spool), b.meter.errors, b.errors, EXTRA)

asyncio.run(main())
"""
)


def run_board(
    tmp: Path,
    *,
    before: str = "",
    hooks: str = "",
    during: str = "pass",
    extra: str = "0",
    broker: bool = True,
    host: str = "127.0.0.1",
    seconds: int = SECONDS,
    board_file: dict[str, object] | None = None,
    lines: list[str] | None = None,
    **settings: object,
) -> list[int]:
    """The RESULT line's numbers; the other lines of the board's output go to ``lines``."""
    port = free_port()
    board = {
        "type": "esp32-pzem004t",
        "frontend": {"chip": "pzem004t", "uart": 2, "tx": 17, "rx": 16, "addr": 1},
        "relays": [{"pin": 25}],
        "reading_s": 10,
        "interval_s": 900,
        **(board_file or {}),
    }
    (tmp / "board.json").write_text(json.dumps(board))
    s = {
        "board": "m01",
        "grid": "g1",
        "coordinator_key": COORD.public.hex(),
        "broker": {"host": host, "port": port},
        **settings,
    }
    (tmp / "settings.json").write_text(json.dumps(s))
    code = (
        RUN.replace("BEFORE", before)
        .replace("HOOKS", hooks)
        .replace("DURING", during)
        .replace("EXTRA", extra)
        .replace("BROKER_UP", str(broker))
        .replace("PORT", str(port))
        .replace("SPEED", str(SPEED))
        .replace("SECONDS", str(seconds))
    )
    out = run_micropython(code, heap=FIRMWARE_HEAP_NOW, cwd=tmp, timeout=120).stdout
    assert "RESULT" in out, out
    if lines is not None:
        lines += out.splitlines()
    return [int({"True": 1, "False": 0}.get(x, x)) for x in out.split("RESULT")[1].split()]


def kept_running(beats: int, seq: int) -> None:
    assert seq >= 5, seq  # a reading every 10 s of the 60 s run
    assert beats >= 10 * seq, (beats, seq)


SILENT_METER = """
from fakes import pzem004t as fp
dev = hw._fake()
dev.fault = fp.FAULT_NO_REPLY  # the PZEM does not answer (unplugged, its fuse blown)
dev.fault_count = -1
"""


def test_a_silent_meter_does_not_hold_the_loop(tmp_path: Path) -> None:
    # before: each poll busy-waited sleep_ms(1) up to the 200 ms timeout, 3 tries: 600 ms at a
    # time in the metering task, nothing else ran (the DSMR UART buffer overflowed meanwhile)
    beats, gap, seq, sent, queued, meter_errors, errors, _ = run_board(tmp_path, hooks=SILENT_METER)
    print(f"silent meter: longest stall {gap} ms")
    kept_running(beats, seq)
    assert meter_errors >= 3 and errors == 0 and sent + queued >= seq - 1, (meter_errors, errors)


DNS_DOWN = """
import sys
lookups = []
# the socket module with its getaddrinfo as with the resolver down (a builtin module cannot be
# patched: this stands in for it in sys.modules). A name's lookup fails, at once at boot, after
# blocking 2 s once the loop runs (``looping``: the run's simulated time is not spent at boot)
looping = []
class Resolver:
    def __getattr__(self, name):
        return getattr(socket, name)
    def getaddrinfo(self, host, port, *a):
        if not host.replace(".", "").isdigit():
            lookups.append(host)
            time.sleep(2 if looping else 0)
            raise OSError(-3)
        return socket.getaddrinfo(host, port, *a)
sys.modules["socket"] = Resolver()
with open("dns.txt", "w") as f:  # the address the board resolved on an earlier boot
    f.write("broker.lan 127.0.0.1\\n")
"""


def test_dns_down_is_kept_off_the_loop(tmp_path: Path) -> None:
    # before: the broker's name went to asyncio.open_connection, whose getaddrinfo blocks the
    # loop for as long as the resolver takes, at every reconnect; now the name is looked up before
    # the loop starts and, with DNS down, its cached address is used
    beats, gap, seq, sent, queued, _, errors, lookups, boot_lookups = run_board(
        tmp_path,
        before=DNS_DOWN,
        hooks="boot = len(lookups)",
        during="looping.append(1)",
        extra="len(lookups), boot",
        host="broker.lan",
    )
    print(f"DNS down: longest stall {gap} ms")
    kept_running(beats, seq)
    assert lookups == boot_lookups == 1, (lookups, boot_lookups)  # once, at boot
    assert sent >= seq - 2 and errors == 0, (sent, seq, errors)  # delivered at the cached address


NTP = """
ntp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ntp.bind(socket.getaddrinfo("127.0.0.1", NTP_PORT)[0][-1])
ntp.setblocking(False)
asked = [0]
async def ntp_server():  # silent to the first ANSWER_FROM - 1 requests, then answers
    import struct
    while True:
        await asyncio.sleep_ms(5)
        try:
            q, addr = ntp.recvfrom(48)
        except OSError:
            continue
        asked[0] += 1
        if asked[0] >= ANSWER_FROM:
            r = bytearray(48)
            r[0] = 0x24  # version 4, server
            r[1] = 2  # stratum 2
            struct.pack_into("!I", r, 40, 1_750_000_200 + 2_208_988_800)
            ntp.sendto(r, addr)
clock.synced = False  # as a board whose RTC was not set at boot
"""


def run_ntp(tmp: Path, answer_from: int) -> list[int]:
    port = free_port()
    return run_board(
        tmp,
        hooks=NTP.replace("NTP_PORT", str(port)).replace("ANSWER_FROM", str(answer_from)),
        during="asyncio.create_task(ntp_server())",
        extra="asked[0], clock.synced, b.started - 1750000000",
        seconds=150,
        ntp={"host": "127.0.0.1", "port": port},
    )


def test_an_unreachable_ntp_server_does_not_hold_the_loop(tmp_path: Path) -> None:
    # before: ntptime.settime() ran in the metering task: DNS and a 1 s socket wait, every minute
    # until it answered; nor could the server be chosen (a LAN without internet had no time)
    beats, gap, seq, *_, asked, synced, moved = run_ntp(tmp_path, 1000)
    print(f"NTP unreachable: longest stall {gap} ms")
    kept_running(beats, seq)
    assert asked == 2 and (synced, moved) == (0, 0), (asked, synced, moved)  # asked again a minute on


def test_the_clock_is_set_from_the_configured_ntp_server(tmp_path: Path) -> None:
    # the server answers the second request (a minute after the first): the clock is set to its
    # time, 200 s after the start, and the boot time moves with it (uptime stays true)
    beats, _, seq, *_, asked, synced, moved = run_ntp(tmp_path, 2)
    assert beats >= 10 * seq and asked == 2 and synced == 1 and 100 <= moved <= 130, (asked, synced, moved)


WIFI_DROP = """
async def drop():
    await clock.sleep(20)
    hw.sta.up = False  # the access point restarts
"""


def test_wifi_is_rejoined_inside_the_running_loop(tmp_path: Path) -> None:
    # before: only main.py joined the Wi-Fi, at boot; a drop later was never handled (only the MQTT
    # link retried, for ever, on a radio that had left the network)
    beats, gap, seq, *_, rejoins, connects, up = run_board(
        tmp_path,
        hooks=WIFI_DROP,
        during="asyncio.create_task(drop())",
        extra="b.rejoins, hw.sta.connects, hw.sta.up",
        wifi={"ssid": "home", "password": "pw"},
    )
    print(f"Wi-Fi drop: longest stall {gap} ms")
    kept_running(beats, seq)
    assert (rejoins, connects, up) == (1, 1, 1), (rejoins, connects, up)


SILENT_BROKER = """
async def silent(r, w):  # takes the TCP connection, never answers
    await asyncio.sleep(3600)
"""


def test_a_broker_that_never_answers_does_not_hold_the_loop(tmp_path: Path) -> None:
    beats, gap, seq, sent, queued, *_ = run_board(
        tmp_path,
        hooks=SILENT_BROKER,
        during="await asyncio.start_server(silent, '127.0.0.1', PORT)",
        broker=False,
    )
    print(f"silent broker: longest stall {gap} ms")
    kept_running(beats, seq)
    assert sent == 0 and queued == seq, (sent, queued, seq)


# a battery inverter and a PV inverter on the RS-485 bus (hand-listed holding registers); the fake
# slave stays silent. No state of charge read for the readings: each would wait 200 ms of real time
# for the silent inverter, 4 s of this run's board time, and the readings counted would depend on
# the machine's speed (the reads share the bus with the writes: tests/firmware/test_battery.py)
MODBUS_BOARD = {
    "type": "esp32-battery",
    "modbus": {"uart": 1, "tx": 32, "rx": 33, "baud": 9600},
    "battery": {
        "max_charge_w": 3300,
        "max_discharge_w": 3300,
        "modbus": {"addr": 1, "reg": 40100, "scale_w": 10},
    },
    "pv": {"max_export_w": 4000, "modbus": {"addr": 1, "reg": 40200}},
}

SILENT_ACTUATOR = """
hw.slave.silent = True  # the inverters do not answer (switched off, the RS-485 cable cut)
print("KEY", b.key.public.hex())
acks = []
handle = b.orders.handle
async def handled(topic, payload, now):  # the link task's call, its ack printed for the test
    a = await handle(topic, payload, now)
    acks.append(a)
    print("ACK", a[1].hex())
    return a
b.orders.handle = handled
apply = b.act.apply
async def applying(*setpoints):  # the heartbeats inside the writes are counted (``writing``)
    writing[0], writing[1] = 1, time.ticks_ms()
    try:
        return await apply(*setpoints)
    finally:
        writing[0] = 0
b.act.apply = applying
async def give(frames):  # an order every 10 s, once the link is up
    await clock.sleep(12)
    for fr in frames:
        b._on_message(b.t_order, bytes.fromhex(fr))
        await clock.sleep(10)
"""


def test_an_order_to_a_silent_modbus_device_does_not_hold_the_loop(tmp_path: Path) -> None:
    # before: Actuators.apply wrote each setpoint synchronously, checking for the inverter's echo
    # with sleep_ms(1) up to the 200 ms timeout: a battery and a PV limit held the loop 400 ms
    # per order, no other task ran meanwhile (the same as a silent meter before its reads yielded)
    from protocol import crypto, frame, messages, topics

    t_order = topics.board_topic("g1", "m01", "order")
    t0 = 1_750_000_000
    orders = [
        messages.Order(
            board="m01",
            oseq=k,
            interval=t0,
            valid_from=t0 - 60,
            valid_until=t0 + 900,
            bat_w=1000,
            pv_limit_w=2000,
            relay_mask=1,
            relay_state=1,
        )
        for k in (1, 2, 3)
    ]
    frames = [frame.seal(o, t_order, COORD).hex() for o in orders]
    lines: list[str] = []
    beats, gap, seq, sent, queued, meter_errors, errors, n_acks, inside, stall, faults, relays = run_board(
        tmp_path,
        board_file=MODBUS_BOARD,
        hooks=SILENT_ACTUATOR,
        during=f"asyncio.create_task(give({frames!r}))",
        extra="len(acks), writing[2], writing[3], b.act.faults, hw.pins[0].v",
        lines=lines,
    )
    # the longest gap inside the writes; and over the whole run, which also holds the orders'
    # signature checks and the acks' signing (not waits: work done in one piece)
    print(f"silent Modbus inverter, an order's setpoint writes: longest stall {stall} ms")
    print(f"silent Modbus inverter, the whole run with 3 orders: longest stall {gap} ms")
    kept_running(beats, seq)
    assert errors == 0 and sent + queued >= seq - 1, (errors, sent, queued, seq)
    # each order: the battery's and the PV inverter's setpoint unanswered (a fault each), 200 ms of
    # silence apiece on the bus, during which the heartbeat kept beating (~20 per write if free)
    assert (n_acks, faults) == (3, 6), (n_acks, faults)
    assert inside >= 10 * faults, (inside, faults)
    board_key = crypto.Verifier(bytes.fromhex(next(x for x in lines if x.startswith("KEY"))[4:]))
    acks = [x.split()[1] for x in lines if x.startswith("ACK ")]
    for k, a in enumerate(acks, 1):
        ack = frame.open_frame(topics.board_topic("g1", "m01", "ack"), bytes.fromhex(a), lambda m: board_key)
        assert isinstance(ack, messages.Ack)
        # as before: applied, with what the inverters really hold (nothing taken) and the relay set
        assert (ack.oseq, ack.status, ack.bat_w, ack.pv_limit_w, ack.relay_state) == (
            k, messages.ST_APPLIED, 0, None, 1), ack  # fmt: skip
    assert relays == 1
