"""The golden vectors: the committed file is current, and both runtimes reproduce it exactly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.mpy import run_micropython
from tests.onboard import vectors as mpy_check
from tests.protocol import golden


def load() -> dict[str, Any]:
    return json.loads(golden.PATH.read_text())


def vector_lines(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten the golden file into self-contained checks (one JSON object per line)."""
    keys = data["keys"]
    out: list[dict[str, Any]] = []
    # RFC 8032 first, longest first: TEST 1024 is a 2.4 KB line, read on MicroPython while the
    # 64 KB heap is still unfragmented (the signing table is then built during that check)
    for r in sorted(data["rfc8032"], key=lambda r: -len(r["message"])):
        out.append({"kind": "rfc8032", **r})
    for i, c in enumerate(data["codec"]):
        out.append({"kind": "codec", "name": f"codec[{i}]", **c})
    for r in data["codec_rejects"]:
        out.append({"kind": "codec_reject", **r})
    for m in data["messages"]:
        k = keys[m["key"]]
        out.append({"kind": "message", "seed": k["seed"], "public": k["public"], **m})
    for r in data["frame_rejects"]:
        out.append({"kind": "frame_reject", "public": keys[r["key"]]["public"], **r})
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


@pytest.mark.parametrize("kind", ["rfc8032", "codec", "codec_reject", "message", "frame_reject"])
def test_micropython_64k(kind: str) -> None:
    """Each kind of vector in a fresh MicroPython process with a 64 KB heap."""
    lines = [v for v in vector_lines(load()) if v["kind"] == kind]
    stdin = "".join(json.dumps(v) + "\n" for v in lines)
    proc = run_micropython(
        "from onboard import vectors\nvectors.main()", stdin=stdin, timeout=300, check=False
    )
    failures = [ln for ln in proc.stdout.splitlines() if ln.startswith("FAIL")]
    assert not failures, "\n".join(failures) + proc.stderr
    assert f"vectors: {len(lines)} passed, 0 failed;" in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == 0
