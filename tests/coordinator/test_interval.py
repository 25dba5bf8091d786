"""The interval loop: what is due, and a settled interval always has its signed Result stored
with it (the audit bundle needs it), even when the loop fails between settling and publishing."""

from __future__ import annotations

import asyncio
from dataclasses import astuple
from pathlib import Path

import pytest

from coordinator.ledger import Ledger
from coordinator.market import Clearing
from coordinator.service.interval import IntervalLoop
from coordinator.transaction.settlement import settle
from protocol import crypto, frame, messages, topics
from tests.coordinator.service import interval_loop
from tests.coordinator.test_settlement import START, TARIFF, ledger_with_readings

KEY = crypto.SigningKey(bytes([7]) * 32)


def _loop(led: Ledger, now: int, published: list[tuple[str, bytes]]) -> IntervalLoop:
    async def publish(topic: str, payload: bytes) -> None:
        published.append((topic, payload))

    return interval_loop(led, KEY, lambda: now, publish, tariff=astuple(TARIFF))


def test_due_intervals_start_at_the_first_reading_and_wait_for_the_delay(tmp_path: Path) -> None:
    led, _ = ledger_with_readings(tmp_path)
    loop = _loop(led, START + 900 + 59, [])
    assert loop.due() == []  # the first interval ends at START + 900, plus 60 s of delay
    loop = _loop(led, START + 3600 + 60, [])
    assert loop.due() == [START + 900 * q for q in range(4)]
    led.close()


def test_a_failure_after_settling_does_not_leave_an_interval_without_its_signed_result(
    tmp_path: Path,
) -> None:
    led, _ = ledger_with_readings(tmp_path)
    published: list[tuple[str, bytes]] = []
    loop = _loop(led, START + 960, published)
    real = loop.result
    calls = [0]

    def flaky(c: Clearing) -> tuple[str, bytes]:  # e.g. the process dies right after settling
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("killed")
        return real(c)

    loop.result = flaky  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        asyncio.run(loop.step())
    asyncio.run(loop.step())  # the next pass (or the restarted service)
    row = led._conn.execute("SELECT result_frame, digest FROM intervals WHERE start=?", (START,)).fetchone()
    assert row is not None and row[0] is not None, "settled without a signed Result"
    msg = frame.open_frame(topics.result_topic("g1"), row[0], lambda m: crypto.Verifier(KEY.public))
    assert isinstance(msg, messages.Result) and msg.interval == START and msg.digest == row[1]
    assert published == [(topics.result_topic("g1"), row[0])]
    led.close()


def test_after_a_change_of_interval_length_intervals_stay_aligned_and_do_not_overlap(tmp_path: Path) -> None:
    led, _ = ledger_with_readings(tmp_path, hours=3)
    for q in range(3):  # 15-minute intervals up to START + 2700
        settle(led, START + 900 * q, 900, "pairwise", TARIFF, {}, now=START + 2760)
    assert START % 3600 == 0
    longer = interval_loop(led, KEY, lambda: START + 4 * 3600, interval_s=3600)
    assert longer.due()[0] == START + 3600  # on the hour (the quarter before it carries over)
    shorter = interval_loop(led, KEY, lambda: START + 4 * 3600, interval_s=300)
    assert shorter.due()[0] == START + 2700  # not inside the last settled interval
    led.close()


def test_a_missing_wholesale_price_waits_and_the_appended_price_unblocks_settlement(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a wholesale-indexed contract needs each interval's wholesale price; the operator appends
    # missing prices to the CSV while the coordinator runs: no restart needed
    import logging
    import os

    from coordinator import config
    from coordinator.market import Contract

    led, _ = ledger_with_readings(tmp_path)
    prices = tmp_path / "wholesale.csv"
    prices.write_text(f"{START},9000\n")
    contract = Contract("c1", "carol", "alice", START - 86_400, START + 86_400, markup=500)
    published: list[tuple[str, bytes]] = []

    async def publish(topic: str, payload: bytes) -> None:
        published.append((topic, payload))

    loop = interval_loop(
        led,
        KEY,
        lambda: START + 3600 + 60,
        publish,
        scheme="bilateral",
        tariff=astuple(TARIFF),
        contracts=(contract,),
        wholesale=config.load_wholesale(prices),
        wholesale_file=prices,
    )
    with caplog.at_level(logging.INFO, logger="peergrid.interval"):
        done = asyncio.run(loop.step())  # settles what it can, then waits: no exception
        assert [c.interval for c in done] == [START]
        assert f"interval {START + 900}" in caplog.text and str(prices) in caplog.text
        assert asyncio.run(loop.step()) == []  # still waiting
        with prices.open("a") as f:
            f.write("".join(f"{START + 900 * q},{9000 + q}\n" for q in range(1, 4)))
        assert asyncio.run(loop.step()) == []  # being written (changed just now): not read yet
        st = prices.stat()
        os.utime(prices, ns=(st.st_atime_ns, st.st_mtime_ns - 10_000_000_000))  # written a while ago
        done = asyncio.run(loop.step())
    assert [c.interval for c in done] == [START + 900 * q for q in range(1, 4)]
    assert "re-read" in caplog.text
    assert len(published) == 4
    led.close()


def test_coordinator_config_keeps_the_wholesale_file(tmp_path: Path) -> None:
    from coordinator import config

    (tmp_path / "w.csv").write_text(f"{START},9000\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[coordinator]\ngrid = "g1"\nledger = "l.db"\n[market]\nscheme = "bilateral"\nwholesale = "w.csv"\n'
    )
    c = config.load(cfg)
    assert c.wholesale == {START: 9000} and c.wholesale_file == tmp_path / "w.csv"


def test_a_restart_republishes_the_newest_stored_result(tmp_path: Path) -> None:
    # settled and stored, then the process died before publishing: subscribers never saw it.
    # On start the loop publishes the newest settled interval's stored Result again (retained;
    # a Result is idempotent for subscribers)
    led, _ = ledger_with_readings(tmp_path)
    before = _loop(led, START + 1860, [])
    for q in range(2):
        settle(
            led,
            START + 900 * q,
            900,
            "pairwise",
            TARIFF,
            {},
            now=START + 1860,
            seal=lambda c: before.result(c)[1],
        )
    stored = led._conn.execute("SELECT result_frame FROM intervals WHERE start=?", (START + 900,)).fetchone()[
        0
    ]
    published: list[tuple[str, bytes]] = []
    loop = _loop(led, START + 1860, published)  # the restarted coordinator: nothing due yet
    assert loop.due() == []

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.2, stop.set)
        await loop.run(stop)

    asyncio.run(run())
    assert published == [(topics.result_topic("g1"), stored)]
    led.close()


def test_a_start_with_nothing_settled_publishes_nothing(tmp_path: Path) -> None:
    led = Ledger.open(tmp_path / "l.db")
    published: list[tuple[str, bytes]] = []
    assert asyncio.run(_loop(led, START, published).republish()) is None
    assert published == []
    led.close()
