"""Settlement conservation on random histories (Hypothesis): boards that start reading at any
time, go offline and replay their spool after their intervals were settled, and are replaced
mid-interval. Whatever happens, every mWh a board metered between its first and its last reading
is settled exactly once, to its member, and every interval's postings sum to zero."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coordinator.ledger import Ledger
from coordinator.market import Tariff
from coordinator.provision import enrol
from coordinator.transaction.settlement import settle
from protocol import crypto, frame, messages
from sim.board import VirtualBoard

START = 1_750_000_000 - 1_750_000_000 % 900
LEN = 900
N_INTERVALS = 8
TARIFF = Tariff(feed_in=4_000, retail=20_750, grid_fee=6_000, grid_fee_local=3_000)
SCHEMES = ("pairwise", "uniform", "pay_as_bid", "self_consumption")


@dataclass
class Plan:
    member: int
    power: int  # W, + import
    first: int  # s after START of the first reading
    step: int
    offline: tuple[int, int] | None  # readings taken in [a, b) are delivered at b (spool replay)
    replace_at: int | None  # s after START: a new board takes over from this reading on


@st.composite
def plans(draw: st.DrawFn) -> list[Plan]:
    n = draw(st.integers(1, 4))
    out = []
    for _ in range(n):
        first = draw(st.integers(0, 3 * LEN))
        offline = None
        if draw(st.booleans()):  # after its first reading (which tells the coordinator it exists)
            a = draw(st.integers(first + 1, N_INTERVALS * LEN))
            offline = (a, a + draw(st.integers(60, 3 * LEN)))
        replace_at = draw(st.none() | st.integers(first + 1, N_INTERVALS * LEN))
        out.append(
            Plan(
                member=draw(st.integers(0, 2)),
                power=draw(st.integers(-4_000, 4_000)),
                first=first,
                step=draw(st.sampled_from([60, 120, 300, 420])),
                offline=offline,
                replace_at=replace_at,
            )
        )
    return out


def _stored(b: VirtualBoard, t: int) -> tuple[messages.Reading, bytes]:
    topic, fr = b.reading(t)
    r = frame.open_frame(topic, fr, lambda m: crypto.Verifier(b.key.public))
    assert isinstance(r, messages.Reading)
    return r, bytes(frame.split(fr)[1])


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(ps=plans(), scheme=st.sampled_from(SCHEMES))
def test_every_metered_mwh_is_settled_once(ps: list[Plan], scheme: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        led = Ledger.open(Path(d) / "l.db")
        for m in range(3):
            led.add_member(f"m{m}", f"M{m}", "prosumer", now=START, feeder="f1")
        # every reading of every board: (delivery time, board, reading time); a board's delivery
        # times never decrease with its sequence numbers (a spool replays in order)
        events: list[tuple[int, int, int]] = []
        boards: list[tuple[VirtualBoard, Plan, int | None]] = []  # board, plan, retired at
        seed = 1
        for k, p in enumerate(ps):
            end = N_INTERVALS * LEN + 2 * LEN
            old = VirtualBoard("g1", f"b{k}", bytes([seed]) * 32, lambda t, w=p.power: w)
            seed += 1
            cut = p.replace_at if p.replace_at is not None else end + 1
            boards.append((old, p, p.replace_at))
            if p.replace_at is not None:
                new = VirtualBoard("g1", f"b{k}-new", bytes([seed]) * 32, lambda t, w=p.power: w)
                seed += 1
                boards.append((new, p, None))
            for t in range(p.first, end + 1, p.step):
                b = len(boards) - 1 if t >= cut else len(boards) - 1 - (p.replace_at is not None)
                late = p.offline is not None and p.offline[0] <= t < p.offline[1] and t < cut
                events.append((p.offline[1] if late and p.offline else t, b, t))
        led_boards = set()

        def deliver(upto: int) -> None:
            batch = []
            for ev in sorted(e for e in events if e[0] <= upto):
                events.remove(ev)
                _, bi, t = ev
                b, p, retired = boards[bi]
                if b.board not in led_boards:
                    if b.board.endswith("-new"):
                        old = boards[bi - 1][0]
                        if batch:
                            led.add_readings(batch)
                            batch = []
                        enrol.replace(led, old.board, b.board, b.key.public, None, now=START + t)
                    else:
                        led.add_board(
                            b.board, "v", b.key.public, now=START, member_id=f"m{p.member}", status="active"
                        )
                    led_boards.add(b.board)
                if retired is not None and b.board + "-new" in led_boards:
                    continue  # the old board's spool after its replacement: refused by ingest
                batch.append(_stored(b, START + t))
            led.add_readings(batch)

        for q in range(N_INTERVALS + 2):
            end_q = (q + 1) * LEN
            deliver(end_q + 60)
            settle(led, START + q * LEN, LEN, scheme, TARIFF, {}, now=START + end_q + 60)
        deliver(10**9)
        last = START + (N_INTERVALS + 2) * LEN
        for q in range(N_INTERVALS + 2, N_INTERVALS + 6):  # the replayed spools settle afterwards
            settle(led, START + q * LEN, LEN, scheme, TARIFF, {}, now=last + 3600)

        settled_end = START + (N_INTERVALS + 6) * LEN
        per_member: dict[str, int] = {}
        for b, p, _ in boards:
            rows = led._conn.execute(
                "SELECT seq0, seq1, e_imp0, e_exp0, e_imp1, e_exp1 FROM board_deliveries "
                "WHERE board_id=? ORDER BY interval",
                (b.board,),
            ).fetchall()
            for r0, r1 in zip(rows, rows[1:], strict=False):
                assert (r1[0], r1[2], r1[3]) == (r0[1], r0[4], r0[5]), "chain broken"
            got = sum((r[4] - r[2]) - (r[5] - r[3]) for r in rows)
            first = next((r for r, _ in led.readings_by_seq(b.board, 0, 2**62)), None)
            final = led.register_at(b.board, settled_end)
            if first is None:
                assert not rows
                continue
            assert final is not None
            # a board's registers start at 0 with its first reading: all it metered is settled
            assert got == (final.e_imp - first.e_imp) - (final.e_exp - first.e_exp), b.board
            assert (first.e_imp, first.e_exp) == (0, 0)
            per_member[f"m{p.member}"] = per_member.get(f"m{p.member}", 0) + got
        for (start,) in led._conn.execute("SELECT start FROM intervals").fetchall():
            s = led._conn.execute("SELECT coalesce(sum(amount), 0) FROM postings WHERE interval=?", (start,))
            assert s.fetchone()[0] == 0
        delivered = dict(
            led._conn.execute("SELECT party, sum(e_imp - e_exp) FROM deliveries GROUP BY party").fetchall()
        )
        posted = dict(
            led._conn.execute(
                "SELECT party, sum(energy) FROM postings WHERE party LIKE 'm%' GROUP BY party"
            ).fetchall()
        )
        for m, e in per_member.items():
            assert delivered.get(m, 0) == e, m
            assert posted.get(m, 0) == e, m
        led.close()
