"""Flexibility payments in an audit bundle: the coordinator-signed record of each (the baseline,
the energy measured per interval from the delivering board's signed readings, what was delivered
and paid), and their check: every record verifies with the coordinator's key, is the member's,
and its delivery and payment follow from its numbers; the bill's flexibility line must equal the
records' payments summed (:mod:`coordinator.delivery.flexrecord`)."""

from __future__ import annotations

from typing import Any

from coordinator.delivery.flexrecord import RecordError, open_record
from coordinator.ledger import Ledger, flex_requests


def bundle_part(ledger: Ledger, member: str, start: int, end: int) -> list[dict[str, str]]:
    """The member's signed flexibility records whose payment falls in ``[start, end)``."""
    return [
        {"body": r.body.decode(), "sig": r.sig.hex()}
        for r in flex_requests.records(ledger, member, start, end)
    ]


def backed(b: dict[str, Any], coordinator_key: bytes, problems: list[str]) -> int | None:
    """The member's flexibility payments that signed records back (nano-cent); None when the
    bundle has no records (a bundle from before they were signed). Problems are appended."""
    items = b.get("flex_records")
    if items is None:
        return None
    total = 0
    for i, x in enumerate(items):
        try:
            r = open_record(coordinator_key, str(x["body"]).encode(), bytes.fromhex(str(x["sig"])))
        except (RecordError, KeyError, TypeError, ValueError) as e:
            problems.append(f"flexibility record #{i}: {e}")
            continue
        if r["party"] != b["member"]:
            problems.append(f"flexibility record {r['order_id']}: for {r['party']}, not {b['member']}")
            continue
        total += int(r["payment"])
    return total
