"""Fuzzing every inbound path with a seeded mutation engine; each input is counted as accepted,
rejected (by reason) or a crash (an exception the path does not promise to raise).

Targets and what counts as a clean refusal:

- ``ingest``: the coordinator's ingest service (``IngestService._handle`` and its flush into a
  real SQLite ledger) on readings, acks, status and enrol frames: never raises; a refusal is a
  ``RejectedMessage`` code counted by ``Ingest``.
- ``board_orders``: the board's order handler (``firmware/orders.py``, run under CPython): never
  raises; a refusal is an Ack with status REJECTED and its reason.
- ``codec``: ``protocol.codec.unpack`` and ``messages.from_list``: only ``ProtocolError``.
- ``config``: ``coordinator.config.load`` on a mutated coordinator TOML: only ``ConfigError``.
- ``boardfile``: ``coordinator.provision.boardfile.load`` on mutated board files: only ``BoardFileError``.

Mutants start from valid seeds (frames of every type, the example config, the shipped board
files). Half of the frame and codec mutants have one to three fields replaced by edge values
(limits, wrong types, other boards, stale or future times) and are re-encoded; the rest get bit
flips, byte overwrites, insertions, deletions, truncation, splices and interesting msgpack bytes.
Three quarters of the frame mutants are signed again with the key of the topic's board (or the
coordinator's, for orders), so they pass the signature and reach the checks behind it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import random
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import msgpack

from coordinator import config
from coordinator.errors import CoordinatorError
from coordinator.ledger import Ledger
from coordinator.provision import boardfile
from coordinator.service.app import Runtime, build
from coordinator.service.mqtt import BrokerAddress, Inbound
from protocol import codec, crypto, frame, messages, topics
from protocol.errors import ProtocolError

ROOT = Path(__file__).resolve().parents[2]
GRID = "fz"
NOW = 1_750_000_000
INTERESTING = [b"\xc0", b"\xc2", b"\xc3", b"\xcc\xff", b"\xcd\xff\xff", b"\xce\xff\xff\xff\xff",
               b"\xcf" + b"\xff" * 8, b"\xd0\x80", b"\xd3" + b"\x80" + b"\x00" * 7, b"\xd9\xff",
               b"\xdc\xff\xff", b"\x9f", b"\x90", b"\xa0", b"\xc4\x20", b"\xff", b"\x7f", b"\x00",
               b"\xe0", b"\xde\x00\x01"]  # fmt: skip


@dataclass
class TargetReport:
    name: str
    inputs: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    crashes: int = 0
    crash_examples: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def crash(self, data: object, e: BaseException) -> None:
        self.crashes += 1
        if len(self.crash_examples) < 5:
            self.crash_examples.append(f"{type(e).__name__}: {e} on {data!r:.120}")

    def check(self, data: object, call: Callable[[], object], ok: type[Exception]) -> None:
        """One input (``data``, as a crash example shows it) that ``call`` takes in: accepted if it
        returns, rejected by reason if it raises ``ok``, a crash if it raises anything else."""
        self.inputs += 1
        try:
            call()
        except ok as e:
            self.rejected[_reason(e)] += 1
        except Exception as e:  # noqa: BLE001 - a crash is what this counts
            self.crash(data, e)
        else:
            self.accepted += 1


def _reason(e: BaseException) -> str:
    """A rejection reason without the input's particulars (numbers, quoted values, paths)."""
    code = getattr(e, "code", None)
    if isinstance(code, str):
        return code
    text = str(e).split(": ", 1)[-1] if isinstance(e, CoordinatorError) else str(e)
    text = re.sub(r"'[^']*'|\"[^\"]*\"|\(.*?\)|-?\d+", "_", text)
    return f"{type(e).__name__}: {text[:50]}"


def _board_reason(reason: str) -> str:
    """The board's refusal without the particulars (ids, numbers, topics; the Ack cuts it at 48)."""
    text = re.sub(r"'[^']*'?|peergrid/\S*|0x[0-9a-f]+|-?\d+", "_", reason)
    return text.split(" (")[0][:36]


class Mutator:
    def __init__(self, rng: random.Random, seeds: list[bytes]) -> None:
        self.rng = rng
        self.seeds = seeds

    def __call__(self, data: bytes) -> bytes:
        rng = self.rng
        b = bytearray(data)
        for _ in range(1 + int(rng.expovariate(1.0))):
            op = rng.randrange(9)
            n = len(b)
            if op == 0 and n:
                i = rng.randrange(n)
                b[i] ^= 1 << rng.randrange(8)
            elif op == 1 and n:
                b[rng.randrange(n)] = rng.randrange(256)
            elif op == 2:
                i = rng.randrange(n + 1)
                b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
            elif op == 3 and n:
                i = rng.randrange(n)
                del b[i : i + rng.randrange(1, 9)]
            elif op == 4 and n:
                del b[rng.randrange(n) :]
            elif op == 5:
                other = rng.choice(self.seeds)
                i = rng.randrange(n + 1)
                j = rng.randrange(len(other) + 1)
                b = b[:i] + other[j:]
            elif op == 6:
                i = rng.randrange(n + 1)
                b[i:i] = rng.choice(INTERESTING)
            elif op == 7 and n:
                i = rng.randrange(n)
                b[i : i + 1] = rng.choice(INTERESTING)
            elif op == 8 and n > 2:
                i, j = sorted(rng.sample(range(n), 2))
                b[i:i] = b[i:j]
        return bytes(b)


FIELD_VALUES: list[object] = [0, 1, -1, 2, 3, 255, 256, 65_535, 2**31, 2**32 - 1, 2**32, 2**63 - 1, -(2**63),
                               2**64 - 1, 1_000, 10_000_000, 10_000_001, NOW, NOW + 3_600, NOW - 8 * 86_400,
                               None, True, False, "", "b0", "b1", "B0", "x" * 33, "a b", b"", b"\x00" * 32,
                               [], [1]]  # fmt: skip


def field_mutant(rng: random.Random, body: bytes) -> bytes:
    """``body`` with one to three of its fields replaced by edge values (re-encoded with the plain
    msgpack library, so it may be valid, out of range, of the wrong type or not canonical)."""
    try:
        items = msgpack.unpackb(body)
    except Exception:  # noqa: BLE001 - a seed the library cannot read: leave it to the byte mutator
        return body
    if not isinstance(items, list) or not items:
        return body
    for _ in range(rng.randrange(1, 4)):
        k = rng.randrange(len(items))
        v = items[k]
        if isinstance(v, int) and not isinstance(v, bool) and rng.random() < 0.5:
            items[k] = v + rng.choice((-1, 1, -100, 3_600))
        else:
            items[k] = rng.choice(FIELD_VALUES)
    if rng.random() < 0.1:
        items.append(rng.choice(FIELD_VALUES)) if rng.random() < 0.5 else items.pop()
    try:
        return bytes(msgpack.packb(items, use_bin_type=True))
    except (OverflowError, ValueError, TypeError):
        return body


# -- frame targets -----------------------------------------------------------------------------


def _keys() -> tuple[dict[str, crypto.SigningKey], crypto.SigningKey]:
    boards = {f"b{i}": crypto.SigningKey(bytes([i + 1]) * 32) for i in range(4)}
    return boards, crypto.SigningKey(bytes([0xC0]) * 32)


def frame_seeds(boards: dict[str, crypto.SigningKey], coord: crypto.SigningKey) -> list[tuple[str, bytes]]:
    """Valid frames of every inbound type (boards' up-messages, the coordinator's orders)."""
    out = []
    for k, (b, key) in enumerate(boards.items()):
        msgs: list[messages.Message] = [
            messages.Reading(board=b, seq=5 + k, ts=NOW, e_imp=1_000 * k, e_exp=7, p=-250, u=231_000,
                             bat_soc=500 if k % 2 else None, bat_p=None, ev_state=1 if k == 3 else None,
                             ev_p=None, flags=0),
            messages.Ack(board=b, oseq=1, ts=NOW, status=messages.ST_APPLIED, reason="", bat_w=None,
                         ev_ma=None, pv_limit_w=None, relay_state=0),
            messages.Status(board=b, ts=NOW, state=1, uptime=100, heap_free=30_000, queued=0, dropped=0,
                            rejected=0),
            messages.Enrol(board=b, pubkey=key.public, board_type="virtual", fw="1.0", ts=NOW),
        ]  # fmt: skip
        for m in msgs:
            t = topics.topic_for(GRID, m)
            out.append((t, frame.seal(m, t, key)))
        o = messages.Order(board=b, oseq=7 + k, interval=NOW, valid_from=NOW - 10, valid_until=NOW + 900,
                           bat_w=1500, ev_ma=None, pv_limit_w=3000, relay_mask=1, relay_state=1)  # fmt: skip
        t = topics.topic_for(GRID, o)
        out.append((t, frame.seal(o, t, coord)))
    return out


def _resign(topic: str, payload: bytes, key: crypto.SigningKey) -> bytes:
    """``payload``'s body signed again for ``topic`` (the type id read from the body if it can be)."""
    body = payload[:-64] if len(payload) > 64 else payload
    type_id = body[1] if len(body) > 1 and body[1] < 0x80 else 1
    try:
        return body + key.sign(frame.signed_bytes(type_id, topic, body))
    except ProtocolError:
        return payload


class _Conn:
    """Stands in for the MQTT connection in ``flush``: counts the acknowledgements."""

    acked = 0

    def ack(self, m: Inbound) -> None:
        self.acked += 1


def _topic_mutant(rng: random.Random, topic: str, boards: list[str]) -> str:
    r = rng.random()
    if r < 0.8:
        return topic
    parts = topic.split("/")
    if r < 0.9:
        parts[3] = rng.choice(boards)  # another board's topic (cross-topic)
    elif r < 0.95:
        parts[4] = rng.choice(topics.BOARD_LEAVES)
    else:
        return "".join(rng.choice("peergrid/fzb0123#+$\x00é") for _ in range(rng.randrange(40)))
    return "/".join(parts)


def fuzz_ingest(n: int, seed: int) -> TargetReport:
    rep = TargetReport("ingest (readings, acks, status, enrol)")
    boards, coord = _keys()
    seeds = [(t, f) for t, f in frame_seeds(boards, coord) if not t.endswith("/order")]
    rng = random.Random(seed)
    mut = Mutator(rng, [f for _, f in seeds])
    names = list(boards)
    with tempfile.TemporaryDirectory() as tmp, Ledger.open(Path(tmp) / "f.db") as led:
        led.add_member("m", "M", "prosumer", now=NOW)
        for b, key in boards.items():
            if b != "b3":  # b3 is not enrolled: its frames meet the enrolment path
                led.add_board(b, "virtual", key.public, now=NOW, member_id="m", status="active")
        for b in names[:3]:
            for o in range(1, 4):
                led.add_board_order(b, o, NOW, b"order")
        rt = Runtime(now=lambda: NOW + 1.0, ingest_only=True, key=coord)  # the service as built to run
        svc = build(config.Config(GRID, Path(led.path), BrokerAddress()), rt).ingest
        conn = _Conn()
        ing = svc.ingest
        t0 = time.perf_counter()
        for i in range(n):
            topic, payload = rng.choice(seeds)
            r = rng.random()
            payload = field_mutant(rng, payload[:-64]) if r < 0.5 else mut(payload)
            topic = _topic_mutant(rng, topic, names)
            if r < 0.75:  # signed again with the key of the topic's board: reaches the checks behind
                board = topic.split("/")[3] if topic.count("/") == 4 else "b0"
                payload = _resign(topic, payload, boards.get(board, coord))
            before = sum(ing.rejected.values())
            try:
                svc._handle(Inbound(topic, payload, False, i, 1))
                if len(svc._pending) >= 200 or i == n - 1:
                    svc.flush(conn)  # type: ignore[arg-type]
            except Exception as e:  # noqa: BLE001 - a crash is what this counts
                rep.crash((topic, payload), e)
                svc._pending.clear()
                continue
            rep.inputs += 1
            if sum(ing.rejected.values()) == before:
                rep.accepted += 1
        rep.rejected = Counter(ing.rejected)
        rep.seconds = time.perf_counter() - t0
        rep.inputs += rep.crashes
    return rep


def _orders_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("peergrid_board_orders", ROOT / "firmware" / "orders.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    # the board collects garbage before each verification to keep its small heap whole; on
    # CPython that only costs time
    mod.gc = SimpleNamespace(collect=lambda: None)  # type: ignore[attr-defined]
    return mod


class _Actuators:
    """The relay/battery/EV/PV outputs (hardware): remembers what was applied."""

    def __init__(self) -> None:
        self.now = (0, 0, 0, 0)

    async def apply(self, b: int, e: int, p: int, relays: int) -> tuple[int, int, int, int]:
        self.now = (b, e, p, relays)
        return self.now

    def state(self) -> tuple[int, int, int, int]:
        return self.now


class _Registers:
    """The persisted order sequence (flash)."""

    def __init__(self) -> None:
        self.last_oseq = 3

    def order_applied(self, oseq: int, now: int) -> None:
        self.last_oseq = oseq


def fuzz_board_orders(n: int, seed: int) -> TargetReport:
    rep = TargetReport("board order path (firmware/orders.py on CPython)")
    boards, coord = _keys()
    mod = _orders_module()
    cfg = boardfile.load(ROOT / "boards" / "circuitsetup-atm90e32.toml")
    seeds = [(t, f) for t, f in frame_seeds(boards, coord) if t.endswith("/b/b0/order")]
    seeds += [(topics.board_topic(GRID, "b0", "order"), f) for t, f in frame_seeds(boards, coord)[:3]]
    rng = random.Random(seed)
    mut = Mutator(rng, [f for _, f in seeds])
    key = boards["b0"]
    t0 = time.perf_counter()
    for _ in range(n):
        regs = _Registers()
        verifier = crypto.Verifier(coord.public)
        h = mod.OrderHandler("b0", GRID, verifier, mod.Limits(cfg), _Actuators(), regs, key)
        topic, payload = rng.choice(seeds)
        r = rng.random()
        payload = field_mutant(rng, payload[:-64]) if r < 0.5 else mut(payload)
        topic = _topic_mutant(rng, topic, list(boards))
        if r < 0.75:
            payload = _resign(topic, payload, coord)
        now = NOW + rng.choice((0, 0, 0, -100, 2_000))
        rep.inputs += 1
        try:
            out = asyncio.run(h.handle(topic, payload, now))
            if out is not None:
                ack = frame.open_frame(out[0], out[1], lambda m: crypto.Verifier(key.public))
                if not isinstance(ack, messages.Ack):
                    raise TypeError(f"the board answered with a {type(ack).__name__}")
                if ack.status == messages.ST_REJECTED:
                    rep.rejected[_board_reason(ack.reason)] += 1
                    continue
            rep.accepted += 1
        except Exception as e:  # noqa: BLE001
            rep.crash((topic, payload), e)
    rep.seconds = time.perf_counter() - t0
    return rep


# -- codec and file loaders ----------------------------------------------------------------------


def fuzz_codec(n: int, seed: int) -> TargetReport:
    rep = TargetReport("codec (unpack + message fields)")
    boards, coord = _keys()
    seeds = [f[:-64] for _, f in frame_seeds(boards, coord)]
    seeds += [codec.pack([1, [2, [3]], b"x" * 40, "ab~", -(2**63), 2**64 - 1, None, True])]
    rng = random.Random(seed)
    mut = Mutator(rng, seeds)
    t0 = time.perf_counter()
    for _ in range(n):
        r = rng.random()
        seed_body = rng.choice(seeds)
        data = field_mutant(rng, seed_body) if r < 0.4 else mut(seed_body) if r < 0.9 else rng.randbytes(64)
        rep.check(data, partial(messages.decode, data), ProtocolError)
    rep.seconds = time.perf_counter() - t0
    return rep


def _fuzz_file(
    name: str, n: int, seed: int, seeds: list[bytes], load: Callable[[Path], Any], ok: type[Exception]
) -> TargetReport:
    rep = TargetReport(name)
    rng = random.Random(seed)
    mut = Mutator(rng, seeds)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.toml"
        for _ in range(n):
            data = mut(rng.choice(seeds))
            path.write_bytes(data)
            rep.check(data, partial(load, path), ok)
    rep.seconds = time.perf_counter() - t0
    return rep


def fuzz_config(n: int, seed: int) -> TargetReport:
    seeds = [(ROOT / "coordinator" / "example.toml").read_bytes()]
    return _fuzz_file("config loader (coordinator TOML)", n, seed, seeds, config.load, config.ConfigError)


def fuzz_boardfile(n: int, seed: int) -> TargetReport:
    seeds = [p.read_bytes() for p in sorted((ROOT / "boards").glob("*.toml"))]
    return _fuzz_file("board-file loader", n, seed, seeds, boardfile.load, boardfile.BoardFileError)


TARGETS: dict[str, tuple[Callable[[int, int], TargetReport], float]] = {
    # name: (function, share of the inputs)
    "ingest": (fuzz_ingest, 0.3),
    "board_orders": (fuzz_board_orders, 0.2),
    "codec": (fuzz_codec, 0.35),
    "config": (fuzz_config, 0.1),
    "boardfile": (fuzz_boardfile, 0.05),
}


def run(total: int, seed: int = 1) -> list[TargetReport]:
    """Fuzz every target with its share of ``total`` inputs; ingest's refusal log is silenced."""
    quiet = logging.getLogger("peergrid")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        return [fn(max(1, int(total * share)), seed + k) for k, (fn, share) in enumerate(TARGETS.values())]
    finally:
        quiet.setLevel(level)
