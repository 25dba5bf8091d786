"""``python -m bench.reliability [--long] [--only faults|attacks|fuzz] [--inputs N]``: the
reliability report. Exit status 1 if a reading was lost or double-counted, an attack was
accepted, or a fuzz input crashed a path."""

from __future__ import annotations

import argparse
import sys
import time

from bench.reliability import attacks, faults, fuzz
from bench.table import machine

PARTS = ("faults", "attacks", "fuzz")
SHORT_INPUTS = 20_000
LONG_INPUTS = 1_000_000


def report_faults(reps: list[faults.FaultReport]) -> tuple[list[str], bool]:
    lines = ["fault injection (boards -> link -> Mosquitto -> ingest process -> SQLite)"]
    cols = ("sent", "deliv.", "stored", "stale", "lost", "double")
    lines.append(f"  {'scenario':<58}" + "".join(f" {c:>6}" for c in cols) + "  energy")
    ok = True
    for r in reps:
        ok &= r.ok
        nums = (r.sent, r.delivered, r.stored, r.stale, r.lost, r.double)
        energy = "final registers" if r.energy_ok else "ENERGY LOST"
        lines.append(f"  {r.scenario:<58}" + "".join(f" {n:>6}" for n in nums) + f"  {energy}")
        refused = ", ".join(f"{n} {c}" for c, n in sorted(r.refused.items())) or "none"
        lines.append(f"    {'; '.join(r.faults) or 'no faults'}; refused: {refused} ({r.seconds:.1f} s)")
    lines.append("  stale: delivered after a newer reading of the same board, refused; its energy is in the")
    lines.append("  newer reading's cumulative registers. lost and double must be 0.")
    return lines, ok


def report_attacks(rep: list[attacks.Attack]) -> tuple[list[str], bool]:
    lines = ["forged, replayed, cross-topic and stale messages"]
    for a in rep:
        verdict = f"refused ({a.reason})" if a.refused else "ACCEPTED"
        lines.append(f"  {a.target:<20} {a.name:<62} {verdict}")
    return lines, all(a.refused for a in rep)


def report_fuzz(reps: list[fuzz.TargetReport]) -> tuple[list[str], bool]:
    total = sum(r.inputs for r in reps)
    lines = [f"fuzzing ({total:,} inputs)"]
    ok = True
    for r in reps:
        ok &= r.crashes == 0
        lines.append(
            f"  {r.name:<52} {r.inputs:>9,} inputs  {r.accepted:>7,} accepted  "
            f"{sum(r.rejected.values()):>9,} rejected  {r.crashes} crashes  ({r.seconds:.1f} s)"
        )
        top = r.rejected.most_common(8)
        for reason, n in top:
            lines.append(f"      {n:>9,}  {reason}")
        if len(r.rejected) > len(top):
            rest = sum(r.rejected.values()) - sum(n for _, n in top)
            lines.append(f"      {rest:>9,}  ({len(r.rejected) - len(top)} other reasons)")
        lines.extend(f"      CRASH {c}" for c in r.crash_examples)
    return lines, ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.reliability")
    p.add_argument("--long", action="store_true", help="every fault alone and together; 1M fuzz inputs")
    p.add_argument("--only", action="append", choices=PARTS)
    p.add_argument("--inputs", type=int, help="fuzz inputs in all (default 20,000; 1,000,000 with --long)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    parts = args.only or list(PARTS)
    t0 = time.perf_counter()
    print(f"peergrid reliability report on {machine()}{' (long)' if args.long else ''}", flush=True)
    ok = True
    if "faults" in parts:
        lines, good = report_faults(faults.run(args.long))
        print("\n".join(lines), flush=True)
        ok &= good
    if "attacks" in parts:
        lines, good = report_attacks(attacks.run())
        print("\n".join(lines), flush=True)
        ok &= good
    if "fuzz" in parts:
        n = args.inputs or (LONG_INPUTS if args.long else SHORT_INPUTS)
        lines, good = report_fuzz(fuzz.run(n, args.seed))
        print("\n".join(lines), flush=True)
        ok &= good
    print(f"{'OK' if ok else 'FAILED'} ({time.perf_counter() - t0:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
