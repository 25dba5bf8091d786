"""What each board is to do in an interval (:class:`Target`), as the delivery check sees the
targets (the expected schedule and every board's assets) and as its changes amend them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from coordinator.delivery.assets import Assets, Costs, ev_ma
from coordinator.delivery.devices import next_time
from coordinator.delivery.dispatch.view import StepView
from coordinator.site import Site

if TYPE_CHECKING:  # the grid check needs numpy/pandapower (the sim extra); dispatch does not
    from coordinator.delivery.guard import Change


@dataclass
class Target:
    """What a board is to do in an interval, while the step assembles it."""

    party: str
    bat_w: int | None = None  # + charge
    ev_w: int | None = None
    phases: int = 1
    pv_limit_w: int | None = None
    relay_mask: int = 0
    relay_state: int = 0
    ev_need: int = 0  # integrator EV: mWh still to charge by ``ev_deadline``
    ev_deadline: int | None = None
    integrated: bool = False  # set by an integrator plan, which weighs flexibility orders itself

    def power_w(self) -> int:
        """The storage power of the setpoint (W, + charge), as ``Setpoint.bat_w`` reports it."""
        return self.bat_w if self.bat_w is not None else self.ev_w or 0

    def switch_off(self, relay: int) -> None:
        bit = 1 << relay
        self.relay_mask |= bit
        self.relay_state &= ~bit

    def setpoints(self) -> dict[str, int | None]:
        return {
            "bat_w": self.bat_w,
            "ev_ma": None if self.ev_w is None else ev_ma(self.ev_w, self.phases),
            "pv_limit_w": self.pv_limit_w,
            "relay_mask": self.relay_mask,
            "relay_state": self.relay_state,
        }


def grid_input(
    site: Site, start: int, targets: dict[str, Target], view: StepView
) -> tuple[dict[str, int], dict[str, Assets]]:
    """The expected schedule (W per board, + export) with the targets in it (clipped to what each
    device allows, the targets with them), and each board's assets."""
    sched: dict[str, int] = {}
    assets: dict[str, Assets] = {}
    for board, measured in view.expected.items():
        last = view.latest.get(board)
        t = targets.get(board)
        # the devices' power over the forecast interval leaves the forecast (their newest power when
        # no reading of theirs is in it); their new setpoints enter it
        if board in view.device_w:
            e = measured + view.device_w[board]
        else:
            e = measured + ((last.bat_p or 0) + (last.ev_p or 0) if last is not None else 0)
        if t is not None:
            e -= (t.bat_w or 0) + (t.ev_w or 0)
        entry = view.devices.get(board)
        if entry is None:
            sched[board] = e
            if e > 0:
                assets[board] = Assets(board, pv_w=e, costs=Costs(pv=site.tariff.feed_in))
            continue
        dev = entry.devices
        soc = dev.battery_mwh(None if last is None else last.bat_soc)
        ev_need = 0
        deadline = None
        st = entry.member.prefs.storage
        if (
            dev.ev is not None
            and st is not None
            and st.is_ev
            and last is not None
            and last.bat_soc is not None
        ):
            ev_need = dev.ev_need(last.bat_soc)
            deadline = None if st.departure is None else next_time(start + 1, st.departure)
        elif dev.ev is not None and t is not None and t.ev_need:
            ev_need, deadline = t.ev_need, t.ev_deadline
        off = t is not None and dev.deferrable is not None and t.relay_mask >> dev.deferrable[1] & 1
        a = dev.assets(
            board,
            start,
            site.length,
            export_w=e,
            soc=soc,
            bat_w=t.bat_w or 0 if t is not None else 0,
            ev_w=t.ev_w or 0 if t is not None else 0,
            ev_need=ev_need,
            ev_deadline=deadline,
            load_w=0 if off else None,
        )
        if t is not None:  # what the state of charge and the EV's need allow
            planned = (t.bat_w or 0) + (t.ev_w or 0)
            t.bat_w = None if t.bat_w is None else a.bat_w
            t.ev_w = None if t.ev_w is None else a.ev_w
            e += planned - (t.bat_w or 0) - (t.ev_w or 0)
        sched[board] = e
        assets[board] = a
    return sched, assets


def apply_changes(
    targets: dict[str, Target], changes: list[Change], assets: dict[str, Assets], view: StepView
) -> None:
    """Merge the delivery check's changes into the boards' targets."""
    for c in changes:
        t = targets.setdefault(c.board, Target(view.member_of(c.board)))
        a = assets[c.board]
        if c.kind == "pv_limit":
            t.pv_limit_w = max(0, c.setpoint)
        elif c.kind == "battery":
            t.bat_w = c.setpoint
        elif c.kind == "ev":
            t.ev_w = a.ev_w - c.delta_w
            t.phases = a.ev_phases
        elif c.kind == "load":
            t.switch_off(a.load_relay)
