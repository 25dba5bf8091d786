"""The coordinator-signed record of one flexibility payment: what was ordered, the baseline and the
energy measured per interval from the delivering board's signed readings, what was delivered and
what it was paid. Stored with the payment's postings (``flex_records``), put in the member's audit
bundle, and checked by ``peergrid audit verify`` (signature, arithmetic, and the bill's
flexibility line summed from the records).

    signed bytes = DOMAIN || body      body = canonical JSON (sorted keys, no spaces)
"""

from __future__ import annotations

import json
from typing import Any

from coordinator.errors import CoordinatorError
from protocol import crypto

DOMAIN = b"peergrid-flex/1\x00"
FORMAT = "peergrid-flex/1"


class RecordError(CoordinatorError):
    """A flexibility record does not verify or is malformed."""


def encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def sign(key: crypto.SigningKey, record: dict[str, Any]) -> tuple[bytes, bytes]:
    """(body, signature) of ``record``."""
    body = encode({**record, "format": FORMAT})
    return body, key.sign(DOMAIN + body)


def delivered(record: dict[str, Any]) -> int:
    """mWh delivered by the record's numbers: per interval, the move away from the baseline in the
    ordered direction, capped at the ordered energy, never below zero."""
    base, per = int(record["baseline_mwh"]), int(record["ordered_mwh"])
    sign_ = -1 if record["direction"] == "reduce" else 1
    return sum(max(0, min(sign_ * (int(e) - base), per)) for e in record["measured_mwh"])


def open_record(public: bytes, body: bytes, sig: bytes) -> dict[str, Any]:
    """The record, once its signature verifies with ``public`` and its numbers add up."""
    try:
        crypto.verify(public, DOMAIN + body, sig)
    except Exception as e:  # the verifier's own error types differ by platform
        raise RecordError(f"flexibility record signature does not verify: {e or type(e).__name__}") from None
    try:
        r = json.loads(body)
        if not isinstance(r, dict) or r.get("format") != FORMAT:
            raise RecordError(f"not a {FORMAT} record")
        got = delivered(r)
        if got != int(r["delivered_mwh"]) or got * int(r["price"]) != int(r["payment"]):
            raise RecordError(
                f"order {r.get('order_id')}: delivered {r['delivered_mwh']} mWh and payment {r['payment']} "
                f"do not follow from its baseline and measurements ({got} mWh)"
            )
        return r
    except (KeyError, TypeError, ValueError) as e:
        raise RecordError(f"malformed flexibility record: {type(e).__name__}: {e}") from None
