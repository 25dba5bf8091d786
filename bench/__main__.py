"""Run every benchmark and print one table: ``python -m bench [--ci] [--only NAME]``."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from bench.table import machine, render

# One module per suite, each with ``run(ci: bool) -> list[bench.table.Row]``; add a suite here.
SUITES = ["crypto", "firmware", "clearing", "ingest", "orders", "grid", "year", "sim", "ocpp"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--ci", action="store_true", help="small sizes: check that benchmarks run")
    p.add_argument("--only", action="append", choices=SUITES, help="run only these suites")
    args = p.parse_args(argv)
    rows = []
    t0 = time.perf_counter()
    for name in args.only or SUITES:
        mod = importlib.import_module(f"bench.{name}")
        rows.extend(mod.run(args.ci))
    print(f"peergrid benchmarks on {machine()}{' (CI size)' if args.ci else ''}")
    print(render(rows))
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
