"""Settlement across changes of a member's boards: a board replaced mid-interval and a board (or a
member) that starts reading mid-interval. Every mWh the boards metered between their first and
last readings is settled once: the old board's last readings still count after it is retired, and
a new board's first interval starts at its first reading."""

from __future__ import annotations

from pathlib import Path

from coordinator.ledger import Ledger
from coordinator.provision import enrol
from coordinator.transaction.settlement import measure, settle
from sim.board import VirtualBoard
from tests.coordinator.readings import store
from tests.coordinator.test_settlement import PROFILES, START, TARIFF


def _ledger(tmp: Path) -> tuple[Ledger, dict[str, VirtualBoard]]:
    led = Ledger.open(tmp / "l.db")
    boards = {}
    for i, m in enumerate(("alice", "carol")):
        led.add_member(m, m.title(), "prosumer", now=START)
        b = VirtualBoard("g1", f"b-{m}", bytes([i + 1]) * 32, PROFILES[m])
        led.add_board(b.board, "virtual", b.key.public, now=START, member_id=m, status="active")
        boards[m] = b
    return led, boards


def _settled(led: Ledger, party: str) -> tuple[int, int]:
    row = led._conn.execute(
        "SELECT coalesce(sum(e_imp), 0), coalesce(sum(e_exp), 0) FROM deliveries WHERE party=?", (party,)
    ).fetchone()
    return int(row[0]), int(row[1])


def _posted(led: Ledger, party: str) -> int:
    return int(
        led._conn.execute("SELECT coalesce(sum(energy), 0) FROM postings WHERE party=?", (party,)).fetchone()[
            0
        ]
    )


def test_a_replaced_boards_last_readings_are_settled(tmp_path: Path) -> None:
    led, boards = _ledger(tmp_path)
    old = boards["carol"]
    store(led, boards.values(), range(START, START + 1201, 60))
    settle(led, START, 900, "pairwise", TARIFF, {}, now=START + 960)
    # the board is swapped at START + 1200: the old one retired, the new one reads from START + 1200
    new = VirtualBoard("g1", "b-carol-2", bytes([9]) * 32, PROFILES["carol"])
    enrol.replace(led, old.board, new.board, new.key.public, None, now=START + 1200)
    store(led, [new], range(START + 1200, START + 2701, 60))
    store(led, [boards["alice"]], range(START + 1260, START + 2701, 60))
    for q in (1, 2):
        settle(led, START + 900 * q, 900, "pairwise", TARIFF, {}, now=START + 2760)
    first = led.register_at(old.board, START)
    last = led.register_at(old.board, START + 1200)
    end = led.register_at(new.board, START + 2700)
    assert first is not None and last is not None and end is not None
    metered = (last.e_imp - first.e_imp) + end.e_imp  # the new board's registers start at 0
    assert metered > 0
    assert _settled(led, "carol") == (metered, 0)
    assert _posted(led, "carol") == metered  # and it is billed
    # the old board's tail was settled once: later intervals leave it out
    settle(led, START + 2700, 900, "pairwise", TARIFF, {}, now=START + 3660)
    rows = led._conn.execute(
        "SELECT interval, seq0, seq1 FROM board_deliveries WHERE board_id=? ORDER BY interval", (old.board,)
    ).fetchall()
    assert [r[0] for r in rows] == [START, START + 900]
    assert rows[1][1] == rows[0][2]  # the chain continues where it ended
    led.close()


def test_a_board_that_starts_mid_interval_is_settled_from_its_first_reading(tmp_path: Path) -> None:
    led, boards = _ledger(tmp_path)
    store(led, [boards["alice"]], range(START, START + 1801, 60))
    store(led, [boards["carol"]], range(START + 420, START + 1801, 60))  # carol joins at START + 420
    m, spans = measure(led, START, START + 900)
    assert m["carol"].missing == () and m["carol"].boards == 1
    assert {s.board_id: s.r0.ts for s in spans}["b-carol"] == START + 420
    for q in (0, 1):
        settle(led, START + 900 * q, 900, "pairwise", TARIFF, {}, now=START + 1860)
    end = led.register_at("b-carol", START + 1800)
    assert end is not None and end.e_imp > 0
    assert _settled(led, "carol") == (end.e_imp, 0)  # from her first reading (registers at 0) on
    led.close()


def test_a_board_with_no_reading_in_the_interval_is_still_missing(tmp_path: Path) -> None:
    led, boards = _ledger(tmp_path)
    store(led, [boards["alice"]], range(START, START + 1801, 60))
    store(led, [boards["carol"]], range(START + 900, START + 1801, 60))  # first reading at the end
    m, spans = measure(led, START, START + 900)
    assert m["carol"].missing == ("b-carol",) and m["carol"].boards == 0
    assert "b-carol" not in {s.board_id for s in spans}
    led.close()
