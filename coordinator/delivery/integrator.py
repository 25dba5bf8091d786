"""Integrator mode: one home's PV, battery and EV run to stack local-market, tariff and
flexibility revenues (the Sonnen / Octopus-Tesla role), as a pure day-ahead plan.

Per interval the home has a forecast load and PV (W), an expected price to buy and to sell
(mc/kWh: the local market's expected clearing price, or retail / feed-in), and possibly a
flexibility request (reduce import by ``flex_w`` at ``flex_price``). The plan chooses:

- the EV's charging, which must deliver ``ev_need`` mWh between arrival and departure: the
  cheapest available intervals first (prices are per kWh, so this is optimal for the EV alone);
- the battery's power in ``levels`` steps each way, by dynamic programming over its state of
  charge between the member's reserve (``min_soc``) and its capacity, minimising the day's cost
  (imports at the buy price, exports at the sell price, minus flexibility paid for reducing
  import below the baseline of the plan without the battery).

Integers throughout: energy mWh, money nano-cent. Pure: no clock, no I/O.

:func:`first_step` is how the dispatcher runs an integrator home every interval: it plans the
horizon from the home's devices, state of charge, EV need and the expected prices, and sends the
first interval's battery and EV setpoints (receding horizon: the next interval plans again from
what was measured).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from coordinator.delivery.devices import Devices
from coordinator.errors import CoordinatorError

MAX_SLOTS = 96  # longest window planned at once


class PlanError(CoordinatorError):
    """Inputs that cannot make a plan (lengths differ, impossible EV demand, ...)."""


@dataclass(frozen=True)
class Slot:
    load_w: int
    pv_w: int
    buy: int  # mc/kWh to import
    sell: int  # mc/kWh earned for export
    flex_w: int = 0  # requested import reduction, W
    flex_price: int = 0  # mc/kWh paid for it


@dataclass(frozen=True)
class Home:
    capacity: int  # battery, mWh
    soc: int  # mWh now
    max_w: int  # battery charge/discharge power
    ev_need: int = 0  # mWh the EV must get
    ev_max_w: int = 0
    ev_from: int = 0  # first slot the EV is plugged in
    ev_until: int = 0  # slot it leaves at (exclusive)
    floor: int = 0  # battery reserve (the member's ``min_soc``), mWh: the plan never discharges below it


@dataclass(frozen=True)
class Plan:
    battery_w: list[int]
    ev_w: list[int]
    soc: list[int]  # mWh after each slot
    cost: int  # nano-cent (negative: revenue)


def _mwh(w: int, s: int) -> int:
    return w * s * 10 // 36


def slot_cost(net: int, slot: Slot, baseline: int) -> int:
    """Cost of a slot's net import ``net`` (mWh, export < 0), with flexibility paid for import
    below ``baseline`` up to the requested amount."""
    c = net * slot.buy if net > 0 else net * slot.sell
    if slot.flex_w and slot.flex_price:
        return c - max(0, min(baseline - net, slot.flex_w)) * slot.flex_price
    return c


def ev_schedule(home: Home, slots: Sequence[Slot], length: int) -> list[int]:
    """EV power per slot: the cheapest plugged-in slots first until the need is met."""
    out = [0] * len(slots)
    if not home.ev_need:
        return out
    per = _mwh(home.ev_max_w, length)
    window = [k for k in range(home.ev_from, min(home.ev_until, len(slots)))]
    if per * len(window) < home.ev_need:
        raise PlanError(f"the EV cannot get {home.ev_need} mWh in {len(window)} slots at {home.ev_max_w} W")
    left = home.ev_need
    for k in sorted(window, key=lambda k: (slots[k].buy, k)):
        if left <= 0:
            break
        e = min(per, left)
        out[k] = e * 36 // (length * 10) + (1 if e * 36 % (length * 10) else 0)
        left -= _mwh(out[k], length)
    return out


def plan(home: Home, slots: Sequence[Slot], length: int = 900, levels: int = 4, end_value: int = 0) -> Plan:
    """The day's plan. ``end_value`` (mc/kWh) is what energy left in the battery at the end is worth
    (0: nothing; the dispatcher passes the sell price, so the battery is not emptied for nothing)."""
    if not slots:
        raise PlanError("no slots to plan")
    if not 0 <= home.soc <= home.capacity or home.max_w < 0 or levels < 1:
        raise PlanError("battery state of charge must be within 0..capacity, power >= 0, levels >= 1")
    if not 0 <= home.floor <= home.capacity:
        raise PlanError(f"battery reserve {home.floor} mWh must be within 0..capacity ({home.capacity})")
    ev = ev_schedule(home, slots, length)
    step_w = home.max_w // levels
    step_e = _mwh(step_w, length)
    base = [_mwh(s.load_w - s.pv_w + e, length) for s, e in zip(slots, ev, strict=True)]
    if step_e == 0:
        cost = sum(slot_cost(b, s, b) for b, s in zip(base, slots, strict=True))
        return Plan([0] * len(slots), ev, [home.soc] * len(slots), cost)
    # states: state of charge on a grid of step_e from the current soc, never below the reserve
    # (a battery already under it, after a reboot or a manual discharge, may only charge)
    lo = -(max(0, home.soc - home.floor) // step_e)
    hi = (home.capacity - home.soc) // step_e
    inf = float("inf")
    best: dict[int, tuple[float, list[int]]] = {0: (0, [])}
    for k, s in enumerate(slots):
        nxt: dict[int, tuple[float, list[int]]] = {}
        for state, (c, moves) in best.items():
            for m in range(-levels, levels + 1):
                st = state + m
                if not lo <= st <= hi:
                    continue
                cc = c + slot_cost(base[k] + m * step_e, s, base[k])
                if cc < nxt.get(st, (inf, []))[0]:
                    nxt[st] = (cc, moves + [m])
        best = nxt
    final = min(best.items(), key=lambda kv: (kv[1][0] - (home.soc + kv[0] * step_e) * end_value, -kv[0]))
    moves = final[1][1]
    soc = []
    x = home.soc
    for m in moves:
        x += m * step_e
        soc.append(x)
    return Plan([m * step_w for m in moves], ev, soc, int(final[1][0]))


def first_step(
    expected_export_w: int,
    devices: Devices,
    soc: int | None,
    ev_need: int,
    ev_slots: int,
    *,
    horizon: int,
    length: int,
    buy: int,
    sell: int,
    flex: tuple[int, int] = (0, 0),
) -> tuple[int, int]:
    """(battery W + charge, EV W) for the coming interval of an integrator home.

    ``expected_export_w``: the home's net export without its battery and EV (persistence);
    ``ev_need`` mWh by the end of slot ``ev_slots``; ``flex``: an active flexibility order on the
    home (W of import reduction, mc/kWh), which the plan weighs against its other revenues."""
    if horizon < 1:
        raise PlanError("horizon must be at least one interval")
    n = max(1, min(ev_slots, MAX_SLOTS)) if ev_need else horizon  # the EV: its whole window
    flex_e = _mwh(flex[0], length)
    slots = [
        Slot(
            max(0, -expected_export_w), max(0, expected_export_w), buy, sell, flex_e if k == 0 else 0, flex[1]
        )
        for k in range(n)
    ]
    cap = max_w = floor = 0
    now = 0
    if devices.battery is not None and soc is not None:
        cap, cw, dw, floor = devices.battery
        max_w = min(cw, dw)
        now = min(cap, max(0, soc))
    ev_w = ev_max = 0
    if devices.ev is not None and ev_need > 0:
        ev_max = devices.ev[0]
        per = _mwh(ev_max, length)
        need = max(0, ev_need - per * max(0, ev_slots - n))  # what the slots after the horizon cannot take
        need = min(need, per * n)
        ev_w = 1
    else:
        need = 0
    home = Home(cap, now, max_w, need, ev_max, 0, n if ev_w else 0, min(floor, cap))
    p = plan(home, slots, length, end_value=sell)
    return p.battery_w[0], p.ev_w[0]
