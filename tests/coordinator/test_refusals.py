"""Refused frames cost bounded log and memory: the first refusal of each (board, reason) in a
window is logged in full, the rest as one summary line per window; totals reach ``/healthz``."""

from __future__ import annotations

import logging
import random

import pytest

from coordinator.transaction.ingest import Ingest
from coordinator.transaction.refusals import MAX_KEYS, UNKNOWN, RefusalLog
from protocol import topics
from sim.board import VirtualBoard

START = 1_750_000_000


def test_a_flood_of_refused_frames_writes_a_few_lines_and_counts_every_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [0.0]
    ing = Ingest("g1", now=lambda: START + 60, refusals=RefusalLog(clock=lambda: clock[0]))
    good = VirtualBoard("g1", "m01", bytes([1]) * 32, lambda ts: 500)
    ing.enrol("m01", good.key.public)
    rng = random.Random(7)
    topic, fr = good.reading(START)
    forged = fr[:-1] + bytes([fr[-1] ^ 1])
    n = 20_000
    with caplog.at_level(logging.WARNING, logger="peergrid.ingest"):
        for i in range(n):
            clock[0] = i * 0.01  # 200 s of flood: four windows of 60 s
            if i % 2:
                assert ing.handle(topic, forged) is None  # an enrolled board's topic, bad signature
            else:  # a stranger, with a new board id every time
                stranger = f"x{rng.randrange(10**9)}"
                assert ing.handle(topics.board_topic("g1", stranger, "reading"), fr) is None
        clock[0] += 60
        ing.refusals.roll()
    lines = [r for r in caplog.records if r.name == "peergrid.ingest"]
    assert sum(ing.rejected.values()) == n
    assert ing.refusals.by_board == {"m01": n // 2, UNKNOWN: n // 2}  # strangers never get a key each
    # two keys; each window: two full lines and two summaries
    assert len(lines) == ing.refusals.logged <= 4 * 4
    held = [r.getMessage() for r in lines if "more times" in r.getMessage()]
    assert held and all("rejected bad_signature from m01" in h or f"from {UNKNOWN}" in h for h in held)
    counted = sum(int(h.split(" more times")[0].rsplit(" ", 1)[1]) for h in held)
    full = len(lines) - len(held)
    assert counted + full == n  # every refusal is in a full line or in a summary's count


def test_keys_are_bounded_whatever_the_senders() -> None:
    log = RefusalLog(clock=lambda: 0.0)
    for i in range(3 * MAX_KEYS):
        log.refused(f"b{i}", "bad_signature", "t", "x")  # the caller's board ids, unbounded here
    assert log.tracked <= MAX_KEYS + 1
    assert log.logged == MAX_KEYS + 1  # one full line per tracked key, one for the rest ("*")


def test_health_shows_refusals_per_reason_and_board() -> None:
    log = RefusalLog(clock=lambda: 0.0)
    for _ in range(3):
        log.refused("m01", "replay", "t", "seq 3 after seq 9")
    log.refused(UNKNOWN, "unknown_board", "t", "not enrolled")
    h = log.health()
    assert h["by_reason"] == {"replay": 3, "unknown_board": 1}
    assert h["top_boards"] == {"m01": 3, UNKNOWN: 1}
