"""Redispatch: when the cleared schedule would break a grid limit, change the fewest, cheapest
flexible setpoints that bring it back, and say why each one changed.

A board may list one resource per kind and direction (a battery can both charge more and
discharge more; which one helps depends on the constraint).

Works on the linear model of the delivery screen: each constraint (a bus voltage or a line's
loading) has a value for the schedule, a limit, and a sensitivity to a 1 W change of injection at
each connection bus. Each flexible resource (PV export limit, battery, EV current, a deferrable
load) can move its bus's injection by up to ``max_w`` in one direction at a cost per kWh (what
the member loses: e.g. the local price of the curtailed export). The cheapest effect per unit of
cost goes first; constraints are revisited until none is violated or nothing is left (then the
remaining violation is reported, never hidden). Pure; the AC power flow confirms the result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from coordinator.errors import CoordinatorError


class RedispatchError(CoordinatorError):
    """Inputs that cannot be redispatched (unknown bus, bad limits)."""


@dataclass(frozen=True)
class Constraint:
    name: str  # e.g. "v:bus R11" or "line:R1-R2"
    value: float  # for the schedule (pu or percent loading)
    limit: float  # upper limit (for a lower-voltage limit pass negated value, limit and sensitivities)
    sens: Mapping[str, float]  # d value / d injection (W) at each connection bus


@dataclass(frozen=True)
class Resource:
    board: str
    bus: str
    kind: str  # "pv_limit" | "battery" | "ev" | "load"
    max_w: int  # how far its injection can move, W (> 0)
    direction: int  # +1: can raise injection (discharge, shed load); -1: can lower it (curtail PV, charge)
    cost: int  # mc/kWh of the change


@dataclass(frozen=True)
class Adjustment:
    board: str
    kind: str
    delta_w: int  # change of injection at its bus (+ more export / less import)
    reason: str
    cost: int  # nano-cent for the interval


@dataclass
class Result:
    adjustments: list[Adjustment] = field(default_factory=list)
    remaining: dict[str, float] = field(default_factory=dict)  # constraints still violated: excess

    @property
    def ok(self) -> bool:
        return not self.remaining


def redispatch(
    constraints: Sequence[Constraint], resources: Sequence[Resource], length: int = 900, rounds: int = 10
) -> Result:
    keys = [(r.board, r.kind, r.direction) for r in resources]
    if len(set(keys)) != len(keys):
        raise RedispatchError("a resource (board, kind, direction) is listed twice")
    for r in resources:
        if r.max_w <= 0 or r.direction not in (1, -1) or r.cost < 0:
            raise RedispatchError(f"resource {r.board}/{r.kind}: max_w > 0, direction +-1, cost >= 0")
    values = {c.name: c.value for c in constraints}
    left = {(r.board, r.kind, r.direction): r.max_w for r in resources}
    used: dict[tuple[str, str, int], int] = {}
    why: dict[tuple[str, str, int], list[str]] = {}
    for _ in range(rounds):
        worst = max(constraints, key=lambda c: values[c.name] - c.limit, default=None)
        if worst is None or values[worst.name] <= worst.limit:
            break
        excess = values[worst.name] - worst.limit
        options = []
        for r in resources:
            s = worst.sens.get(r.bus, 0.0) * r.direction  # effect of 1 W in the resource's direction
            if s < 0 and left[(r.board, r.kind, r.direction)] > 0:
                options.append(((r.cost + 1) / -s, r, -s))
        if not options:
            break
        for _, r, eff in sorted(options, key=lambda o: (o[0], o[1].board, o[1].kind, o[1].direction)):
            key = (r.board, r.kind, r.direction)
            w = min(left[key], int(excess / eff) + 1)
            left[key] -= w
            used[key] = used.get(key, 0) + w
            why.setdefault(key, []).append(f"{worst.name} {values[worst.name]:.4f} > {worst.limit:.4f}")
            for c in constraints:  # linear update of every constraint
                values[c.name] += c.sens.get(r.bus, 0.0) * r.direction * w
            excess = values[worst.name] - worst.limit
            if excess <= 0:
                break
    res = Result()
    for r in resources:
        key = (r.board, r.kind, r.direction)
        if key in used:
            w = used[key]
            res.adjustments.append(
                Adjustment(
                    r.board,
                    r.kind,
                    r.direction * w,
                    "; ".join(dict.fromkeys(why[key])),
                    w * length * 10 // 36 * r.cost,
                )
            )
    res.remaining = {c.name: values[c.name] - c.limit for c in constraints if values[c.name] > c.limit}
    return res
