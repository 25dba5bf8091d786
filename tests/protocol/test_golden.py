"""The golden vectors: the committed file is current, and both runtimes reproduce it exactly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.mpy import ROOT, run_micropython
from tests.protocol import golden, mpy_check

CHECKER = ROOT / "tests" / "protocol" / "mpy_check.py"


def load() -> dict[str, Any]:
    return json.loads(golden.PATH.read_text())


def vector_lines(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten the golden file into self-contained checks (one JSON object per line)."""
    keys = data["keys"]
    out: list[dict[str, Any]] = []
    for i, c in enumerate(data["codec"]):
        out.append({"kind": "codec", "name": f"codec[{i}]", **c})
    for r in data["codec_rejects"]:
        out.append({"kind": "codec_reject", **r})
    for m in data["messages"]:
        k = keys[m["key"]]
        out.append({"kind": "message", "seed": k["seed"], "public": k["public"], **m})
    for r in data["frame_rejects"]:
        out.append({"kind": "frame_reject", "public": keys[r["key"]]["public"], **r})
    for r in data["rfc8032"]:
        out.append({"kind": "rfc8032", **r})
    return out


def test_committed_file_is_current() -> None:
    assert golden.PATH.read_text() == golden.dumps(golden.build()), (
        "protocol/vectors/golden.json is stale: run python -m tests.protocol.golden"
    )


def test_golden_covers_every_message_type_and_rejection() -> None:
    data = load()
    from protocol import messages

    assert {m["type_id"] for m in data["messages"]} == set(messages.TYPES)
    assert {r["error"] for r in data["frame_rejects"]} >= {
        "SignatureError",
        "TopicError",
        "DecodeError",
        "OversizeError",
        "FieldError",
    }
    assert len(data["rfc8032"]) >= 5


@pytest.mark.parametrize("vec", vector_lines(load()), ids=lambda v: f"{v['kind']}:{v['name']}")
def test_cpython(vec: dict[str, Any]) -> None:
    assert mpy_check.check(vec) is None


def test_micropython_64k() -> None:
    lines = vector_lines(load())
    stdin = "".join(json.dumps(v) + "\n" for v in lines)
    proc = run_micropython(CHECKER.read_text(), stdin=stdin, timeout=300, check=False)
    failures = [ln for ln in proc.stdout.splitlines() if ln.startswith("FAIL")]
    assert not failures, "\n".join(failures) + proc.stderr
    assert f"vectors: {len(lines)} passed, 0 failed" in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == 0
