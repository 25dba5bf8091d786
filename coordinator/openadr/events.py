"""An OpenADR 3 event read as what the coordinator does with it (pure: JSON in, actions out).

- ``targets``: a ``RESOURCE_NAME`` valuesMap names the congestion points (a feeder or bus of the
  community, or its grid id for the whole connection); without one the event is for the
  connection. A resource the community does not have is refused (:class:`UnknownResource`).
- ``IMPORT_CAPACITY_LIMIT`` / ``EXPORT_CAPACITY_LIMIT`` in an interval: a capacity limit on the
  resource for that interval (``units`` of the event's payloadDescriptor: ``KW`` (default) or
  ``W``).
- ``DISPATCH_SETPOINT_RELATIVE`` in an interval: a flexibility request, the relative change of
  consumption the operator buys (kW, or W): consumption reduced by that much (``reduce``), or
  raised when the interval also carries ``"PEERGRID_DIRECTION": ["increase"]``; ``PRICE`` in the
  same interval is the most it pays per kWh (in the currency of its descriptor, EUR or another
  decimal currency of 100 cents: 0.12 = 12000 mc/kWh). Consecutive intervals with the same power,
  price and direction are one request.

Interval times come from the interval's ``intervalPeriod`` or the event's; a start must be an
interval start of the community and a duration a whole number of its intervals.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from coordinator.openadr.errors import BadObject, UnknownResource

LIMITS = {"IMPORT_CAPACITY_LIMIT": "import", "EXPORT_CAPACITY_LIMIT": "export"}
FLEX = "DISPATCH_SETPOINT_RELATIVE"
PRICE = "PRICE"
DIRECTION = "PEERGRID_DIRECTION"
MC_PER_UNIT = 100_000  # milli-cent per currency unit (100 cents)
_DUR = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")


@dataclass(frozen=True)
class Window:
    start: int
    seconds: int


def seconds(d: object, where: str) -> int:
    """Seconds of an ISO 8601 duration such as ``PT15M`` or ``P1DT2H``."""
    m = _DUR.match(d) if isinstance(d, str) else None
    if m is None or d in ("P", "PT"):
        raise BadObject(f"{where}: duration {d!r} is not ISO 8601 (e.g. PT15M)")
    days, h, mi, s = (int(x or 0) for x in m.groups())
    return ((days * 24 + h) * 60 + mi) * 60 + s


def instant(t: object, where: str) -> int:
    if not isinstance(t, str):
        raise BadObject(f"{where}: start {t!r} is not a date-time")
    try:
        v = datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise BadObject(f"{where}: start {t!r} is not a date-time") from None
    if v.tzinfo is None:
        v = v.replace(tzinfo=datetime.UTC)
    return int(v.timestamp())


def local_id(event_id: str, k: int) -> str:
    """A request or limit id for the ``k``-th action of an event (ids of 1-64 [A-Za-z0-9_-])."""
    base = event_id if len(event_id) <= 48 else hashlib.sha256(event_id.encode()).hexdigest()[:40]
    return f"oadr-{base}-{k}"


def _period(p: object, where: str, default: Window | None) -> Window:
    if p is None:
        if default is None:
            raise BadObject(f"{where}: no intervalPeriod (neither the interval's nor the event's)")
        return default
    if not isinstance(p, dict):
        raise BadObject(f"{where}: intervalPeriod must be an object")
    start = instant(p.get("start"), where) if "start" in p else (default.start if default else None)
    if start is None:
        raise BadObject(f"{where}: intervalPeriod has no start")
    dur = seconds(p["duration"], where) if p.get("duration") else (default.seconds if default else 0)
    return Window(start, dur)


def _units(event: dict[str, Any]) -> dict[str, str]:
    out = {}
    for d in event.get("payloadDescriptors") or []:
        if isinstance(d, dict) and isinstance(d.get("payloadType"), str):
            out[d["payloadType"]] = str(d.get("units") or "").upper()
    return out


def _watts(v: object, units: str, where: str) -> int:
    if type(v) not in (int, float) or v < 0:  # type: ignore[operator]
        raise BadObject(f"{where}: value {v!r} must be a number >= 0")
    assert isinstance(v, int | float)
    if units in ("", "KW"):
        return round(v * 1000)
    if units == "W":
        return round(v)
    raise BadObject(f"{where}: units {units!r} (KW or W)")


def resources(event: dict[str, Any], known: set[str], grid: str) -> list[str]:
    names: list[str] = []
    for t in event.get("targets") or []:
        if isinstance(t, dict) and t.get("type") == "RESOURCE_NAME":
            names += [str(v) for v in t.get("values") or []]
    if not names:
        return [grid]
    unknown = sorted(set(names) - known)
    if unknown:
        raise UnknownResource(
            f"event {event.get('id')!r} targets resource {unknown[0]!r}, which this community does not "
            f"have (its resources: {', '.join(sorted(known))})"
        )
    return names


def actions(
    event: object, *, known: set[str], grid: str, length: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(capacity limits, flexibility requests) the event asks for, as the JSON the coordinator's
    :mod:`coordinator.p2s.limits` and :mod:`coordinator.p2s.requests` accept."""
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise BadObject(f"not an OpenADR event object: {str(event)[:80]!r}")
    eid = event["id"]
    where = f"event {eid!r}"
    intervals = event.get("intervals")
    if not isinstance(intervals, list):
        raise BadObject(f"{where}: intervals must be a list")
    default = _period(event["intervalPeriod"], where, None) if event.get("intervalPeriod") else None
    units = _units(event)
    res = resources(event, known, grid)
    limits: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for iv in intervals:
        if not isinstance(iv, dict) or not isinstance(iv.get("payloads"), list):
            raise BadObject(f"{where}: an interval must be an object with payloads")
        w = _period(iv.get("intervalPeriod"), f"{where} interval {iv.get('id')}", default)
        if w.start % length or w.seconds <= 0 or w.seconds % length:
            raise BadObject(
                f"{where} interval {iv.get('id')}: {w.start}+{w.seconds} s is not whole intervals of "
                f"{length} s"
            )
        values: dict[str, list[Any]] = {}
        for p in iv["payloads"]:
            if (
                not isinstance(p, dict)
                or not isinstance(p.get("type"), str)
                or not isinstance(p.get("values"), list)
            ):
                raise BadObject(f"{where}: a payload must be an object with type and values")
            values[p["type"]] = p["values"]
        for ptype, direction in LIMITS.items():
            if ptype in values and values[ptype]:
                w_lim = _watts(values[ptype][0], units.get(ptype, ""), where)
                for r in res:
                    limits.append(
                        {
                            "id": local_id(eid, len(limits)),
                            "resource": r,
                            "direction": direction,
                            "limit_w": w_lim,
                            "start": w.start,
                            "until": w.start + w.seconds,
                        }
                    )
        if FLEX in values and values[FLEX]:
            power = _watts(values[FLEX][0], units.get(FLEX, ""), where)
            price = values.get(PRICE) or [None]
            if type(price[0]) not in (int, float) or price[0] < 0:
                raise BadObject(f"{where}: a {FLEX} interval needs a PRICE >= 0 (the most paid per kWh)")
            cap = round(price[0] * MC_PER_UNIT)
            direction = "increase" if (values.get(DIRECTION) or [""])[0] == "increase" else "reduce"
            prev = runs[-1] if runs else None
            if (
                prev is not None
                and prev["end"] == w.start
                and (prev["power_w"], prev["price_cap"], prev["direction"]) == (power, cap, direction)
            ):
                prev["end"] = w.start + w.seconds
            else:
                runs.append(
                    {
                        "power_w": power,
                        "price_cap": cap,
                        "direction": direction,
                        "start": w.start,
                        "end": w.start + w.seconds,
                    }
                )
    requests = [
        {**run, "id": local_id(eid, k * len(res) + j), "congestion_point": r}
        for k, run in enumerate(runs)
        for j, r in enumerate(res)
        if run["power_w"] > 0
    ]
    return limits, requests
