"""``peergrid demo``: a community end to end, a simulated day at high speed.

It starts the embedded MQTT broker (or uses a given one, or starts a local Mosquitto), a
coordinator (the real ingest service, interval loop and dispatch on a SQLite ledger) and a
community of virtual meter boards from a scenario (default: the Quartierstrom-like neighbourhood,
sim/scenarios/). Each board signs cumulative readings of its home's metered net power (BDEW H0
household load, clear-sky PV, EVs, batteries); the coordinator verifies and stores every frame,
refuses three bad ones the demo sends (forged, replayed, moved to another board's topic), clears
and settles every interval, and the demo prints the community's self-sufficiency, local trade,
prices and each member's bill, checks the invariants (every reading stored once, energy and money
conserved, ledger verify clean), and writes plots and an HTML report to the output directory.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from coordinator.service.mqtt import BrokerAddress

DEFAULT_SCENARIO = "quartierstrom"
DEMO_ATTACKS = {"bad_signature": 1, "replay": 1, "wrong_topic": 1}


@dataclass
class DemoResult:
    accepted: int  # readings stored once
    expected: int  # readings the boards signed
    rejected: dict[str, int]
    expected_rejections: dict[str, int]
    intervals: int
    money_sum: int
    problems: list[str]
    figures: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    faults: bool = False  # with --faults: late, stale and duplicate frames are expected and accounted

    @property
    def ok(self) -> bool:
        if self.faults:  # the invariant report (problems) accounts every reading
            refused = all(self.rejected.get(c, 0) >= n for c, n in self.expected_rejections.items())
        else:
            refused = self.accepted == self.expected and self.rejected == self.expected_rejections
        return refused and self.money_sum == 0 and not self.problems and self.intervals > 0


class Progress:
    """A progress bar on a terminal; a few milestones otherwise."""

    def __init__(self, out: TextIO, start: int, duration: int) -> None:
        self.out = out
        self.tty = out.isatty()
        self.start = start
        self.duration = duration
        self.last = -1

    def __call__(self, done: float) -> None:
        pct = int(done * 100)
        t = time.strftime("%H:%M", time.gmtime(self.start + int(done * self.duration)))
        if self.tty:
            bar = "#" * (pct // 4) + "." * (25 - pct // 4)
            end = "\n" if pct >= 100 else ""
            print(f"\rsimulating [{bar}] {pct:3d}%  {t}", end=end, file=self.out, flush=True)
        elif pct // 25 > self.last // 25:
            print(f"simulating {pct:3d}%  {t}", file=self.out, flush=True)
        self.last = pct


async def run(
    *,
    broker: BrokerAddress | None = None,
    scenario: str = DEFAULT_SCENARIO,
    hours: float | None = None,
    homes: int | None = None,
    step_s: int | None = None,
    speedup: float | None = None,
    out_dir: Path | None = Path("peergrid-demo"),
    mosquitto: bool = False,
    boards: str | None = None,
    faults: bool = False,
    out: TextIO = sys.stdout,
) -> DemoResult:
    from sim import brokers, metrics, report
    from sim import scenario as scenarios
    from sim.errors import SimError
    from sim.faults import standard
    from sim.run import run as simulate

    sc = scenarios.load(scenario)
    if hours is not None or homes is not None:
        sc = sc.shorter(hours if hours is not None else sc.duration_s / 3600, homes=homes)
    if step_s is not None:
        sc = dataclasses.replace(sc, reading_s=step_s)
    if speedup is not None:
        sc = dataclasses.replace(sc, speedup=speedup)
    if boards is not None:
        sc = dataclasses.replace(sc, boards=boards)
    # frames the coordinator must refuse; MicroPython boards' frames never pass through this process,
    # so with them only a forged frame is sent
    mpy = sc.boards == "micropython"
    expected = {"bad_signature": 1} if mpy else DEMO_ATTACKS
    base = sc.faults
    if faults:
        if broker is None and not mosquitto:
            raise SimError("--faults restarts the broker and kills the coordinator: add --mosquitto")
        members = [h.member for h in sc.homes]
        base = standard(members, sc.duration_s, link=sc.boards == "virtual")
    attacks = dataclasses.replace(base, forged=1, replayed=0 if mpy else 1, moved=0 if mpy else 1)
    sc = dataclasses.replace(sc, faults=attacks)
    with tempfile.TemporaryDirectory(prefix="peergrid-demo-") as tmp:
        b: brokers.Broker
        if broker is not None:
            b, where = brokers.External(broker), "broker"
        elif mosquitto:
            b, where = brokers.Mosquitto(Path(tmp)), "Mosquitto"
        else:
            b, where = brokers.Embedded(), "embedded broker"
        head = (
            f"peergrid demo: {sc.title}\n"
            f"  {where} at {b.address.host}:{b.address.port}, {len(sc.homes)} boards, "
            f"{sc.duration_s / 3600:g} h ({sc.boards} boards) from "
            f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(sc.start))} UTC, "
            f"readings every {sc.reading_s} s, {sc.market.scheme} market every "
            f"{sc.market.interval_s // 60} min"
        )
        head += "\n  faults: " + "; ".join(sc.faults.describe())
        print(head, file=out, flush=True)
        res = await simulate(sc, b, Path(tmp), progress=Progress(out, sc.start, sc.duration_s))
    s = metrics.summarize(res)
    inv = res.invariants
    lines = [
        f"ran       {sc.duration_s / 3600:g} h in {res.wall_s:.1f} s ({res.speedup:,.0f}x real time), "
        f"{res.readings} signed readings stored, {len(res.clearings)} intervals settled",
        *res.events,
        *inv.lines(),
        *report.summary_lines(res, s),
        *report.bill_lines(res),
    ]
    result = DemoResult(
        accepted=inv.stored,
        expected=inv.sent,
        rejected=inv.refused,
        expected_rejections=expected,
        faults=faults,
        intervals=inv.intervals,
        money_sum=inv.money_sum,
        problems=inv.problems,
        figures={
            "self_sufficiency": s.self_sufficiency,
            "community_self_consumption": s.community_self_consumption,
            "individual_self_consumption": s.individual_self_consumption,
            "local_trade_share": s.local_trade_share,
        },
    )
    verdict = "OK" if result.ok else "UNEXPECTED"
    lines.append(
        f"summary   {verdict}: {result.accepted}/{result.expected} readings stored once"
        + (f" ({inv.stale} stale, {inv.queued} queued, {inv.lost} lost)" if faults else "")
        + f", {result.intervals} "
        f"intervals settled, money sums to {result.money_sum} across members, supplier and grid operator; "
        f"ledger verify: {sum(p.startswith('ledger verify') for p in inv.problems)} problems"
    )
    for ln in lines:
        print(ln, file=out)
    if out_dir is not None:
        result.files = report.write(out_dir, res, s, [head, *lines])
        print(f"wrote     {', '.join(p.name for p in result.files)} to {out_dir}/", file=out)
    return result
