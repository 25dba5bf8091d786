"""A member's flexible devices from its preferences (:class:`coordinator.members.MemberPrefs`,
which describes the keys), and their :class:`Assets` for one interval.

Pure: the dispatcher passes in the state of charge and the planned setpoints.
"""

from __future__ import annotations

from dataclasses import dataclass

from coordinator.delivery.assets import Assets, Costs
from coordinator.members import PER_MILLE, MemberPrefs


def next_time(start: int, seconds_of_day: int) -> int:
    """The first time at or after ``start`` (Unix s) whose time of day (UTC) is ``seconds_of_day``."""
    t = start - start % 86_400 + seconds_of_day
    return t if t >= start else t + 86_400


@dataclass(frozen=True)
class Devices:
    member: str
    costs: Costs
    battery: tuple[int, int, int, int] | None = None  # capacity mWh, charge W, discharge W, min mWh
    ev: tuple[int, int, int] | None = None  # charge W, phases, target soc per-mille (market EV)
    deferrable: tuple[int, int, int, int] | None = None  # W, relay, from hour, until hour
    flex_price: dict[str, int] | None = None
    ev_capacity: int = 0  # a market EV's battery, mWh (its state of charge is the board's bat_soc)

    def battery_mwh(self, soc: int | None) -> int | None:
        """The battery's stored energy (mWh) at ``soc`` per-mille; None without a battery or a reading."""
        if self.battery is None or soc is None:
            return None
        return self.battery[0] * soc // 1000

    def ev_need(self, soc: int) -> int:
        """mWh a market EV at ``soc`` per-mille still needs to reach its target state of charge."""
        if self.ev is None:
            return 0
        return max(0, self.ev_capacity * (self.ev[2] - soc) // 1000)

    @classmethod
    def from_prefs(cls, member: str, prefs: MemberPrefs, *, feed_in: int) -> Devices:
        """The devices of ``member`` (PV costs default to the feed-in tariff ``feed_in``)."""
        fx = prefs.flex
        d = Costs(pv=feed_in)
        costs = d
        flex_price = None
        if fx is not None:
            costs = Costs(
                pv=d.pv if fx.pv is None else fx.pv,
                battery=d.battery if fx.battery is None else fx.battery,
                ev=d.ev if fx.ev is None else fx.ev,
                load=d.load if fx.load is None else fx.load,
            )
            if fx.price is not None:
                flex_price = dict.fromkeys(("pv", "battery", "ev", "load"), fx.price)
        battery = ev = deferrable = None
        ev_capacity = 0
        st = prefs.storage
        if st is not None and st.is_ev:
            ev = (st.max_charge_w, st.phases, st.target_soc)
            ev_capacity = st.capacity_mwh
        elif st is not None:
            cap = st.capacity_mwh
            battery = (cap, st.max_charge_w, st.max_discharge_w, cap * st.min_soc // PER_MILLE)
        if prefs.ev is not None:  # an integrator home's EV beside its battery
            ev = (prefs.ev.max_charge_w, prefs.ev.phases, PER_MILLE)
        df = prefs.deferrable
        if df is not None:
            deferrable = (df.w, df.relay, df.hours[0], df.hours[1])
        return cls(member, costs, battery, ev, deferrable, flex_price, ev_capacity)

    def ask(self, kind: str) -> int:
        """What the member asks per kWh of flexibility from ``kind`` (mc/kWh)."""
        if self.flex_price is not None:
            return self.flex_price[kind]
        return self.costs.of(kind)

    def load_on(self, start: int) -> int:
        """The deferrable load's power in the interval starting at ``start`` (W; 0 outside its hours)."""
        if self.deferrable is None:
            return 0
        w, _, a, b = self.deferrable
        h = start % 86_400 // 3600
        on = a <= h < b if a <= b else (h >= a or h < b)
        return w if on else 0

    def assets(
        self,
        board: str,
        start: int,
        length: int,
        *,
        export_w: int,
        soc: int | None = None,
        bat_w: int = 0,
        ev_w: int = 0,
        ev_need: int = 0,
        ev_deadline: int | None = None,
        load_w: int | None = None,
    ) -> Assets:
        """The board's assets for the interval: ``export_w`` expected export (PV limit range),
        ``soc`` the battery's mWh, ``bat_w``/``ev_w`` the planned setpoints, ``ev_need`` the mWh the
        EV still needs by ``ev_deadline``."""
        per = length * 10 // 36  # mWh per W over the interval
        charge = discharge = 0
        if self.battery is not None and soc is not None:
            cap, cw, dw, lo = self.battery
            charge = min(cw, max(0, cap - soc) // per)
            discharge = min(dw, max(0, soc - lo) // per)
        bat = min(charge, max(-discharge, bat_w))
        ev_max = ev_min = 0
        phases = 1
        if self.ev is not None and ev_need > 0:
            cw, phases, _ = self.ev
            ev_max = min(cw, -(-ev_need // per))
            if ev_deadline is not None:
                later = max(0, (ev_deadline - start) // length - 1)
                ev_min = min(ev_max, -(-max(0, ev_need - cw * per * later) // per))
        ev = min(ev_max, max(ev_min, ev_w))
        load = self.load_on(start) if load_w is None else load_w
        relay = self.deferrable[1] if self.deferrable is not None else 0
        return Assets(
            board,
            pv_w=max(0, export_w),
            bat_w=bat,
            bat_charge_w=charge,
            bat_discharge_w=discharge,
            ev_w=ev,
            ev_min_w=ev_min,
            ev_max_w=ev_max,
            ev_phases=max(1, min(3, phases)),
            load_w=load,
            load_relay=relay,
            costs=self.costs,
        )
