"""The reliability suite at CI size (``python -m bench.reliability`` prints the same report;
``--long`` runs it at full size): faults lose and double-count nothing, every attack is refused,
fuzzing crashes no inbound path."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.reliability import attacks, faults, fuzz
from bench.reliability.__main__ import main
from coordinator.errors import RejectedMessage
from coordinator.transaction.ingest import Ingest
from protocol import codec, crypto, frame, messages, topics
from protocol.errors import ProtocolError


@pytest.mark.parametrize("sc", faults.scenarios(long=False), ids=lambda s: s.name.split(":")[0])
def test_faults_lose_and_double_count_nothing(sc: faults.Scenario) -> None:
    rep = faults.run_scenario(sc)
    assert rep.sent > 0 and rep.stored > 0
    assert rep.lost == 0, rep
    assert rep.double == 0, rep
    assert rep.stored + rep.stale == rep.sent, rep
    assert rep.energy_ok, rep  # each board's last stored registers are its final ones
    if sc.reorder:
        assert rep.stale > 0 and rep.refused.get("replay", 0) >= rep.stale  # overtaken ones, refused
    if sc.duplicate:
        assert rep.refused.get("duplicate", 0) > 0
    if not (sc.reorder or sc.loss or sc.duplicate):
        assert rep.stale == 0 and rep.stored == rep.sent


def test_every_attack_is_refused_with_its_reason() -> None:
    rep = attacks.run()
    assert len(rep) >= 20
    accepted = [a.name for a in rep if not a.refused]
    assert accepted == []
    reasons = {a.name.split(":")[0]: a.reason for a in rep if a.target == "coordinator ingest"}
    assert reasons["forged"] == "bad_signature"
    assert reasons["stale"] == "from_future"
    codes = {a.reason for a in rep}
    assert {"duplicate", "replay", "wrong_topic", "wrong_grid", "too_old", "key_conflict"} <= codes
    # trust no board: its own key cannot buy it energy, time before its key, or settled time
    assert reasons["implausible"].startswith("held in quarantine: import rose 1000.000 kWh")
    assert reasons["key"] == "before_key" and reasons["settled time"] == "settled_time"
    assert reasons["flood"] == "20,000 refused, 2 log lines"
    broker = [a for a in rep if a.target == "broker"]
    assert [a.reason for a in broker] == ["not authorised"]  # Mosquitto is there in the tests


def test_fuzz_short_run_has_no_crash_and_reaches_every_check() -> None:
    reps = {r.name.split(" ")[0]: r for r in fuzz.run(8_000, seed=3)}
    assert set(reps) == {"ingest", "board", "codec", "config", "board-file"}
    for r in reps.values():
        assert r.crashes == 0, r.crash_examples
        assert r.inputs > 0 and r.accepted > 0 and sum(r.rejected.values()) > 0
        assert r.accepted + sum(r.rejected.values()) == r.inputs
    # the mutants reach the checks behind decoding and the signature, not only the decoder
    assert {"bad_field", "bad_signature", "wrong_topic", "replay"} <= set(reps["ingest"].rejected)
    assert any(k.startswith("stale") or k.startswith("replayed") for k in reps["board"].rejected)


def test_report_command_short(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--only", "attacks", "--only", "fuzz", "--inputs", "2000"]) == 0
    out = capsys.readouterr().out
    assert "0 crashes" in out and "ACCEPTED" not in out and out.rstrip().splitlines()[-1].startswith("OK")


KEY = crypto.SigningKey(b"\x07" * 32)
FIELD = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.none(),
    st.booleans(),
    st.text(max_size=40),
    st.binary(max_size=40),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(type_id=st.sampled_from([1, 3, 5, 6, 2, 4, 9]), fields=st.lists(FIELD, max_size=14))
def test_signed_frames_of_any_shape_are_accepted_or_refused_never_crash(
    type_id: int, fields: list[object]
) -> None:
    """Structured inputs that pass the signature: whatever the fields, ingest decides cleanly."""
    import msgpack

    ing = Ingest("g", now=lambda: 1_750_000_000.0)
    ing.enrol("b1", KEY.public)
    body = msgpack.packb([type_id, 1, *fields], use_bin_type=True)
    topic = topics.board_topic("g", "b1", "reading")
    payload = body + KEY.sign(frame.signed_bytes(type_id, topic, body))
    try:
        msg = ing.check(topic, payload)
    except RejectedMessage as e:
        assert e.code and e.reason
        return
    assert isinstance(msg, messages.Reading)  # only a well-formed reading for b1 gets through
    assert msg.encode() == body  # and only in its one canonical encoding


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_codec_takes_any_bytes(data: bytes) -> None:
    try:
        messages.from_list(codec.unpack(data))
    except ProtocolError:
        pass
