"""What a run leaves behind: a text summary, SVG plots and an HTML report in an output directory."""

from __future__ import annotations

import json
import time
from html import escape
from pathlib import Path

from coordinator.market import DSO, PLATFORM, SUPPLIER
from coordinator.transaction import billing
from sim import svg
from sim.metrics import Summary
from sim.run import RunResult


def _hm(ts: int) -> str:
    return time.strftime("%H:%M", time.gmtime(ts))


def summary_lines(r: RunResult, s: Summary) -> list[str]:
    sc = r.scenario
    price = _currency(r).price(s.local_price) if s.local_price is not None else "-"
    out = [
        f"community {len(sc.homes)} members, {sum(h.pv_wp for h in sc.homes) / 1000:.1f} kWp PV, "
        f"consumption {s.load / 1e6:.1f} kWh, generation {s.pv / 1e6:.1f} kWh",
        f"grid      import {s.grid_imp / 1e6:.1f} kWh, export {s.grid_exp / 1e6:.1f} kWh; local trade "
        f"{s.traded / 1e6:.1f} kWh",
        f"result    self-sufficiency {s.self_sufficiency:.1%}; PV used in the community "
        f"{s.community_self_consumption:.1%} (each home alone: {s.individual_self_consumption:.1%}, "
        f"x{s.local_pv_factor:.2f})",
        f"          local trade share {s.local_trade_share:.1%} of members' imports; average local price "
        f"{price} (retail {sc.market.retail / 1000:.2f}, feed-in {sc.market.feed_in / 1000:.2f})",
    ]
    if r.grid:
        peak = max(r.grid, key=lambda g: g.line_pct)
        out.append(
            f"grid      peak line loading {peak.line_pct:.0f}% ({peak.line}, {_hm(peak.start)}), transformer "
            f"{max(g.trafo_pct for g in r.grid):.0f}%, voltages {min(g.v_min_pu for g in r.grid):.3f}-"
            f"{max(g.v_max_pu for g in r.grid):.3f} pu"
        )
        out.extend(_delivery_lines(r))
    for f in r.flex:
        out.append(
            f"flex      {f.request.request_id} on {f.request.congestion_point}: {f.ordered_w / 1000:.1f} kW "
            f"ordered, {f.delivered_mwh / 1e6:.2f} of {f.ordered_mwh / 1e6:.2f} kWh delivered, paid "
            f"{_money(f.paid, _currency(r)).strip()}"
        )
    return out


def _delivery_lines(r: RunResult) -> list[str]:
    """The delivery check's record beside the intervals whose metered flows broke the grid's limits."""
    beyond = sum(g.violations > 0 for g in r.grid)
    d = r.delivery
    if d is None:
        return [
            f"delivery  check off: {beyond} of {len(r.grid)} intervals beyond limits in the metered flows"
        ]
    unapplied = "" if r.scenario.boards == "virtual" else " (firmware boards: setpoints not in the physics)"
    return [
        f"delivery  {d.redispatches} redispatches in {d.redispatched} intervals, "
        f"{r.curtailed_mwh / 1e6:.1f} kWh PV curtailed{unapplied}",
        f"          intervals beyond limits: {d.before} forecast before redispatch, {d.after} after; "
        f"{beyond} of {len(r.grid)} metered",
    ]


def _grid_figures(r: RunResult) -> dict[str, object]:
    d = r.delivery
    return {
        "intervals": len(r.grid),
        "intervals_beyond_limits": sum(g.violations > 0 for g in r.grid),
        "delivery_check": d is not None,
        **(
            {
                "redispatches": d.redispatches,
                "forecast_beyond_limits_before": d.before,
                "forecast_beyond_limits_after": d.after,
                "curtailed_mwh": r.curtailed_mwh,
                "compensation_nanocent": d.compensation,
            }
            if d is not None
            else {}
        ),
    }


def bill_lines(r: RunResult) -> list[str]:
    cur = _currency(r)
    out = [
        "bills     energy bought (+) / sold (-) locally and with the supplier; money + credit, - to pay "
        f"({cur.code}); flexibility and redispatch paid, imbalance; alone: what the member would have "
        "paid without the community (its meter at retail / feed-in)"
    ]
    pseudo = (SUPPLIER, DSO, PLATFORM)
    for b in r.bills:
        if b.party in pseudo:
            if b.party != PLATFORM or b.total:
                out.append(f"  {b.party:<10} {'':<46} total {_money(b.total, cur)}")
            continue
        extra = "".join(
            f"  {name} {_money(v, cur).strip()}"
            for name, v in (("flex", b.flexibility), ("redispatch", b.redispatch), ("imbalance", b.imbalance))
            if v
        )
        out.append(
            f"  {b.party:<10} local {b.local_mwh / 1e6:+8.3f} kWh  supplier "
            f"{b.supplier_mwh / 1e6:+8.3f} kWh  total {_money(b.total, cur)}  "
            f"alone {_money(b.alone, cur)}{extra}"
        )
    out.append(f"  {'sum':<10} {'':<46} total {_money(sum(b.total for b in r.bills), cur)}")
    return out


def _currency(r: RunResult) -> billing.Currency:
    return billing.Currency(*r.scenario.market.currency)


def _money(nc: int, cur: billing.Currency) -> str:
    c = billing.cents(nc)
    return f"{('+' if c >= 0 else '') + cur.amount(c):>9}"


def plots(r: RunResult, s: Summary) -> dict[str, str]:
    labels = [_hm(x.start) for x in s.intervals]
    hours = r.scenario.market.interval_s / 3600
    kw = 1 / (1e6 * hours)  # mWh per interval -> kW
    sc = r.scenario
    prices = svg.lines(
        "Local price per interval", f"{_currency(r).minor}/kWh", labels,
        {
            "local clearing price": [
                x.price / 1000 if x.price is not None and x.traded else None for x in s.intervals
            ],
            "retail": [sc.market.retail / 1000] * len(labels),
            "feed-in": [sc.market.feed_in / 1000] * len(labels),
        },
    )  # fmt: skip
    flows = svg.lines(
        "Community flows", "kW (interval mean)", labels,
        {
            "consumption": [x.load * kw for x in s.intervals],
            "PV": [x.pv * kw for x in s.intervals],
            "from grid": [x.grid_imp * kw for x in s.intervals],
            "to grid": [x.grid_exp * kw for x in s.intervals],
            "traded locally": [x.traded * kw for x in s.intervals],
            **({"batteries (+ charge)": [x.battery * kw for x in s.intervals]} if r.battery_w else {}),
        },
    )  # fmt: skip
    cum_load = cum_imp = cum_pv = cum_exp = 0
    ss: list[float | None] = []
    sc_: list[float | None] = []
    for x in s.intervals:
        cum_load += x.load
        cum_imp += x.grid_imp
        cum_pv += x.pv
        cum_exp += x.grid_exp
        ss.append(100 * (1 - cum_imp / cum_load) if cum_load else None)
        sc_.append(100 * (1 - cum_exp / cum_pv) if cum_pv else None)
    suff = svg.lines(
        "Self-sufficiency and community self-consumption (cumulative)", "%", labels,
        {"self-sufficiency": ss, "PV used in the community": sc_},
    )  # fmt: skip
    members = [b for b in r.bills if b.party not in (SUPPLIER, DSO, PLATFORM)]
    cur = _currency(r)
    bills = svg.bars(
        "Members' bills for the run", f"{cur.code} (+ credit, - to pay)", [b.party for b in members],
        [billing.cents(b.total) / cur.per_unit for b in members],
    )  # fmt: skip
    alone = svg.bars(
        "What each member would have paid without the community", f"{cur.code} (+ credit, - to pay)",
        [b.party for b in members], [billing.cents(b.alone) / cur.per_unit for b in members],
    )  # fmt: skip
    out = {
        "prices.svg": prices, "flows.svg": flows, "self_sufficiency.svg": suff, "bills.svg": bills,
        "bills_alone.svg": alone,
    }  # fmt: skip
    if r.grid:
        out["grid.svg"] = svg.lines(
            "Grid: most loaded line and transformer (delivery screen)", "% of rating",
            [_hm(g.start) for g in r.grid],
            {"line": [g.line_pct for g in r.grid], "transformer": [g.trafo_pct for g in r.grid]},
        )  # fmt: skip
        out["voltages.svg"] = svg.lines(
            "Voltages: lowest and highest bus (metered flows)", "pu",
            [_hm(g.start) for g in r.grid],
            {"lowest": [g.v_min_pu for g in r.grid], "highest": [g.v_max_pu for g in r.grid],
             "0.95 pu": [0.95] * len(r.grid), "1.05 pu": [1.05] * len(r.grid)},
        )  # fmt: skip
    return out


def write(out: Path, r: RunResult, s: Summary, log_lines: list[str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    charts = plots(r, s)
    for name, text in charts.items():
        (out / name).write_text(text)
        written.append(out / name)
    sc = r.scenario
    figures = {
        "scenario": sc.name,
        "members": len(sc.homes),
        "start": sc.start,
        "hours": sc.duration_s / 3600,
        "self_sufficiency": round(s.self_sufficiency, 4),
        "community_self_consumption": round(s.community_self_consumption, 4),
        "individual_self_consumption": round(s.individual_self_consumption, 4),
        "local_trade_share": round(s.local_trade_share, 4),
        "local_price_mc_per_kwh": None if s.local_price is None else round(s.local_price),
        "consumption_mwh": s.load,
        "generation_mwh": s.pv,
        "grid_import_mwh": s.grid_imp,
        "grid_export_mwh": s.grid_exp,
        "traded_mwh": s.traded,
        "bills_nanocent": {b.party: b.total for b in r.bills},
        "alone_nanocent": {b.party: b.alone for b in r.bills if b.party not in (SUPPLIER, DSO, PLATFORM)},
        "invariants_ok": r.invariants.ok,
        **({"grid": _grid_figures(r)} if r.grid else {}),
        "wall_s": round(r.wall_s, 2),
    }
    (out / "summary.json").write_text(json.dumps(figures, indent=2) + "\n")
    written.append(out / "summary.json")
    cur = _currency(r)
    rows = "".join(
        f"<tr><td>{escape(b.party)}</td><td>{b.local_mwh / 1e6:+.3f}</td><td>{b.supplier_mwh / 1e6:+.3f}</td>"
        f"<td>{cur.amount(billing.cents(b.flexibility))}</td><td>{cur.amount(billing.cents(b.redispatch))}</td>"
        f"<td>{cur.amount(billing.cents(b.imbalance))}</td><td>{cur.amount(billing.cents(b.total))}</td>"
        f"<td>{'' if b.party in (SUPPLIER, DSO, PLATFORM) else cur.amount(billing.cents(b.alone))}</td></tr>"
        for b in r.bills
    )
    sections = "".join(
        f"<h2>{escape(n.removesuffix('.svg').replace('_', ' ').capitalize())}</h2>{t}"
        for n, t in charts.items()
    )
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>peergrid demo: {escape(sc.title)}</title>
<style>body{{font-family:sans-serif;max-width:800px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}
td:first-child{{text-align:left}}pre{{background:#f6f6f6;padding:1em;white-space:pre-wrap;
overflow-wrap:anywhere}}</style></head>
<body><h1>{escape(sc.title)}</h1>
<p>{time.strftime("%Y-%m-%d %H:%M", time.gmtime(sc.start))} UTC, {sc.duration_s / 3600:g} h simulated in
{r.wall_s:.1f} s ({r.speedup:,.0f}x real time); scheme <code>{escape(sc.market.scheme)}</code>, intervals of
{sc.market.interval_s // 60} min; {r.readings} signed readings stored.</p>
<h2>Summary</h2><pre>{escape(chr(10).join(summary_lines(r, s)))}</pre>
{sections}
<h2>Bills</h2><table><tr><th>party</th><th>local kWh</th><th>supplier kWh</th><th>flexibility</th>
<th>redispatch</th><th>imbalance</th><th>total {cur.code}</th><th>without the community</th></tr>
{rows}</table>
<h2>Invariants</h2><pre>{escape(chr(10).join(r.invariants.lines()))}</pre>
<h2>Log</h2><pre>{escape(chr(10).join(log_lines))}</pre>
</body></html>
"""
    (out / "report.html").write_text(html)
    written.append(out / "report.html")
    return written
