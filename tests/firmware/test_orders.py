"""Orders on the board, on the real MicroPython unix port without a broker: what reaches the
actuators (fake Modbus slave, pilot PWM, relays) when orders queue up, when they never open,
and when the board falls back to its safe defaults."""

from __future__ import annotations

import json
from pathlib import Path

from protocol import crypto
from tests.mpy import FIRMWARE_HEAP_NOW, run_micropython

COORD_SEED = bytes(range(32))
START = 1_750_000_000

BOARD = {
    "type": "esp32-pzem004t",
    "frontend": {"chip": "pzem004t", "uart": 2, "tx": 17, "rx": 16, "addr": 1},
    "relays": [{"pin": 25}],
    "modbus": {"uart": 1, "tx": 32, "rx": 33, "baud": 9600},
    "battery": {
        "max_charge_w": 3300,
        "max_discharge_w": 3295,
        "modbus": {"addr": 1, "reg": 100, "scale_w": 10},
    },
    "pv": {"max_export_w": 4000, "modbus": {"addr": 1, "reg": 200, "scale_w": 1}},
    "ev": {"pwm_pin": 27, "min_ma": 6000, "max_ma": 16000},
    "safe": {"bat_w": 0, "ev_ma": 3000, "pv_limit_w": 4000, "relays": 0},
    "interval_s": 900,
}

PRELUDE = r"""
import asyncio
import app
from fakes.clock import SimClock
from fakes.hardware import FakeHardware
from protocol import crypto, frame, messages
cfg = app.load_json("board.json"); settings = app.load_json("settings.json")
hw = FakeHardware(cfg, lambda now: 500)
b = app.Board(cfg, settings, hw, SimClock(START, 1))
coord = crypto.SigningKey(bytes(range(32)))
T = "peergrid/g1/b/m01/order"

def order(oseq, now, valid_from=None, **setpoints):
    vf = now - 10 if valid_from is None else valid_from
    o = messages.Order(board="m01", oseq=oseq, interval=vf, valid_from=vf, valid_until=vf + 900,
                       relay_mask=0, relay_state=0, **setpoints)
    return frame.seal(o, T, coord)

def inbox(now):  # what the link's session loop does with the inbox
    acks = []
    while b.inbox:
        topic, payload = b.inbox.pop(0)
        a = asyncio.run(b.orders.handle(topic, payload, now))  # awaited by the link task
        if a:
            acks.append(frame.open_frame(a[0], a[1], lambda m: crypto.Verifier(b.key.public)))
    return acks
""".replace("START", str(START))


def board(tmp: Path, **changes: object) -> None:
    (tmp / "board.json").write_text(json.dumps({**BOARD, **changes}))
    settings = {
        "board": "m01",
        "grid": "g1",
        "coordinator_key": crypto.SigningKey(COORD_SEED).public.hex(),
        "broker": {"host": "127.0.0.1", "port": 1},
    }
    (tmp / "settings.json").write_text(json.dumps(settings))


def run(tmp: Path, body: str) -> list[str]:
    out = run_micropython(PRELUDE + body, heap=FIRMWARE_HEAP_NOW, cwd=tmp).stdout
    assert "RESULT" in out, out
    return out.split("RESULT")[1].split()


QUEUED = r"""
now = START + 7200
for oseq in range(1, 7):  # the broker delivers what it queued while the board was offline
    b._on_message(T, order(oseq, now - 900 * (6 - oseq), pv_limit_w=500 * oseq))
acks = inbox(now)
print("RESULT", b.regs.last_oseq, hw.slave.regs.get(200), b.orders.rejected,
      [a.oseq for a in acks if a.status != messages.ST_REJECTED])
""".replace("START", str(START))


def test_a_backlog_of_orders_keeps_the_newest(tmp_path: Path) -> None:
    # before: the bounded inbox (4) kept the OLDEST orders of a backlog and dropped the rest, so
    # after an outage the stale ones were refused and the current order was lost: the board ran
    # without a valid order (and fell back to its safe defaults) until the next interval
    board(tmp_path)
    last_oseq, pv, rejected, applied = run(tmp_path, QUEUED)
    assert (last_oseq, pv, applied) == ("6", "3000", "[6]")
    assert int(rejected) == 5  # two dropped from the inbox + three stale, all counted


PENDING = r"""
now = START
acks = []
for k in range(4):  # the board's clock is far behind the coordinator's (NTP failed at boot)
    b._on_message(T, order(k + 1, now, valid_from=START + 10**6, bat_w=1000))
    acks += inbox(now)
    for s in range(0, 900, 30):
        a = asyncio.run(b.orders.tick(now + s))  # awaited by the metering task
        if a:
            acks.append(frame.open_frame(a[0], a[1], lambda m: crypto.Verifier(b.key.public)))
    now += 900
print("RESULT", b.orders.failsafe, [a.status for a in acks])
""".replace("START", str(START))


def test_failsafe_when_no_order_ever_opens(tmp_path: Path) -> None:
    # before: a valid order that is not yet in force counted as "a valid order arrived": a board
    # whose clock runs behind the coordinator's held every order as pending and never fell back
    # to its safe defaults, keeping whatever setpoints it had for as long as orders kept coming
    board(tmp_path)
    failsafe, statuses = run(tmp_path, PENDING)
    assert failsafe == "True" and statuses == "[3]", (failsafe, statuses)


FAILSAFE_LIMITS = r"""
asyncio.run(b.orders.tick(START))
a = asyncio.run(b.orders.tick(START + 1800))
ack = frame.open_frame(a[0], a[1], lambda m: crypto.Verifier(b.key.public))
print("RESULT", ack.status, ack.ev_ma, hw.pwm.duty)
""".replace("START", str(START))


def test_failsafe_applies_the_limits_too(tmp_path: Path) -> None:
    # before: the fail-safe path wrote the board file's safe values to the actuators unclamped; an
    # EV current below the 6 A minimum became a 5 % pilot duty, which IEC 61851 reserves for
    # digital communication, instead of "no charging" (the order path clamped it to 0)
    board(tmp_path)
    status, ev_ma, duty = run(tmp_path, FAILSAFE_LIMITS)
    assert (status, ev_ma, duty) == ("3", "0", "65535")


DISCHARGE = r"""
b._on_message(T, order(1, START, bat_w=-5000))
ack = inbox(START)[0]
print("RESULT", ack.status, ack.bat_w, hw.slave.regs.get(100))
""".replace("START", str(START))


def test_discharge_setpoint_never_exceeds_the_limit_after_scaling(tmp_path: Path) -> None:
    # before: -3295 W at 10 W per register unit was written as -330 (floor division rounds away
    # from zero for negative values): -3300 W, past the inverter's 3295 W discharge limit
    board(tmp_path)
    status, bat_w, reg = run(tmp_path, DISCHARGE)
    assert (status, bat_w, reg) == ("1", "-3290", "-329")


def test_pilot_duty_above_51_amps() -> None:
    # IEC 61851-1: duty = I / 0.6 % up to 51 A, (I / 2.5 + 64) % from there to 80 A. Before: the
    # first formula for every current, so 60 A gave 100 % (no charging) and 55 A 91.7 %, which
    # an EV reads as (91.7 - 64) x 2.5 = 69 A: more than the charger's limit
    code = (
        "from actuators import pilot_duty_u16\n"
        "print('RESULT', [pilot_duty_u16(ma) for ma in (0, 6000, 16000, 51000, 55000, 60000, 80000)])"
    )
    out = run_micropython(code, heap="64k").stdout
    duties = json.loads(out.split("RESULT")[1])
    assert duties[:4] == [65535, 6553, 17476, 55704]
    for ma, duty in zip((55000, 60000, 80000), duties[4:], strict=True):
        pct = duty * 100 / 65535
        assert (pct - 64) * 2.5 <= ma / 1000 < (pct - 64) * 2.5 + 0.01, (ma, pct)


STALE_WHEN_OPENED = r"""
b._on_message(T, order(1, START, valid_from=START + 100, bat_w=1000))  # in force START+100..+1000
acks = inbox(START)  # not open yet: pending, acknowledged when it takes effect
a = asyncio.run(b.orders.tick(START + 5000))  # the clock stepped past the whole window meanwhile (NTP)
ack = frame.open_frame(a[0], a[1], lambda m: crypto.Verifier(b.key.public))
print("RESULT", len(acks), ack.oseq, ack.status, hw.slave.regs.get(100), b.orders.pending is None,
      b.orders.rejected, asyncio.run(b.orders.tick(START + 5001)), ack.reason.startswith("stale: expired"))
""".replace("START", str(START))


def test_a_pending_order_that_expired_before_it_opened_is_refused(tmp_path: Path) -> None:
    # before: a pending order was executed whenever its window opened, without looking at its
    # end: after the clock stepped forward past valid_until (an NTP correction, a board clock
    # far behind the coordinator's) the board applied setpoints meant for an interval long gone
    board(tmp_path)
    got = run(tmp_path, STALE_WHEN_OPENED)
    # refused with a signed ack saying why, counted, nothing written to the inverter, not retried
    assert got == ["0", "1", "2", "None", "True", "1", "None", "True"], got


REBOOT_WHILE_PENDING = r"""
early = order(1, START, valid_from=START + 30, bat_w=1000)  # sent 30 s ahead of its interval
b._on_message(T, early)
first = inbox(START)  # held until it takes effect
b._on_message(T, early)  # the same order again (QoS 1 redelivery): already scheduled, no ack
again = inbox(START + 1)
b._on_message(T, order(0, START, valid_from=START + 30, bat_w=2000))
older = inbox(START + 2)  # an older order while one is pending: refused as a replay
# the board reboots in the window: only what it persisted survives; the broker hands it the
# retained order again
hw2 = FakeHardware(cfg, lambda now: 500)
b2 = app.Board(cfg, settings, hw2, SimClock(START + 10, 1))
b = b2
b._on_message(T, early)
after = inbox(START + 10)
a = asyncio.run(b.orders.tick(START + 30))
ack = frame.open_frame(a[0], a[1], lambda m: crypto.Verifier(b.key.public))
print("RESULT", len(first), len(again), older[0].status, ack.oseq, ack.status, hw2.slave.regs.get(100),
      b.regs.last_oseq)
""".replace("START", str(START))


def test_an_order_sent_ahead_survives_a_reboot_before_it_takes_effect(tmp_path: Path) -> None:
    # before: the board persisted an early order's number when it arrived but held the order in
    # memory only, so after a reboot in the window the redelivered order was refused as replayed
    # and the interval ran on the safe defaults
    board(tmp_path)
    got = run(tmp_path, REBOOT_WHILE_PENDING)
    rejected, applied = "2", "0"
    assert got[:3] == ["0", "0", rejected], got
    assert got[3:5] == ["1", applied] and got[5] == "100" and got[6] == "1", got  # 1000 W / 10
