"""Builds the golden vectors file ``protocol/vectors/golden.json``.

The file is the contract between the board and the coordinator: keys, messages with their exact
body and frame bytes, canonical encodings of edge values, and inputs that must be rejected with a
given error class. Both runtimes are tested against it; ``python -m tests.protocol.golden``
rewrites it (and a test fails if the committed file and this builder disagree).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from protocol import codec, crypto, frame, messages, topics
from tests.protocol.rfc8032 import RFC8032

PATH = Path(__file__).resolve().parents[2] / "protocol" / "vectors" / "golden.json"

SEEDS = [
    bytes(range(32)),
    bytes.fromhex("c0ffee" * 10 + "beef"),
    bytes(32),
]

GRID = "walenstadt"


def _j(v: Any) -> Any:
    """JSON form of a value: bytes as {"hex": ...}."""
    if isinstance(v, bytes):
        return {"hex": v.hex()}
    if isinstance(v, list):
        return [_j(x) for x in v]
    return v


def sample_messages() -> list[tuple[str, int, messages.Message]]:
    """(name, signing key index, message): every type, with and without optional fields."""
    M = messages
    return [
        ("reading_min", 0, M.Reading(board="m01", seq=0, ts=0, e_imp=0, e_exp=0, p=0, u=0, flags=0)),
        (
            "reading_full",
            0,
            M.Reading(
                board="m01",
                seq=4_294_967_295,
                ts=1_750_000_000,
                e_imp=12_345_678_901,
                e_exp=2**64 - 1,
                p=-10_000_000,
                u=231_400,
                bat_soc=1000,
                bat_p=-3_300,
                ev_state=2,
                ev_p=11_000,
                flags=M.F_REPLAYED | M.F_CLOCK_UNSYNCED,
            ),
        ),
        (
            "reading_import",
            1,
            M.Reading(
                board="hotel-7",
                seq=1234,
                ts=1_750_000_010,
                e_imp=987_654,
                e_exp=12,
                p=2_540,
                u=229_900,
                flags=0,
            ),
        ),
        (
            "order",
            2,
            M.Order(
                board="m01",
                oseq=17,
                interval=1_750_000_500,
                valid_from=1_750_000_500,
                valid_until=1_750_001_400,
                bat_w=-2_500,
                ev_ma=16_000,
                pv_limit_w=4_000,
                relay_mask=0b11,
                relay_state=0b01,
            ),
        ),
        (
            "order_defaults",
            2,
            M.Order(
                board="m01", oseq=0, interval=0, valid_from=0, valid_until=900, relay_mask=0, relay_state=0
            ),
        ),
        (
            "ack_clamped",
            0,
            M.Ack(
                board="m01",
                oseq=17,
                ts=1_750_000_502,
                status=M.ST_CLAMPED,
                reason="bat_w limited to -2000",
                bat_w=-2_000,
                ev_ma=16_000,
                pv_limit_w=4_000,
                relay_state=1,
            ),
        ),
        (
            "result",
            2,
            M.Result(
                grid=GRID,
                interval=1_750_000_500,
                length=900,
                scheme="pairwise",
                price=12_375,
                traded=1_234_567,
                grid_imp=250_000,
                grid_exp=0,
                n_trades=12,
                digest=bytes(range(32, 64)),
            ),
        ),
        (
            "enrol",
            1,
            M.Enrol(
                board="hotel-7",
                pubkey=crypto.SigningKey(SEEDS[1]).public,
                board_type="esp32-pzem004t",
                fw="0.1.0",
                ts=1_750_000_000,
            ),
        ),
        (
            "status_will",
            0,
            M.Status(
                board="m01",
                ts=1_750_000_000,
                state=M.S_OFFLINE,
                uptime=3600,
                heap_free=41_000,
                queued=0,
                dropped=0,
                rejected=0,
                reset=3,
                fw="0.2.0",
                boots=1,
                block=30_000,
                pending=None,
            ),
        ),
        (
            "update",
            1,
            M.Update(
                board="m01",
                version="0.3.0",
                board_type="esp32-pzem004t",
                min_fw="0.2.0",
                size=212_992,
                chunk=1024,
                digest=bytes(range(32)),
                downgrade=0,
                ts=1_750_000_000,
            ),
        ),
        (
            "update_refused",
            0,
            M.UpdateState(
                board="m01",
                ts=1_750_000_010,
                version="0.3.0",
                state=M.U_REFUSED,
                reason="wrong board type esp32-atm90e32",
                got=0,
                fw="0.2.0",
            ),
        ),
    ]


def codec_values() -> list[Any]:
    ints = [
        0,
        1,
        127,
        128,
        255,
        256,
        65535,
        65536,
        2**32 - 1,
        2**32,
        2**64 - 1,
        -1,
        -32,
        -33,
        -128,
        -129,
        -32768,
        -32769,
        -(2**31),
        -(2**31) - 1,
        -(2**63),
    ]
    strs = ["", "a", "x" * 31, "y" * 32, "z" * 255, "w" * 256]
    bins = [b"", b"\x00\xff", bytes(255), bytes(256)]
    arrays: list[Any] = [[], list(range(15)), list(range(16)), [None, True, False, [1, [2]]]]
    return [None, True, False, *ints, *strs, *bins, *arrays]


# Bytes the decoder must refuse, with the error class it must raise.
CODEC_REJECTS = [
    ("uint8_noncanonical", "cc05", "DecodeError"),
    ("uint16_noncanonical", "cd00ff", "DecodeError"),
    ("uint32_noncanonical", "ce0000ffff", "DecodeError"),
    ("uint64_noncanonical", "cf00000000ffffffff", "DecodeError"),
    ("int8_noncanonical", "d0ff", "DecodeError"),
    ("int16_noncanonical", "d1ff80", "DecodeError"),
    ("str8_short", "d90161", "DecodeError"),
    ("array16_short", "dc000101", "DecodeError"),
    ("bin16_short", "c5000100", "DecodeError"),
    ("trailing", "0100", "DecodeError"),
    ("truncated_uint32", "ce0000", "DecodeError"),
    ("truncated_array", "930102", "DecodeError"),
    ("empty", "", "DecodeError"),
    ("map", "81a16101", "DecodeError"),
    ("float64", "cb3ff0000000000000", "DecodeError"),
    ("ext", "d40100", "DecodeError"),
    ("non_ascii", "a2c3a9", "DecodeError"),
    ("control_char", "a10a", "DecodeError"),
    ("too_deep", "91919191c0", "OversizeError"),
    ("huge_array", "ddffffffff", "OversizeError"),
    ("huge_bin", "c6ffffffff", "OversizeError"),
    ("array_65", "dc0041" + "00" * 65, "OversizeError"),
]


def build() -> dict[str, Any]:
    keys = [crypto.SigningKey(s) for s in SEEDS]
    out: dict[str, Any] = {
        "about": "peergrid protocol golden vectors; regenerate with python -m tests.protocol.golden",
        "protocol_version": messages.VERSION,
        "domain": frame.DOMAIN.hex(),
        "keys": [{"seed": s.hex(), "public": k.public.hex()} for s, k in zip(SEEDS, keys, strict=True)],
        "codec": [{"value": _j(v), "hex": codec.pack_portable(v).hex()} for v in codec_values()],
        "codec_rejects": [{"name": n, "hex": h, "error": e} for n, h, e in CODEC_REJECTS],
        "messages": [],
        "frame_rejects": [],
        "rfc8032": [
            {
                "name": v.name,
                "secret": v.secret,
                "public": v.public,
                "message": v.message,
                "signature": v.signature,
            }
            for v in RFC8032
        ],
    }
    for name, ki, msg in sample_messages():
        topic = topics.topic_for(GRID, msg)
        body = msg.encode()
        fr = frame.seal(msg, topic, keys[ki])
        out["messages"].append(
            {
                "name": name,
                "type": type(msg).__name__,
                "type_id": msg.TYPE,
                "key": ki,
                "topic": topic,
                "fields": {n: _j(getattr(msg, n)) for n in messages.names(type(msg))},
                "body": body.hex(),
                "signed": frame.signed_bytes(msg.TYPE, topic, body).hex(),
                "frame": fr.hex(),
            }
        )
    # Frames that must be refused: (name, message index, key expected, topic, frame, error).
    base = out["messages"][1]  # reading_full, signed by key 0
    fr = bytes.fromhex(base["frame"])
    other_board = topics.board_topic(GRID, "m02", "reading")
    flipped = bytearray(fr)
    flipped[10] ^= 0x01
    bad_sig = bytearray(fr)
    bad_sig[-1] ^= 0x80
    as_ack = topics.board_topic(GRID, "m01", "ack")
    rejects = [
        ("tampered_body", 0, base["topic"], bytes(flipped), "SignatureError"),
        ("tampered_signature", 0, base["topic"], bytes(bad_sig), "SignatureError"),
        ("wrong_key", 1, base["topic"], fr, "SignatureError"),
        ("other_boards_topic", 0, other_board, fr, "TopicError"),
        ("wrong_leaf", 0, as_ack, fr, "TopicError"),
        ("other_grid", 0, topics.board_topic("other", "m01", "reading"), fr, "SignatureError"),
        ("truncated", 0, base["topic"], fr[:-1], "DecodeError"),
        ("signature_only", 0, base["topic"], fr[-64:], "DecodeError"),
        ("oversize", 0, base["topic"], fr + bytes(600), "OversizeError"),
        ("body_not_a_message", 0, base["topic"], codec.pack_portable([99, 1]) + fr[-64:], "UnknownTypeError"),
        (
            "out_of_range_field",
            0,
            base["topic"],
            codec.pack_portable([1, 1, "m01", 0, 0, 0, 0, 0, 2_000_000, None, None, None, None, 0])
            + fr[-64:],
            "FieldError",
        ),
    ]
    for name, ki, topic, data, err in rejects:
        out["frame_rejects"].append(
            {"name": name, "key": ki, "topic": topic, "frame": data.hex(), "error": err}
        )
    return out


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def main() -> int:
    PATH.parent.mkdir(parents=True, exist_ok=True)
    PATH.write_text(dumps(build()))
    print(f"wrote {PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
