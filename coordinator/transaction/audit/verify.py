"""``peergrid audit verify BUNDLE``: check an audit bundle and recompute the bill from it alone.

Checks, each failure named by what it concerns (board and sequence number, interval):

1. every reading frame verifies with a key its board had at the reading's time, on the board's own
   topic; per board, sequence numbers increase and registers never run backwards;
2. every interval's ``Result`` frame verifies with the coordinator's key and carries the SHA-256
   of the clearing record in the bundle (and its price, volumes and trade count);
3. the member's settled energy per interval is its boards' register advance between the readings
   the settlement names, chained reading to reading (nothing skipped or counted twice), and equals
   what the member bought minus sold in the clearing and its other rows;
4. supplier trades are at the tariff's retail / feed-in prices, local trades within them;
5. the bill, recomputed per account from those trades plus the fixed charges (per started local
   day of the bundle's ``timezone`` on which the member was a member, ``membership``; a bundle
   without them: UTC days, a member all along) and the subscriptions of the member's
   chosen-producer contracts in force in the period while a member, equals the coordinator's
   statement to the nano-cent.

Flexibility payments are backed by the coordinator-signed record of each (``flex_records``:
signature, the delivery and payment recomputed from the record's baseline and measurements, and the
bill line equal to their sum). Accounts that no signed record backs (e.g. redispatch compensation,
reconciliation) are listed as unverifiable, not silently accepted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from coordinator.ledger import journal
from coordinator.ledger.rules import key_valid_at
from coordinator.market import SUPPLIER, Clearing, Trades
from coordinator.transaction import billing
from coordinator.transaction.audit import FORMAT, AuditError, flexrecords
from coordinator.transaction.settlement import digest
from protocol import crypto, frame, messages, topics
from protocol.errors import ProtocolError

RECOMPUTED = (journal.ENERGY_BOUGHT_PREFIX, journal.ENERGY_SOLD_PREFIX)
FIXED = (journal.FIXED, journal.SUBSCRIPTION, journal.CONTRACT_SUBSCRIPTION)


@dataclass
class Report:
    member: str = ""
    readings: int = 0
    intervals: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    lines: dict[str, tuple[int, int]] = field(default_factory=dict)  # account -> (energy mWh, nano-cent)
    total: int = 0
    coordinator_key: str = ""
    zone: str = "UTC"  # the billing time zone of the period's days
    days: int = 0  # the days the fixed charges were recomputed for

    @property
    def ok(self) -> bool:
        return not self.problems


def load(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as e:
        raise AuditError(f"{p}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise AuditError(f"{p}: not a JSON audit bundle (not UTF-8 text at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise AuditError(f"{p}: not a JSON audit bundle: {e}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise AuditError(f"{p}: not a {FORMAT} bundle")
    return data


def hexbytes(v: object, what: str) -> bytes:
    try:
        return bytes.fromhex(str(v))
    except ValueError:
        raise AuditError(f"{what} is not hex") from None


def verify_bundle(b: dict[str, Any], coordinator_key: bytes | None = None) -> Report:
    """Check ``b``; ``coordinator_key`` pins the key the Results must be signed with (otherwise the
    bundle's own, which the report names so it can be compared with the coordinator's)."""
    try:
        return _verify(b, coordinator_key)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise AuditError(f"malformed audit bundle: {type(e).__name__}: {e}") from None


def _verify(b: dict[str, Any], pinned: bytes | None) -> Report:
    rep = Report(member=str(b["member"]))
    member, grid = rep.member, str(b["grid"])
    bundled_key = hexbytes(b["coordinator_key"], "coordinator_key")
    if pinned is not None and pinned != bundled_key:
        rep.problems.append("the bundle's coordinator key is not the pinned one")
    ckey = pinned if pinned is not None else bundled_key
    rep.coordinator_key = ckey.hex()
    keys: dict[str, list[tuple[crypto.Verifier, int, int | None]]] = {}
    for board in b["boards"]:
        keys[board["board"]] = [
            (crypto.Verifier(hexbytes(k["pubkey"], "pubkey")), int(k["valid_from"]), k["valid_to"])
            for k in board["keys"]
        ]
    readings = _readings(b, grid, keys, rep)
    coord = crypto.Verifier(ckey)
    tariff = b["tariff"]
    acc: dict[str, list[int]] = {}
    last_seq: dict[str, int] = {}
    for iv in b["intervals"]:
        start = int(iv["start"])
        rep.intervals += 1
        where = f"interval {start}"
        c = iv["clearing"]
        clearing = Clearing(
            start,
            str(c["scheme"]),
            Trades([_row(r) for r in c["trades"]]),
            Trades([_row(r) for r in c["residual"]]),
            (),
            c["price"],
        )
        _check_result(iv.get("result_frame"), grid, clearing, coord, where, rep)
        measured = 0
        for sp in iv["spans"]:
            bd, s0, s1 = str(sp["board"]), int(sp["seq0"]), int(sp["seq1"])
            if bd in last_seq and last_seq[bd] != s0:
                rep.problems.append(
                    f"{where}: board {bd} starts at seq {s0}, but its previous interval ended at "
                    f"seq {last_seq[bd]}"
                )
            last_seq[bd] = s1
            r0, r1 = readings.get((bd, s0)), readings.get((bd, s1))
            if r0 is None or r1 is None:
                rep.problems.append(
                    f"{where}: board {bd} reading seq {s0 if r0 is None else s1} "
                    "is missing or does not verify"
                )
                continue
            measured += (r1.e_imp - r0.e_imp) - (r1.e_exp - r0.e_exp)
        rows = [(*_row(r)[:5], "market") for r in list(c["trades"]) + list(c["residual"])]
        rows += [(str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4]), str(r[5])) for r in iv["other_rows"]]
        traded = 0
        for buyer, seller, energy, price, fee, kind in rows:
            if member not in (buyer, seller):
                continue
            _check_price(buyer, seller, price, kind, tariff, where, rep)
            k = (
                journal.IMBALANCE_KIND
                if kind == "imbalance"
                else (journal.SUPPLIER_KIND if SUPPLIER in (buyer, seller) else journal.LOCAL)
            )
            if buyer == member:
                traded += energy
                _add(acc, journal.bought(k), energy, -energy * price)
            if seller == member:
                traded -= energy
                _add(acc, journal.sold(k), -energy, energy * (price - fee))
        if iv["spans"] and traded != measured:
            rep.problems.append(
                f"{where}: the member's boards measured a net {measured} mWh, but the member was "
                f"billed for a net {traded} mWh"
            )
    _bill(b, acc, rep)
    return rep


def _readings(
    b: dict[str, Any], grid: str, keys: dict[str, list[tuple[crypto.Verifier, int, int | None]]], rep: Report
) -> dict[tuple[str, int], messages.Reading]:
    out: dict[tuple[str, int], messages.Reading] = {}
    prev: dict[str, messages.Reading] = {}
    for i, item in enumerate(b["readings"]):
        board = str(item["board"])
        fr = hexbytes(item["frame"], f"reading #{i}")
        try:
            topic = topics.board_topic(grid, board, "reading")
            r = frame.open_frame(topic, fr, partial(_key_at, keys.get(board, [])))
        except ProtocolError as e:  # decoded again only to name what failed
            rep.problems.append(f"{_name(i, board, _unverified(fr))}: {e}")
            continue
        what = _name(i, board, r)
        if not isinstance(r, messages.Reading):
            rep.problems.append(f"{what}: not a reading")
            continue
        rep.readings += 1
        p = prev.get(board)
        if p is not None:
            if r.seq <= p.seq:
                rep.problems.append(f"{what}: sequence number not above seq {p.seq}")
            if r.e_imp < p.e_imp or r.e_exp < p.e_exp:
                rep.problems.append(f"{what}: registers went down after seq {p.seq}")
        prev[board] = r
        out[(board, r.seq)] = r
    return out


def _name(i: int, board: str, msg: messages.Message | None) -> str:
    """The bundle's ``i``-th reading frame in a problem: its sequence number if it decodes to one."""
    if isinstance(msg, messages.Reading):
        return f"reading of board {board} seq {msg.seq} (#{i} in the bundle)"
    return f"reading #{i} of board {board}"


def _unverified(fr: bytes) -> messages.Message | None:
    """The frame's message unverified, or None if it does not decode."""
    try:
        return messages.decode(bytes(frame.split(fr)[0]))
    except ProtocolError:
        return None


def _key_at(
    keys: list[tuple[crypto.Verifier, int, int | None]], m: messages.Message
) -> crypto.Verifier | None:
    """The board key valid at the message's time (None: no key then, refused)."""
    ts = getattr(m, "ts", 0)
    for v, lo, hi in keys:
        if key_valid_at(ts, lo, hi):
            return v
    return None


def _row(r: list[Any]) -> tuple[str, str, int, int, int, str, str]:
    return (str(r[0]), str(r[1]), int(r[2]), int(r[3]), int(r[4]), str(r[5]), str(r[6]))


def _check_result(
    fr_hex: str | None, grid: str, c: Clearing, coord: crypto.Verifier, where: str, rep: Report
) -> None:
    if not fr_hex:
        rep.problems.append(f"{where}: no coordinator-signed result")
        return
    try:
        msg = frame.open_frame(topics.result_topic(grid), hexbytes(fr_hex, "result_frame"), lambda m: coord)
    except ProtocolError as e:
        rep.problems.append(f"{where}: coordinator result: {e}")
        return
    if not isinstance(msg, messages.Result) or msg.interval != c.interval:
        rep.problems.append(f"{where}: the signed result is for another interval")
        return
    if msg.digest != digest(c):
        rep.problems.append(f"{where}: the clearing record does not match the digest the coordinator signed")
    claimed = (msg.price, msg.traded, msg.grid_imp, msg.grid_exp, msg.n_trades)
    if claimed != (c.price or 0, c.traded, c.grid_imp, c.grid_exp, c.n_trades):
        rep.problems.append(f"{where}: the signed result's price or volumes differ from the clearing record")


def _check_price(
    buyer: str, seller: str, price: int, kind: str, t: dict[str, Any], where: str, rep: Report
) -> None:
    if kind == "schedule":
        return  # ex-ante schedules clear at their own auction's price
    if seller == SUPPLIER and price != t["retail"] and kind != "imbalance":
        rep.problems.append(f"{where}: bought from the supplier at {price}, not the retail {t['retail']}")
    elif buyer == SUPPLIER and price != t["feed_in"] and kind != "imbalance":
        rep.problems.append(f"{where}: sold to the supplier at {price}, not the feed-in {t['feed_in']}")
    elif SUPPLIER not in (buyer, seller) and not t["feed_in"] <= price <= t["retail"]:
        rep.warnings.append(f"{where}: local price {price} outside feed-in..retail (allowed by preferences)")


def _add(acc: dict[str, list[int]], account: str, energy: int, amount: int) -> None:
    a = acc.setdefault(account, [0, 0])
    a[0] += energy
    a[1] += amount


def _bill(b: dict[str, Any], acc: dict[str, list[int]], rep: Report) -> None:
    start, end = (int(x) for x in b["period"])
    ms = b.get("membership") or {}
    joined, left = (None if ms.get(k) is None else int(ms[k]) for k in ("joined", "left"))
    zone = str(b.get("timezone", billing.UTC))
    try:
        days = billing.fee_days(start, end, zone, joined, left)
    except billing.BillingError as e:
        rep.problems.append(f"the fixed charges cannot be recomputed: time zone {zone!r}: {e}")
        days = 0
    rep.zone, rep.days = zone, days
    t = b["tariff"]
    if t.get("fixed_per_day") and days:
        _add(acc, journal.FIXED, 0, -int(t["fixed_per_day"]) * days)
    if t.get("subscription_per_day") and days:
        _add(acc, journal.SUBSCRIPTION, 0, -int(t["subscription_per_day"]) * days)
    lo = start if joined is None else max(start, joined)
    hi = end if left is None else min(end, left)
    for x in t.get("contracts", ()):  # once per billing period in force while a member
        if int(x["subscription"]) and int(x["start"]) < hi and lo < int(x["end"]) and lo < hi:
            _add(acc, journal.CONTRACT_SUBSCRIPTION, 0, -int(x["subscription"]))
    claimed = {x["account"]: (int(x["energy"]), int(x["amount"])) for x in b["statement"]["lines"]}
    flex = flexrecords.backed(b, bytes.fromhex(rep.coordinator_key), rep.problems)
    if flex:
        claimed.setdefault(journal.FLEXIBILITY, (0, 0))
    for account in sorted(set(acc) | set(claimed)):
        mine = (acc[account][0], acc[account][1]) if account in acc else (0, 0)
        if account.startswith(RECOMPUTED) or account in FIXED:
            if claimed.get(account, (0, 0)) != mine:
                rep.problems.append(
                    f"bill line {account}: the statement says {claimed.get(account, (0, 0))} "
                    f"(mWh, nano-cent), the signed records give {mine}"
                )
            rep.lines[account] = mine
        elif account == journal.FLEXIBILITY and flex is not None:  # signed records back it
            if claimed.get(account, (0, 0))[1] != flex:
                rep.problems.append(
                    f"bill line {account}: the statement says {claimed.get(account, (0, 0))[1]} nano-cent, "
                    f"the signed flexibility records give {flex}"
                )
            rep.lines[account] = (claimed.get(account, (0, 0))[0], flex)
        else:
            rep.warnings.append(
                f"bill line {account}: {claimed[account][1]} nano-cent is not backed by a signed record"
            )
            rep.lines[account] = claimed[account]
    rep.total = sum(v[1] for v in rep.lines.values())
    if rep.total != int(b["statement"]["total"]):
        rep.problems.append(
            f"bill total: the statement says {b['statement']['total']}, recomputed {rep.total}"
        )
