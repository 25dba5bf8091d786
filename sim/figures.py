"""A scenario's energy figures over a year, from the physics alone (no network, no market: who pays
whom does not change where the energy flows): ``python -m sim.figures quartierstrom [--profiles
simbench] [--every 7]``. Every ``every``-th day of the scenario's year is simulated minute by minute
and netted per market interval, as settlement nets it; the figures are those of sim/metrics.py.
"""

from __future__ import annotations

import argparse
import calendar
import dataclasses
import sys
import time
from dataclasses import dataclass

from sim.profiles import STEP_S, home_physics
from sim.scenario import Scenario, load


@dataclass(frozen=True)
class Year:
    days: int
    load: int  # mWh over the sampled days
    pv: int
    grid_imp: int
    grid_exp: int
    home_exp: int  # each home netting alone

    @property
    def self_sufficiency(self) -> float:
        return 1 - self.grid_imp / self.load

    @property
    def community_self_consumption(self) -> float:
        return 1 - self.grid_exp / self.pv if self.pv else 0.0

    @property
    def individual_self_consumption(self) -> float:
        return 1 - self.home_exp / self.pv if self.pv else 0.0


def year(sc: Scenario, every: int = 7, months: tuple[int, ...] = ()) -> Year:
    y = time.gmtime(sc.start).tm_year
    jan1 = calendar.timegm((y, 1, 1, 0, 0, 0))
    per = sc.market.interval_s // STEP_S
    n = 86_400 // STEP_S
    load = pv = imp = exp = home_exp = days = 0
    for d in range(0, 365, every):
        day = jan1 + d * 86_400
        if months and time.gmtime(day).tm_mon not in months:
            continue
        days += 1
        nets = []
        for h in sc.homes:
            ph = home_physics(sc, h, start=day, n=n + 1)
            load += sum(ph.load_w[1:]) * STEP_S * 1000 // 3600
            pv += sum(ph.pv_w[1:]) * STEP_S * 1000 // 3600
            net = [ph.load_w[k] - ph.pv_w[k] for k in range(1, n + 1)]
            per_int = [sum(net[i : i + per]) * STEP_S * 1000 // 3600 for i in range(0, n, per)]
            home_exp += sum(-x for x in per_int if x < 0)
            nets.append(per_int)
        for i in range(len(nets[0])):
            c = sum(x[i] for x in nets)
            imp += max(c, 0)
            exp += max(-c, 0)
    return Year(days, load, pv, imp, exp, home_exp)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.figures")
    p.add_argument("scenario")
    p.add_argument(
        "--profiles", choices=["bdew", "simbench"], help="physics source (default: the scenario's)"
    )
    p.add_argument("--every", type=int, default=7, help="simulate every N-th day of the year")
    p.add_argument("--months", help="only these months, e.g. 1-6")
    args = p.parse_args(argv)
    sc = load(args.scenario)
    if args.profiles:
        sc = dataclasses.replace(sc, profiles=args.profiles)
    months: tuple[int, ...] = ()
    if args.months:
        a, _, b = args.months.partition("-")
        months = tuple(range(int(a), int(b or a) + 1))
    t0 = time.monotonic()
    r = year(sc, args.every, months)
    print(
        f"{sc.name} ({sc.profiles} profiles, {r.days} days sampled, {time.monotonic() - t0:.0f} s): "
        f"consumption {r.load / 1e9 * 365 / r.days:.0f} MWh/a, "
        f"generation {r.pv / 1e9 * 365 / r.days:.0f} MWh/a; "
        f"self-sufficiency {r.self_sufficiency:.1%}, PV used in the community "
        f"{r.community_self_consumption:.1%}, each home alone {r.individual_self_consumption:.1%} "
        f"(x{r.community_self_consumption / max(r.individual_self_consumption, 1e-9):.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
